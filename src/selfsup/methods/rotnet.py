"""RotNet: Unsupervised Representation Learning by Predicting Image Rotations (Gidaris, Singh &
Komodakis 2018, ICLR, arXiv:1803.07728).

Every image of the batch is rotated by 0, 90, 180 and 270 degrees (all four copies in the batch,
Sec. 2.2 / 3), and a classifier on the backbone's features predicts the rotation: the
cross-entropy of Eq. 1-2.

Notes on defaults and deviations: docs/methods/rotnet.md
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..modalities.base import ViewPlan
from .base import Method
from .parts.heads import mlp


def rotations(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The four rotated copies of a batch (N, C, H, W) of square images, stacked as
    ``[rot0(x), rot90(x), rot180(x), rot270(x)]`` (counter-clockwise, ``torch.rot90``'s sense), and
    their labels ``0, 1, 2, 3`` (each repeated N times)."""
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"rotations need square images, got {tuple(x.shape[-2:])}")
    rotated = torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in range(4)])
    labels = torch.arange(4, device=x.device).repeat_interleave(x.shape[0])
    return rotated, labels


class RotNet(Method):
    name = "rotnet"
    paper = "Gidaris et al. 2018, Unsupervised Representation Learning by Predicting Image Rotations (arXiv:1803.07728)"

    sync_bn = False  # a classifier's ordinary per-device BatchNorm, as the authors trained it
    modalities = ("image",)  # rotations of square images

    @dataclass
    class Args:
        head_hidden: int = 0  # 0: a linear classifier; otherwise a 2-layer MLP with this hidden width

    def __init__(self, backbone: nn.Module, args: RotNet.Args):
        super().__init__(backbone, args)
        d = backbone.feature_dim
        self.classifier = nn.Linear(d, 4) if args.head_hidden <= 0 else mlp(d, args.head_hidden, 4)

    @staticmethod
    def view_plan(args) -> ViewPlan:
        return ViewPlan("single", "rotnet")  # random resized crop and horizontal flip, nothing else

    def forward(self, views):
        (x,) = views
        rotated, labels = rotations(x)
        h = self.backbone(rotated)
        logits = self.classifier(h).float()
        loss = F.cross_entropy(logits, labels)
        accuracy = (logits.detach().argmax(dim=1) == labels).float().mean()
        return {"loss": loss, "features": h[: len(x)].detach(), "rotation_accuracy": accuracy}
