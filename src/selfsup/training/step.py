"""One training step, top to bottom: views, the method's forward, backward, the optimiser.

Nothing here reads a tensor back to the host: the loss and the first view's features come back as
device tensors, read by the loop once every ``train.log_every`` steps.
"""

from __future__ import annotations

import torch

from ..optim import clip_gradients


def train_step(s, batch: torch.Tensor, generator: torch.Generator, step: int) -> dict:
    """One optimisation step on this rank's share of a global batch (``s`` is a
    :class:`~selfsup.training.build.Setup`); returns the method's outputs."""
    views = s.views(batch, generator, (s.ctx.rank, s.ctx.world_size))
    return update_step(s, views, step)


def update_step(s, views: list[torch.Tensor], step: int) -> dict:
    """The step on views that are ready: forward, backward, gradient clipping, the method's gradient
    surgery, the optimiser. ``step`` is the 0-based index of this optimiser step."""
    views = [s.model_input(v) for v in views]
    with s.autocast():
        out = s.forward(views)
    s.optimizer.zero_grad(set_to_none=True)
    out["loss"].backward()
    if s.cfg.optim.clip_grad:  # after DDP's averaging; no host sync
        clip_gradients(s.method.parameters(), s.cfg.optim.clip_grad, s.cfg.optim.clip_grad_mode)
    s.method.before_optimizer_step(step)
    s.optimizer.step()
    return out
