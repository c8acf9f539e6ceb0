"""SimSiam: Exploring Simple Siamese Representation Learning (Chen & He 2021, CVPR,
arXiv:2011.10566).

An encoder f (backbone + projection MLP) and a prediction MLP h; no momentum encoder, no negatives.
Loss: Eq. 4, ``D(p1, z2) / 2 + D(p2, z1) / 2`` with ``D(p, z) = -cos(p, stopgrad(z))`` (Eq. 1 and
3; the stop-gradient is what prevents collapse, Sec. 4.1).

Notes on defaults and deviations: docs/methods/simsiam.md
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from ..losses import negative_cosine
from ..modalities.base import ViewPlan
from .base import Method
from .parts.heads import mlp


class SimSiam(Method):
    name = "simsiam"
    capturable = True  # train.cuda_graph: no host-side state in its step
    paper = "Chen & He 2021, Exploring Simple Siamese Representation Learning (arXiv:2011.10566)"

    @dataclass
    class Args:
        proj_hidden: int = 2048
        proj_dim: int = 2048
        proj_layers: int = 3
        pred_hidden: int = 512
        # The authors' --fix-pred-lr (Table 1c; their README's pretraining command): the predictor
        # keeps the peak learning rate while the rest follows the cosine. Not done before this field.
        fix_pred_lr: bool = field(default=True, metadata={"legacy": False})

    def __init__(self, backbone: nn.Module, args: SimSiam.Args):
        super().__init__(backbone, args)
        self.projector = mlp(
            backbone.feature_dim, args.proj_hidden, args.proj_dim, layers=args.proj_layers, last_bn=True
        )
        self.predictor = mlp(args.proj_dim, args.pred_hidden, args.proj_dim)

    @staticmethod
    def view_plan(args) -> ViewPlan:
        return ViewPlan("pair", "mocov2")

    def forward(self, views):
        v1, v2 = views
        h1 = self.backbone(v1)
        z1 = self.projector(h1)
        z2 = self.projector(self.backbone(v2))
        p1, p2 = self.predictor(z1), self.predictor(z2)
        loss = negative_cosine(p1, z2) / 2 + negative_cosine(p2, z1) / 2
        return {"loss": loss, "features": h1.detach()}

    def fixed_lr_parameters(self):
        return list(self.predictor.parameters()) if self.args.fix_pred_lr else []
