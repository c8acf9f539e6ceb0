"""BYOL: Bootstrap Your Own Latent (Grill et al. 2020, NeurIPS, arXiv:2006.07733).

An online network (backbone, projector, predictor) regresses the projection a momentum target
network (backbone, projector) gives to another view of the same image. Loss: Eq. 2 on both view
orders, summed (Eq. 4), gradients only through the online branch; target update: Eq. 1 with the
cosine tau schedule of Sec. 3.2. Views: the two asymmetric augmentation recipes of Table 6.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..augment.views import byol_views
from ..losses import byol_loss
from .base import Method, views_of_size
from .heads import mlp
from .teacher import MomentumTeacher, cosine_tau


class BYOL(Method):
    name = "byol"
    paper = "Grill et al. 2020, Bootstrap Your Own Latent (arXiv:2006.07733)"

    @dataclass
    class Args:
        proj_hidden: int = 4096
        proj_dim: int = 256
        pred_hidden: int = 4096
        tau_base: float = 0.996
        predictor: bool = True    # False: the ablation of Table 5, which collapses without the EMA

    def __init__(self, backbone: nn.Module, args: "BYOL.Args"):
        super().__init__(backbone, args)
        self.projector = mlp(backbone.feature_dim, args.proj_hidden, args.proj_dim)
        self.predictor = mlp(args.proj_dim, args.pred_hidden, args.proj_dim) if args.predictor else nn.Identity()
        self.target = MomentumTeacher(self._online())
        self._tau = args.tau_base

    def _online(self) -> nn.Sequential:
        # A view of the registered modules (not registered twice), paired with the target's copy.
        return nn.Sequential(self.backbone, self.projector)

    default_views = views_of_size(byol_views)

    def forward(self, views):
        v1, v2 = views
        p1 = self.predictor(self.projector(self.backbone(v1)))
        p2 = self.predictor(self.projector(self.backbone(v2)))
        z1, z2 = self.target(v1), self.target(v2)
        return {"loss": byol_loss(p1, z2) + byol_loss(p2, z1)}

    def after_step(self, step, total_steps):
        # ``step`` optimiser steps have been taken; tau for the update that follows step k=step-1.
        self._tau = cosine_tau(step - 1, total_steps, self.args.tau_base)
        self.target.update(self._online(), self._tau)
        return {"tau": self._tau}
