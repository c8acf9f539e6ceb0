"""SimCLR: A Simple Framework for Contrastive Learning of Visual Representations (Chen, Kornblith,
Norouzi & Hinton 2020, ICML, arXiv:2002.05709).

One network (backbone + projection MLP, Sec. 2.1) embeds two augmented views of every image; the
NT-Xent loss (Eq. 1, Algorithm 1) makes each embedding pick out its pair among the other 2N - 1.
The two views go through the network as one batch of 2N, so BatchNorm sees all 2N views (the
paper's "global BN", Sec. 2.2, on one device).

Notes on defaults and deviations: docs/methods/simclr.md
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..distributed import gather
from ..losses import nt_xent
from ..modalities.base import ViewPlan
from .base import Method
from .parts.heads import mlp


class SimCLR(Method):
    name = "simclr"
    capturable = True  # train.cuda_graph: no host-side state in its step
    paper = "Chen et al. 2020, A Simple Framework for Contrastive Learning of Visual Representations (arXiv:2002.05709)"

    @dataclass
    class Args:
        proj_hidden: int = 2048  # the paper's ResNet-50 uses its 2048-d feature width
        proj_dim: int = 128  # Sec. 2.1 / Fig. 8: 128-d output
        proj_layers: int = 2  # Sec. 2.1; SimCLRv2 uses 3
        temperature: float = 0.5  # Table 5 / Appendix B.9: 0.5 for CIFAR-10 (0.1 for ImageNet)
        # The authors' code normalises the projection's output (BatchNorm, scale only); before it did not.
        proj_last_bn: bool = field(default=True, metadata={"legacy": False})

    def __init__(self, backbone: nn.Module, args: SimCLR.Args):
        super().__init__(backbone, args)
        last_bn = "scale" if args.proj_last_bn else False
        self.projector = mlp(backbone.feature_dim, args.proj_hidden, args.proj_dim, args.proj_layers, last_bn)

    @staticmethod
    def view_plan(args) -> ViewPlan:
        return ViewPlan("pair", "simclr")

    def forward(self, views):
        v1, v2 = views
        h = self.backbone(torch.cat([v1, v2]))
        z1, z2 = self.projector(h).chunk(2)
        loss = nt_xent(gather(z1), gather(z2), self.args.temperature)  # global batch: all negatives
        return {"loss": loss, "features": h[: len(v1)].detach()}
