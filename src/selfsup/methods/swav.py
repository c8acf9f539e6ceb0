"""SwAV: Swapping Assignments between multiple Views (Caron et al. 2020, "Unsupervised Learning of
Visual Features by Contrasting Cluster Assignments", NeurIPS, arXiv:2006.09882).

Each view's l2-normalised projection ``z`` is scored against K learnt prototypes ``c`` (a linear
layer without bias whose rows are kept unit-norm). The codes ``q`` of the two global views are
equal-partition soft assignments from 3 Sinkhorn-Knopp iterations (Eq. 3-5,
:func:`~selfsup.methods.sinkhorn.sinkhorn`), computed without gradient; every other view predicts
them (swapped prediction, Eq. 1-2 and Eq. 6 with multi-crop, :func:`~selfsup.losses.swav_loss`).
With small batches a queue of past projections joins the Sinkhorn (Sec. 4 / App. "Working with
small batches"), started after ``queue_start_epoch`` epochs and used once full; the prototypes
are frozen during the first epoch (App. A.1). In a distributed run the Sinkhorn sums run over the
global batch and each process keeps its own queue of its own projections, as the authors' code.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..losses import swav_loss
from .base import Method
from .heads import mlp
from .multicrop import (SWAV_GLOBAL_SCALE, SWAV_LOCAL_SCALE, check_views, forward_multicrop,
                        local_size_for, multicrop_views)
from .queue import MemoryQueue
from .sinkhorn import sinkhorn


class SwAV(Method):
    name = "swav"
    paper = "Caron et al. 2020, Unsupervised Learning of Visual Features by Contrasting Cluster Assignments (arXiv:2006.09882)"

    @dataclass
    class Args:
        proj_hidden: int = 2048
        proj_dim: int = 128
        n_prototypes: int = 3000
        temperature: float = 0.1
        epsilon: float = 0.05
        sinkhorn_iterations: int = 3
        queue_size: int = 0               # 0: no queue (per global view; the paper: 3840)
        queue_start_epoch: float = 15.0
        freeze_prototypes_epochs: float = 1.0
        n_local: int = 6                  # the paper's 2x224 + 6x96
        local_size: int = 0               # 0: half the global size
        global_scale: tuple[float, float] = SWAV_GLOBAL_SCALE
        local_scale: tuple[float, float] = SWAV_LOCAL_SCALE

    def __init__(self, backbone: nn.Module, args: "SwAV.Args"):
        super().__init__(backbone, args)
        self.projector = mlp(backbone.feature_dim, args.proj_hidden, args.proj_dim)
        self.prototypes = nn.Linear(args.proj_dim, args.n_prototypes, bias=False)
        self.normalize_prototypes()
        self.queues = (nn.ModuleList(MemoryQueue(args.queue_size, args.proj_dim) for _ in range(2))
                       if args.queue_size > 0 else None)
        self.steps_per_epoch = self.total_steps = None
        self._steps_done = 0  # checkpointed through get_extra_state

    @staticmethod
    def default_views(size: int, args: "SwAV.Args | None" = None) -> list:
        """Multi-crop with SwAV's scales; every crop gets the same colour distortion of strength 1
        (jitter 0.8, 0.8, 0.8, 0.2 with p 0.8, grayscale p 0.2) and blur with p 0.5, no
        solarisation (the authors' ``MultiCropDataset``)."""
        args = args or SwAV.Args()
        views = multicrop_views(size, local_size_for(size, args.local_size), args.n_local,
                                args.global_scale, args.local_scale)
        return [dataclasses.replace(v, brightness=0.8, contrast=0.8, saturation=0.8, hue=0.2, blur_p=0.5,
                                    solarize_p=0.0) for v in views]

    @torch.no_grad()
    def normalize_prototypes(self) -> None:
        """Project every prototype back onto the unit sphere (done after every optimiser step)."""
        w = self.prototypes.weight
        w.copy_(F.normalize(w, dim=1))

    def _steps(self, epochs: float) -> int:
        if self.steps_per_epoch is None:
            raise RuntimeError("call configure(steps_per_epoch, total_steps) before training SwAV: its "
                               "schedules are given in epochs")
        return round(epochs * self.steps_per_epoch)

    def get_extra_state(self):
        return {"steps_done": self._steps_done}

    def set_extra_state(self, state):
        self._steps_done = state["steps_done"]

    def _queue_active(self) -> bool:
        return (self.queues is not None and self.training
                and self._steps_done >= self._steps(self.args.queue_start_epoch))

    def forward(self, views):
        a = self.args
        check_views(self.name, views, a.n_local, a.local_size)
        z = F.normalize(self.projector(forward_multicrop(self.backbone, views)), dim=1)
        scores = self.prototypes(z)
        z_views, score_views = z.chunk(len(views)), scores.chunk(len(views))
        codes = [self.codes(i, score_views[i], z_views[i]) for i in range(2)]  # global views only
        return {"loss": swav_loss(score_views, codes, a.temperature)}

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
        return sinkhorn(s, self.args.epsilon, self.args.sinkhorn_iterations)[-scores.shape[0]:]

    def before_optimizer_step(self, step):
        if step < self._steps(self.args.freeze_prototypes_epochs):
            self.prototypes.weight.grad = None

    def after_step(self, step, total_steps):
        self._steps_done = step
        self.normalize_prototypes()
        return {}
