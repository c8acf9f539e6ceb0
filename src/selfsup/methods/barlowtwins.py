"""Barlow Twins: Self-Supervised Learning via Redundancy Reduction (Zbontar, Jing, Misra, LeCun &
Deny 2021, ICML, arXiv:2103.03230).

One network (backbone + 3-layer projector: two Linear-BN-ReLU blocks and a Linear, Sec. 2) embeds
two views; the loss (Eq. 1) drives the cross-correlation matrix of the batch-standardised
embeddings (Eq. 2) to the identity. ``scale_loss`` multiplies the loss (1 in the paper).

Notes on defaults and deviations: docs/methods/barlowtwins.md
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..distributed import gather
from ..losses import barlow_twins_loss
from ..modalities.base import ViewPlan
from .base import Method
from .parts.heads import mlp


class BarlowTwins(Method):
    name = "barlowtwins"
    capturable = True  # train.cuda_graph: no host-side state in its step
    # The authors' main.py trains biases and norms at lr 0.0048 against 0.2 for weights.
    optim_defaults = {"bias_lr_scale": 0.024}
    paper = "Zbontar et al. 2021, Barlow Twins: Self-Supervised Learning via Redundancy Reduction (arXiv:2103.03230)"

    @dataclass
    class Args:
        proj_hidden: int = 2048  # the paper: 8192 (ImageNet)
        proj_dim: int = 2048  # the paper: 8192 (ImageNet)
        proj_layers: int = 3
        lambd: float = 0.0051
        scale_loss: float = 1.0

    def __init__(self, backbone: nn.Module, args: BarlowTwins.Args):
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
        loss = self.args.scale_loss * barlow_twins_loss(gather(z1), gather(z2), self.args.lambd)
        return {"loss": loss, "features": h1.detach()}
