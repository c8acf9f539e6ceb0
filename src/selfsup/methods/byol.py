"""BYOL: Bootstrap Your Own Latent (Grill et al. 2020, NeurIPS, arXiv:2006.07733).

An online network (backbone, projector, predictor) regresses the projection a momentum target
network (backbone, projector) gives to another view of the same image. Loss: Eq. 2 on both view
orders, summed (Eq. 4), gradients only through the online branch; target update: Eq. 1 with the
cosine tau schedule of Sec. 3.2.

Notes on defaults and deviations: docs/methods/byol.md
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..losses import byol_loss
from ..modalities.base import ViewPlan
from .base import Method
from .parts.heads import mlp
from .parts.teacher import MomentumTeacher


class BYOL(Method):
    name = "byol"
    capturable = True  # train.cuda_graph: no host-side state in its step
    paper = "Grill et al. 2020, Bootstrap Your Own Latent (arXiv:2006.07733)"

    @dataclass
    class Args:
        proj_hidden: int = 4096
        proj_dim: int = 256
        pred_hidden: int = 4096
        tau_base: float = 0.996
        predictor: bool = True  # False: the ablation of Table 5, which collapses without the EMA

    def __init__(self, backbone: nn.Module, args: BYOL.Args):
        super().__init__(backbone, args)
        self.projector = mlp(backbone.feature_dim, args.proj_hidden, args.proj_dim)
        self.predictor = mlp(args.proj_dim, args.pred_hidden, args.proj_dim) if args.predictor else nn.Identity()
        self.target = MomentumTeacher(self._online(), args.tau_base)

    def _online(self) -> nn.Sequential:
        # A view of the registered modules (not registered twice), paired with the target's copy.
        return nn.Sequential(self.backbone, self.projector)

    @staticmethod
    def view_plan(args) -> ViewPlan:
        return ViewPlan("asymmetric_pair", "byol")

    def forward(self, views):
        v1, v2 = views
        h1 = self.backbone(v1)
        p1 = self.predictor(self.projector(h1))
        p2 = self.predictor(self.projector(self.backbone(v2)))
        z1, z2 = self.target(v1), self.target(v2)
        return {"loss": byol_loss(p1, z2) + byol_loss(p2, z1), "features": h1.detach()}

    def momentum_pairs(self):
        return [(self.target, self._online())]
