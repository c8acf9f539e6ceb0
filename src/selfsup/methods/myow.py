"""MYOW: Mine Your Own vieW: Self-Supervised Learning Through Across-Sample Prediction (Azabou et al.
2021, arXiv:2102.10106).

BYOL plus across-sample prediction (Sec. 3.1-3.2): a nearest neighbour of each sample among the
other samples, mined in the representation space, is predicted through a second projector and
predictor. The two losses are mixed as ``(L_aug + w L_mined) / (1 + w)``, ``w`` warmed up and
ramped up over epochs.

Notes on defaults and deviations: docs/methods/myow.md
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..losses import byol_loss
from ..modalities.base import ViewPlan
from .base import Method
from .parts.heads import mlp
from .parts.teacher import MomentumTeacher


@torch.no_grad()
def mine_neighbours(
    anchors: torch.Tensor,
    pool: torch.Tensor,
    k: int = 1,
    exclude_self: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Index into ``pool`` of a mined view for each row of ``anchors``: one of its ``k`` nearest
    neighbours by cosine similarity, drawn uniformly (the nearest when ``k == 1``).

    With ``exclude_self`` the pool holds the same samples as the anchors, in the same order (another
    view of them), and row ``i`` never picks pool row ``i``.
    """
    with torch.autocast(anchors.device.type, enabled=False):  # float32 similarities for the ranking
        sim = F.normalize(anchors.float(), dim=1) @ F.normalize(pool.float(), dim=1).T
    if exclude_self:
        sim.fill_diagonal_(float("-inf"))
    top = sim.topk(k, dim=1).indices  # (N, k)
    if k == 1:
        return top[:, 0]
    pick = torch.randint(k, (top.shape[0], 1), device=top.device, generator=generator)
    return top.gather(1, pick)[:, 0]


class _Network(nn.Module):
    """Backbone ``f``, projector ``g`` and the mined-view projector ``r`` on top of ``g``: returns
    the representation ``y``, the projection ``z = g(y)`` and ``v = r(z)``."""

    def __init__(self, backbone: nn.Module, projector: nn.Module, projector_m: nn.Module):
        super().__init__()
        self.backbone, self.projector, self.projector_m = backbone, projector, projector_m

    def forward(self, x):
        y = self.backbone(x)
        z = self.projector(y)
        return y, z, self.projector_m(z)


class MYOW(Method):
    name = "myow"
    paper = (
        "Azabou et al. 2021, Mine Your Own vieW: Self-Supervised Learning Through Across-Sample Prediction "
        "(arXiv:2102.10106)"
    )

    @dataclass
    class Args:
        proj_hidden: int = 4096
        proj_dim: int = 256
        pred_hidden: int = 4096
        mined_hidden: int = 1024  # the second projector/predictor (the authors' CIFAR: 1024-64)
        mined_dim: int = 64
        tau_base: float = 0.99
        k: int = 1  # neighbours to draw the mined view from
        myow_weight: float = 1.0  # final w
        myow_warmup_epochs: float = 10.0  # w = 0 before this
        myow_rampup_epochs: float = 10.0  # then linear to myow_weight over this many epochs
        # Average the two view orders (the authors' trainer: each direction weighted 1/2); before this
        # field the two were summed, twice the authors' loss.
        average_directions: bool = field(default=True, metadata={"legacy": False})

    def __init__(self, backbone: nn.Module, args: MYOW.Args):
        super().__init__(backbone, args)
        self.projector = mlp(backbone.feature_dim, args.proj_hidden, args.proj_dim)
        self.predictor = mlp(args.proj_dim, args.pred_hidden, args.proj_dim)
        self.projector_m = mlp(args.proj_dim, args.mined_hidden, args.mined_dim)
        self.predictor_m = mlp(args.mined_dim, args.mined_hidden, args.mined_dim)
        self.target = MomentumTeacher(self._online(), args.tau_base)
        # w of the next forward: a buffer (resumed runs continue the ramp; no recompiles).
        self.register_buffer("myow_weight_now", torch.zeros(()))
        self.steps_per_epoch = self.total_steps = None

    def _online(self) -> _Network:
        # A view of the registered modules (not registered twice), paired with the target's copy.
        return _Network(self.backbone, self.projector, self.projector_m)

    @staticmethod
    def view_plan(args) -> ViewPlan:
        return ViewPlan("asymmetric_pair", "byol")

    def weight_at(self, step: int) -> float:
        """``w`` after ``step`` optimiser steps: 0 during the warm-up, then a linear ramp."""
        if self.steps_per_epoch is None:
            raise RuntimeError(
                "call configure(steps_per_epoch, total_steps) before training MYOW: its schedules are given in epochs"
            )
        a = self.args
        warmup = round(a.myow_warmup_epochs * self.steps_per_epoch)
        rampup = round(a.myow_rampup_epochs * self.steps_per_epoch)
        if step < warmup:
            return 0.0
        return a.myow_weight * min(1.0, (step - warmup) / rampup) if rampup > 0 else a.myow_weight

    def configure(self, steps_per_epoch, total_steps):
        super().configure(steps_per_epoch, total_steps)
        self.myow_weight_now.fill_(self.weight_at(0))  # a resumed run loads its own after this

    def forward(self, views):
        v1, v2 = views
        online = self._online()
        y1, z1, m1 = online(v1)
        y2, z2, m2 = online(v2)
        t_y1, t_z1, t_m1 = self.target(v1)
        t_y2, t_z2, t_m2 = self.target(v2)
        augmented = byol_loss(self.predictor(z1), t_z2) + byol_loss(self.predictor(z2), t_z1)
        k = self.args.k
        idx1 = mine_neighbours(y1.detach(), t_y2, k)  # for each view-1 anchor, another sample's view 2
        idx2 = mine_neighbours(y2.detach(), t_y1, k)
        mined = byol_loss(self.predictor_m(m1), t_m2[idx1]) + byol_loss(self.predictor_m(m2), t_m1[idx2])
        w = self.myow_weight_now
        if self.args.average_directions:
            augmented, mined = augmented / 2, mined / 2
        loss = (augmented + w * mined) / (1 + w)
        return {
            "loss": loss,
            "features": y1.detach(),
            "loss_augmented": augmented.detach(),
            "loss_mined": mined.detach(),
        }

    def momentum_pairs(self):
        return [(self.target, self._online())]

    def after_step(self, step, total_steps):
        logs = super().after_step(step, total_steps)
        w = self.weight_at(step)
        self.myow_weight_now.fill_(w)
        return {**logs, "myow_weight": w}
