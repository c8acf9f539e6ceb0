"""SwAV: Unsupervised Learning of Visual Features by Contrasting Cluster Assignments (Caron et al.
2020, NeurIPS, arXiv:2006.09882).

Each view's normalised projection is scored against learnt unit-norm prototypes; the codes of the
two global views are equal-partition soft assignments from Sinkhorn-Knopp (Eq. 3-5), and every
other view predicts them (swapped prediction, Eq. 1-2 and Eq. 6 with multi-crop). An optional
queue of past projections joins the Sinkhorn for small batches.

Notes on defaults and deviations: docs/methods/swav.md
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..losses import swav_loss
from ..modalities.base import ViewPlan
from .base import Method
from .parts.heads import mlp
from .parts.multicrop import check_views, forward_multicrop
from .parts.queue import MemoryQueue
from .parts.sinkhorn import sinkhorn


class SwAV(Method):
    name = "swav"
    # The authors' code puts every parameter, biases and norms included, under LARC and weight decay.
    optim_defaults = {"exclude_bias_norm": False}
    paper = (
        "Caron et al. 2020, Unsupervised Learning of Visual Features by Contrasting Cluster Assignments "
        "(arXiv:2006.09882)"
    )

    @dataclass
    class Args:
        proj_hidden: int = 2048
        proj_dim: int = 128
        n_prototypes: int = 3000
        temperature: float = 0.1
        epsilon: float = 0.05
        sinkhorn_iterations: int = 3
        queue_size: int = 0  # 0: no queue (per global view; the paper: 3840)
        queue_start_epoch: float = 15.0
        freeze_prototypes_epochs: float = 1.0
        n_local: int = 6  # the paper's 2x224 + 6x96
        local_size: int = 0  # 0: half the global size
        global_scale: tuple[float, float] = (0.14, 1.0)  # Sec. 4 / App. A: 2x224 crops of (0.14, 1)
        local_scale: tuple[float, float] = (0.05, 0.14)  # and 6x96 of (0.05, 0.14)

    def __init__(self, backbone: nn.Module, args: SwAV.Args):
        super().__init__(backbone, args)
        self.projector = mlp(backbone.feature_dim, args.proj_hidden, args.proj_dim)
        self.prototypes = nn.Linear(args.proj_dim, args.n_prototypes, bias=False)
        self.normalize_prototypes()
        self.queues = (
            nn.ModuleList(MemoryQueue(args.queue_size, args.proj_dim) for _ in range(2))
            if args.queue_size > 0
            else None
        )
        self.steps_per_epoch = self.total_steps = None
        self._steps_done = 0  # checkpointed through get_extra_state

    @staticmethod
    def view_plan(args: SwAV.Args) -> ViewPlan:
        options = {"local_size": args.local_size, "global_scale": args.global_scale, "local_scale": args.local_scale}
        return ViewPlan("multicrop", "swav", n_local=args.n_local, options=options)

    @torch.no_grad()
    def normalize_prototypes(self) -> None:
        """Project every prototype back onto the unit sphere (done after every optimiser step)."""
        w = self.prototypes.weight
        w.copy_(F.normalize(w, dim=1))

    def _steps(self, epochs: float) -> int:
        if self.steps_per_epoch is None:
            raise RuntimeError(
                "call configure(steps_per_epoch, total_steps) before training SwAV: its schedules are given in epochs"
            )
        return round(epochs * self.steps_per_epoch)

    def get_extra_state(self):
        return {"steps_done": self._steps_done}

    def set_extra_state(self, state):
        self._steps_done = state["steps_done"]

    def _queue_active(self) -> bool:
        return (
            self.queues is not None and self.training and self._steps_done >= self._steps(self.args.queue_start_epoch)
        )

    def forward(self, views):
        a = self.args
        check_views(self.name, views, a.n_local, a.local_size)
        h = forward_multicrop(self.backbone, views)
        z = F.normalize(self.projector(h), dim=1)
        scores = self.prototypes(z)
        z_views, score_views = z.chunk(len(views)), scores.chunk(len(views))
        codes = [self.codes(i, score_views[i], z_views[i]) for i in range(2)]  # global views only
        return {"loss": swav_loss(score_views, codes, a.temperature), "features": h[: len(views[0])].detach()}

    @torch.no_grad()
    def codes(self, i: int, scores: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The codes of global view ``i`` from its prototype scores (B, K) by Sinkhorn-Knopp; once
        the queue is started and full, the scores of its past projections join the Sinkhorn
        (only the batch's rows are kept), and then the projections ``z`` enter the queue."""
        s = scores.detach()
        if self._queue_active():
            queue = self.queues[i]
            past = queue.items()
            if past.shape[0] == queue.size:  # used once full, as the authors' code
                s = torch.cat([self.prototypes(past.to(z.dtype)), s])
            queue.push(z)
        return sinkhorn(s, self.args.epsilon, self.args.sinkhorn_iterations)[-scores.shape[0] :]

    def before_optimizer_step(self, step):
        if step < self._steps(self.args.freeze_prototypes_epochs):
            self.prototypes.weight.grad = None

    def after_step(self, step, total_steps):
        self._steps_done = step
        self.normalize_prototypes()
        return {}
