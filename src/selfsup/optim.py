"""Optimisers and the learning-rate schedule.

* Parameter groups: biases and normalisation parameters (every parameter with ``ndim <= 1``) get
  no weight decay and no LARS adaptation, as in BYOL (Grill et al. 2020, Appendix C) and SimCLR.
* :class:`LARS` (You et al. 2017, "Large Batch Training of Convolutional Networks", Algorithm 1):
  each weight's update is scaled by the trust ratio ``eta * ||w|| / ||g + wd * w||``.
* :func:`lr_at`: linear warm-up to the peak, then cosine decay (Loshchilov & Hutter 2017) to
  ``final_ratio`` of it. The peak is ``lr * batch_size / 256`` (Goyal et al. 2017 linear scaling),
  the convention of every method paper here.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .errors import unknown

OPTIMIZERS = ("sgd", "lars", "adamw")


def param_groups(model: nn.Module, weight_decay: float, exclude_bias_norm: bool = True) -> list[dict]:
    decay, plain = [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (plain if exclude_bias_norm and p.ndim <= 1 else decay).append(p)
    # "decayed" marks the group a weight-decay schedule (set_weight_decay) applies to.
    return [
        {"params": decay, "weight_decay": weight_decay, "lars": True, "decayed": True},
        {"params": plain, "weight_decay": 0.0, "lars": False, "decayed": False},
    ]


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise trust ratios, computed on the device without host syncs.

    Groups with ``lars=False`` are plain SGD with momentum (and their own weight decay).
    """

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0, eta: float = 0.001):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, lars=True))

    @torch.no_grad()
    def step(self, closure=None):
        assert closure is None
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            wd = group["weight_decay"]
            if group["lars"]:
                # eta * ||w|| / (||g|| + wd * ||w||), and 1 where either norm is zero: computed for
                # all weights at once on stacked norms (a few kernels per step, not a few per weight;
                # a ResNet-18 step on a GPU is bound by kernel launches).
                w = torch.stack(torch._foreach_norm(params))
                g = torch.stack(torch._foreach_norm(grads))
                scales = torch.where((w > 0) & (g > 0), group["eta"] * w / (g + wd * w), torch.ones_like(w)).unbind()
            if wd:
                grads = torch._foreach_add(grads, params, alpha=wd)
            if group["lars"]:
                grads = torch._foreach_mul(grads, scales)
            bufs = []
            for p in params:
                state = self.state[p]
                if "momentum_buffer" not in state:  # zeros, so the first buffer equals the update
                    state["momentum_buffer"] = torch.zeros_like(p)
                bufs.append(state["momentum_buffer"])
            torch._foreach_mul_(bufs, group["momentum"])
            torch._foreach_add_(bufs, grads)
            torch._foreach_add_(params, bufs, alpha=-group["lr"])


def build_optimizer(
    name: str,
    model: nn.Module,
    lr: float,
    weight_decay: float,
    momentum: float = 0.9,
    lars_eta: float = 0.02,
    exclude_bias_norm: bool = True,
    betas: tuple[float, float] = (0.9, 0.999),
) -> torch.optim.Optimizer:
    groups = param_groups(model, weight_decay, exclude_bias_norm)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    if name == "lars":
        return LARS(groups, lr=lr, momentum=momentum, eta=lars_eta)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas))
    raise unknown("optimizer", name, OPTIMIZERS)


def lr_at(step: int, total_steps: int, warmup_steps: int, peak: float, final_ratio: float = 0.0) -> float:
    """Learning rate for optimiser step ``step`` (0-based)."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    decay_steps = max(total_steps - warmup_steps, 1)
    progress = min((step - warmup_steps) / decay_steps, 1.0)
    final = peak * final_ratio
    return final + (peak - final) * (1 + math.cos(math.pi * progress)) / 2


def wd_at(step: int, total_steps: int, base: float, final: float) -> float:
    """Weight decay for optimiser step ``step``: cosine from ``base`` to ``final`` over the run (the
    schedule of DINO's and I-JEPA's code, 0.04 -> 0.4 for ViTs)."""
    progress = min(step / max(total_steps - 1, 1), 1.0)
    return final + (base - final) * (1 + math.cos(math.pi * progress)) / 2


def set_weight_decay(optimizer: torch.optim.Optimizer, weight_decay: float) -> None:
    """Set the weight decay of the decayed group (biases and norms stay at 0)."""
    for group in optimizer.param_groups:
        if group.get("decayed"):
            group["weight_decay"] = weight_decay


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
