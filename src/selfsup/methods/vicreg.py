"""VICReg: Variance-Invariance-Covariance Regularization for Self-Supervised Learning (Bardes, Ponce
& LeCun 2022, ICLR, arXiv:2105.04906).

One network (backbone + 3-layer "expander", Sec. 4.2) embeds two views; the loss (Eq. 6) is
``lambda * s + mu * v + nu * c``: invariance (mean squared error, Eq. 5), variance (a hinge keeping
each dimension's standard deviation above 1, Eq. 1) and covariance (off-diagonal covariances
squared, Eq. 3-4).

Notes on defaults and deviations: docs/methods/vicreg.md
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..distributed import gather
from ..losses import vicreg_terms
from ..modalities.base import ViewPlan
from .base import Method
from .parts.heads import mlp


class VICReg(Method):
    name = "vicreg"
    capturable = True  # train.cuda_graph: no host-side state in its step
    paper = "Bardes, Ponce & LeCun 2022, VICReg: Variance-Invariance-Covariance Regularization (arXiv:2105.04906)"

    @dataclass
    class Args:
        proj_hidden: int = 2048  # the paper: 8192 (ImageNet)
        proj_dim: int = 2048  # the paper: 8192 (ImageNet)
        proj_layers: int = 3
        sim_coeff: float = 25.0  # lambda
        std_coeff: float = 25.0  # mu
        cov_coeff: float = 1.0  # nu

    def __init__(self, backbone: nn.Module, args: VICReg.Args):
        super().__init__(backbone, args)
        self.projector = mlp(backbone.feature_dim, args.proj_hidden, args.proj_dim, layers=args.proj_layers)

    @staticmethod
    def view_plan(args) -> ViewPlan:
        return ViewPlan("asymmetric_pair", "byol")

    def forward(self, views):
        v1, v2 = views
        h1 = self.backbone(v1)
        z1 = self.projector(h1)
        z2 = self.projector(self.backbone(v2))
        sim, std, cov = vicreg_terms(gather(z1), gather(z2))  # statistics of the global batch
        a = self.args
        loss = a.sim_coeff * sim + a.std_coeff * std + a.cov_coeff * cov
        return {"loss": loss, "features": h1.detach(), "sim": sim.detach(), "std": std.detach(), "cov": cov.detach()}
