"""Barlow Twins: Self-Supervised Learning via Redundancy Reduction (Zbontar, Jing, Misra, LeCun &
Deny 2021, ICML, arXiv:2103.03230).

One network (backbone + 3-layer projector: two Linear-BN-ReLU blocks and a Linear, Sec. 2
"Implementation details") embeds two views; the loss (Eq. 1) drives the cross-correlation matrix of
the batch-standardised embeddings (Eq. 2) to the identity, with lambda = 0.0051. The projector is
8192 wide in the paper (Fig. 4: wider is better); the default here, 2048, suits small images and a
small GPU, as the CIFAR recipes of solo-learn do. Views: BYOL's asymmetric pair, which the paper
uses (Sec. 2, Appendix "Image augmentations").

``scale_loss`` multiplies the loss (1 in the paper; the authors' first released code scaled it by
0.024 and solo-learn's CIFAR recipe by 0.1). LARS normalises the weights' steps, so the scale matters
for the parameters outside LARS (biases and BatchNorm), which take plain SGD steps.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..augment.views import byol_views
from ..losses import barlow_twins_loss
from ..distributed import gather
from .base import Method, views_of_size
from .heads import mlp


class BarlowTwins(Method):
    name = "barlowtwins"
    paper = "Zbontar et al. 2021, Barlow Twins: Self-Supervised Learning via Redundancy Reduction (arXiv:2103.03230)"

    @dataclass
    class Args:
        proj_hidden: int = 2048   # the paper: 8192 (ImageNet)
        proj_dim: int = 2048      # the paper: 8192 (ImageNet)
        proj_layers: int = 3
        lambd: float = 0.0051
        scale_loss: float = 1.0

    def __init__(self, backbone: nn.Module, args: "BarlowTwins.Args"):
        super().__init__(backbone, args)
        self.projector = mlp(backbone.feature_dim, args.proj_hidden, args.proj_dim, layers=args.proj_layers)

    default_views = views_of_size(byol_views)

    def forward(self, views):
        v1, v2 = views
        z1 = self.projector(self.backbone(v1))
        z2 = self.projector(self.backbone(v2))
        return {"loss": self.args.scale_loss * barlow_twins_loss(gather(z1), gather(z2), self.args.lambd)}
