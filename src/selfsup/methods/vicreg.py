"""VICReg: Variance-Invariance-Covariance Regularization for Self-Supervised Learning (Bardes, Ponce
& LeCun 2022, ICLR, arXiv:2105.04906).

One network (backbone + 3-layer "expander": two Linear-BN-ReLU blocks and a Linear, Sec. 4.2)
embeds two views; the loss (Eq. 6) is ``lambda * s + mu * v + nu * c``: invariance (mean squared
error, Eq. 5), variance (a hinge keeping each dimension's standard deviation above 1, Eq. 1) and
covariance (off-diagonal covariances squared, Eq. 3-4), with lambda = mu = 25, nu = 1 as in the
paper and the authors' code. The expander is 8192 wide in the paper; 2048 here by default for small
images (as solo-learn's CIFAR recipe). Views: BYOL's asymmetric pair, which the paper follows (the
augmentations of BYOL and Barlow Twins; the authors' code: blur 1.0 / 0.1, solarisation 0 / 0.2).
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..augment.views import byol_views
from ..losses import vicreg_terms
from ..distributed import gather
from .base import Method, views_of_size
from .heads import mlp


class VICReg(Method):
    name = "vicreg"
    paper = "Bardes, Ponce & LeCun 2022, VICReg: Variance-Invariance-Covariance Regularization (arXiv:2105.04906)"

    @dataclass
    class Args:
        proj_hidden: int = 2048   # the paper: 8192 (ImageNet)
        proj_dim: int = 2048      # the paper: 8192 (ImageNet)
        proj_layers: int = 3
        sim_coeff: float = 25.0   # lambda
        std_coeff: float = 25.0   # mu
        cov_coeff: float = 1.0    # nu

    def __init__(self, backbone: nn.Module, args: "VICReg.Args"):
        super().__init__(backbone, args)
        self.projector = mlp(backbone.feature_dim, args.proj_hidden, args.proj_dim, layers=args.proj_layers)

    default_views = views_of_size(byol_views)

    def forward(self, views):
        v1, v2 = views
        z1 = self.projector(self.backbone(v1))
        z2 = self.projector(self.backbone(v2))
        sim, std, cov = vicreg_terms(gather(z1), gather(z2))  # statistics of the global batch
        a = self.args
        loss = a.sim_coeff * sim + a.std_coeff * std + a.cov_coeff * cov
        return {"loss": loss, "sim": sim.detach(), "std": std.detach(), "cov": cov.detach()}
