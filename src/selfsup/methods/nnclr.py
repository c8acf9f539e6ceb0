"""NNCLR: With a Little Help from My Friends: Nearest-Neighbor Contrastive Learning of Visual
Representations (Dwibedi, Aytar, Tompson, Sermanet & Zisserman 2021, ICCV, arXiv:2104.14548).

SimCLR-like, but the positive of an embedding is its nearest neighbour in a support set of
embeddings of earlier batches (Sec. 3.2). Loss: Eq. 2 with the predictor of Sec. 3.3, over both
view orders and averaged; the support set receives the first view's projections after the step.

Notes on defaults and deviations: docs/methods/nnclr.md
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..distributed import gather, gather_nograd
from ..losses import infonce
from ..modalities.base import ViewPlan
from .base import Method
from .parts.heads import mlp
from .parts.queue import MemoryQueue


class NNCLR(Method):
    name = "nnclr"
    paper = "Dwibedi et al. 2021, Nearest-Neighbor Contrastive Learning of Visual Representations (arXiv:2104.14548)"

    @dataclass
    class Args:
        proj_hidden: int = 2048
        proj_dim: int = 256
        proj_layers: int = 3
        pred_hidden: int = 4096
        temperature: float = 0.1
        queue_size: int = 16384  # the paper: 98304 (ImageNet)

    def __init__(self, backbone: nn.Module, args: NNCLR.Args):
        super().__init__(backbone, args)
        self.projector = mlp(
            backbone.feature_dim, args.proj_hidden, args.proj_dim, layers=args.proj_layers, last_bn=True
        )
        self.predictor = mlp(args.proj_dim, args.pred_hidden, args.proj_dim)
        self.support = MemoryQueue(args.queue_size, args.proj_dim)
        self.support.push(F.normalize(torch.randn(args.queue_size, args.proj_dim), dim=1))
        self._pending: torch.Tensor | None = None

    @staticmethod
    def view_plan(args) -> ViewPlan:
        return ViewPlan("asymmetric_pair", "byol")

    @torch.no_grad()
    def nearest_neighbour(self, z: torch.Tensor) -> torch.Tensor:
        """The support-set row with the highest cosine similarity to each row of ``z``."""
        support = self.support.items()
        with torch.autocast(z.device.type, enabled=False):  # float32 similarities for the argmax
            z = F.normalize(z.float(), dim=1)
            idx = (z @ F.normalize(support, dim=1).T).argmax(dim=1)
        return support[idx]

    def forward(self, views):
        v1, v2 = views
        h1 = self.backbone(v1)
        z1 = self.projector(h1)
        z2 = self.projector(self.backbone(v2))
        p1, p2 = self.predictor(z1), self.predictor(z2)
        nn1, nn2 = self.nearest_neighbour(z1), self.nearest_neighbour(z2)
        t = self.args.temperature
        nn1, nn2, p1, p2 = gather(nn1), gather(nn2), gather(p1), gather(p2)  # in-batch negatives: global
        loss = infonce(nn1, p2, t) / 2 + infonce(nn2, p1, t) / 2
        if self.training:
            self._pending = gather_nograd(F.normalize(z1.detach().float(), dim=1))  # pushed after the step
        return {"loss": loss, "features": h1.detach()}

    def after_step(self, step, total_steps):
        if self._pending is not None:
            self.support.push(self._pending)
            self._pending = None
        return {}
