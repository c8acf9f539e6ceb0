"""SimCLR: A Simple Framework for Contrastive Learning of Visual Representations (Chen, Kornblith,
Norouzi & Hinton 2020, ICML, arXiv:2002.05709).

One network (backbone + 2-layer projection MLP, Sec. 2.1 and Fig. 2) embeds two augmented views of
every image; the NT-Xent loss (Eq. 1, Algorithm 1) makes each embedding pick out its pair among the
other 2N - 1 embeddings of the batch. As in the authors' implementation, the two views go through
the network as one batch of 2N, so BatchNorm statistics are those of all 2N views (the paper's
"global BN", Sec. 2.2, on one device). Views: Appendix A's augmentation (:func:`simclr_views`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..augment.views import ViewConfig
from ..losses import nt_xent
from ..distributed import gather
from .base import Method, views_of_size
from .heads import mlp


def simclr_views(size: int = 32, strength: float | None = None) -> list[ViewConfig]:
    """SimCLR's augmentation (Chen et al. 2020, Appendix A), the same for both views: random
    resized crop (scale 0.08-1, ratio 3/4-4/3) with flip, colour jitter with probability 0.8 and
    strength ``s`` (brightness = contrast = saturation = 0.8 s, hue = 0.2 s), grayscale with
    probability 0.2, Gaussian blur (sigma 0.1-2, kernel 10% of the size) with probability 0.5.

    ``strength``: the paper's ``s``, 1.0 for ImageNet and 0.5 for CIFAR-10 (Appendix B.9); by
    default 0.5 for images of at most 64 pixels and 1.0 above. (The paper drops the blur for CIFAR;
    recipes for small images set ``blur_p: 0``.)
    """
    s = strength if strength is not None else (0.5 if size <= 64 else 1.0)
    view = dict(size=size, crop_scale=(0.08, 1.0), flip_p=0.5, jitter_p=0.8, brightness=0.8 * s,
                contrast=0.8 * s, saturation=0.8 * s, hue=0.2 * s, grayscale_p=0.2, blur_p=0.5,
                solarize_p=0.0)
    return [ViewConfig(**view), ViewConfig(**view)]


class SimCLR(Method):
    name = "simclr"
    paper = "Chen et al. 2020, A Simple Framework for Contrastive Learning of Visual Representations (arXiv:2002.05709)"

    @dataclass
    class Args:
        proj_hidden: int = 2048  # the paper's ResNet-50 uses its 2048-d feature width
        proj_dim: int = 128      # Sec. 2.1 / Fig. 8: 128-d output
        proj_layers: int = 2     # Sec. 2.1; SimCLRv2 uses 3
        temperature: float = 0.5  # Table 5 / Appendix B.9: 0.5 for CIFAR-10 (0.1 for ImageNet)

    def __init__(self, backbone: nn.Module, args: "SimCLR.Args"):
        super().__init__(backbone, args)
        self.projector = mlp(backbone.feature_dim, args.proj_hidden, args.proj_dim, layers=args.proj_layers)

    default_views = views_of_size(simclr_views)

    def forward(self, views):
        v1, v2 = views
        z = self.projector(self.backbone(torch.cat([v1, v2])))
        z1, z2 = z.chunk(2)
        return {"loss": nt_xent(gather(z1), gather(z2), self.args.temperature)}  # global batch: all negatives
