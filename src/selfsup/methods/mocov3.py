"""MoCo v3: An Empirical Study of Training Self-Supervised Vision Transformers (Chen, Xie & He 2021,
ICCV, arXiv:2104.02057).

A query encoder (backbone, projection MLP, prediction MLP) and a momentum key encoder (backbone,
projection MLP) embed two views; the keys of the same batch are the negatives (no queue). Loss:
Algorithm 1, ``ctr(q1, k2) + ctr(q2, k1)`` with ``ctr(q, k) = CrossEntropy(q k^T / tau) * 2 tau``.

Notes on defaults and deviations: docs/methods/mocov3.md
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from ..distributed import gather, gather_nograd
from ..losses import infonce
from ..modalities.base import ViewPlan
from .base import Method
from .parts.heads import mlp
from .parts.teacher import MomentumTeacher


class MoCoV3(Method):
    name = "mocov3"
    capturable = True  # train.cuda_graph: no host-side state in its step
    paper = "Chen, Xie & He 2021, An Empirical Study of Training Self-Supervised Vision Transformers (arXiv:2104.02057)"

    @dataclass
    class Args:
        proj_hidden: int = 4096
        proj_dim: int = 256
        # The authors' ResNet code (MoCo_ResNet): a 2-layer projector and temperature 1.0; their ViT
        # code (MoCo_ViT) and the paper's text: 3 layers and 0.2 (the ViT recipes set those).
        proj_layers: int = field(default=2, metadata={"legacy": 3})
        pred_hidden: int = 4096
        pred_bias: bool = field(default=False, metadata={"legacy": True})  # the authors' predictor: none
        temperature: float = field(default=1.0, metadata={"legacy": 0.2})
        tau_base: float = 0.99  # momentum at step 0, increased to 1 along a cosine

    def __init__(self, backbone: nn.Module, args: MoCoV3.Args):
        super().__init__(backbone, args)
        self.projector = mlp(
            backbone.feature_dim, args.proj_hidden, args.proj_dim, layers=args.proj_layers, last_bn=True
        )
        self.predictor = mlp(args.proj_dim, args.pred_hidden, args.proj_dim, last_bias=args.pred_bias)
        self.momentum_encoder = MomentumTeacher(self._online(), args.tau_base)

    def _online(self) -> nn.Sequential:
        return nn.Sequential(self.backbone, self.projector)

    @staticmethod
    def view_plan(args) -> ViewPlan:
        return ViewPlan("asymmetric_pair", "byol")

    def forward(self, views):
        v1, v2 = views
        h1 = self.backbone(v1)
        q1 = self.predictor(self.projector(h1))
        q2 = self.predictor(self.projector(self.backbone(v2)))
        k1, k2 = self.momentum_encoder(v1), self.momentum_encoder(v2)
        t = self.args.temperature
        q1, q2, k1, k2 = gather(q1), gather(q2), gather_nograd(k1), gather_nograd(k2)  # in-batch negatives: global
        loss = 2 * t * (infonce(q1, k2, t) + infonce(q2, k1, t))
        return {"loss": loss, "features": h1.detach()}

    def momentum_pairs(self):
        return [(self.momentum_encoder, self._online())]
