"""SCARF: Self-Supervised Contrastive Learning using Random Feature Corruption (Bahri, Jiang, Tay &
Metzler 2022, ICLR, arXiv:2106.15147).

Each row (the anchor) and a corrupted copy of it, in which a fraction c = 0.6 of the features is
replaced by draws from those features' empirical marginals (Sec. 2, Fig. 1; the table modality's
``scarf`` view), pass through the encoder f and a 2-layer pre-training head g; the InfoNCE loss at
temperature 1 (Sec. 2) makes each anchor's embedding pick out its own corrupted view among the
batch's corrupted views.

Notes on defaults and deviations: docs/methods/scarf.md
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..distributed import gather
from ..errors import UsageError
from ..losses import infonce
from ..modalities.base import ViewPlan
from .base import Method


def relu_mlp(in_dim: int, hidden: int, out_dim: int, layers: int) -> nn.Sequential:
    """``layers`` linear layers with ReLU between them (no normalisation), SCARF's head."""
    mods, dim = [], in_dim
    for _ in range(layers - 1):
        mods += [nn.Linear(dim, hidden), nn.ReLU(inplace=True)]
        dim = hidden
    return nn.Sequential(*mods, nn.Linear(dim, out_dim))


class SCARF(Method):
    name = "scarf"
    paper = (
        "Bahri et al. 2022, SCARF: Self-Supervised Contrastive Learning using Random Feature Corruption "
        "(arXiv:2106.15147)"
    )
    modalities = ("table",)

    @dataclass
    class Args:
        corruption_rate: float = 0.6  # Sec. 4: c = 0.6 throughout
        temperature: float = 1.0  # Sec. 4: tau = 1
        head_hidden: int = 256  # Sec. 4: the pre-training head g is a 2-layer ReLU network of width 256
        head_dim: int = 256
        head_layers: int = 2

    def __init__(self, backbone: nn.Module, args: SCARF.Args):
        super().__init__(backbone, args)
        if not 0 < args.corruption_rate <= 1 or args.temperature <= 0 or args.head_layers < 1:
            raise UsageError("scarf: corruption_rate must be in (0, 1], temperature > 0 and head_layers >= 1")
        self.projector = relu_mlp(backbone.feature_dim, args.head_hidden, args.head_dim, args.head_layers)

    @staticmethod
    def view_plan(args) -> ViewPlan:
        return ViewPlan("asymmetric_pair", "scarf", options={"corruption_rate": args.corruption_rate})

    def forward(self, views):
        anchor, corrupted = views
        h = self.backbone(torch.cat([anchor, corrupted]))
        z_anchor, z_corrupted = self.projector(h).chunk(2)
        loss = infonce(gather(z_anchor), gather(z_corrupted), self.args.temperature)  # global batch's negatives
        return {"loss": loss, "features": h[: len(anchor)].detach()}
