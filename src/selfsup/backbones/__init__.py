"""Backbones by name: one registry, one constructor signature (as timm does it).

``build_backbone(name, in_channels=3, stem="cifar", ...)`` returns an ``nn.Module`` mapping images
(N, C, H, W) to features (N, D) with ``.feature_dim == D`` and ``.spec``, the keyword arguments
that rebuild it (``build_backbone(**model.spec)``). ResNets take ``stem`` and
``zero_init_residual``; vision transformers (``vit-*``, in ``vit.py``) take ``image_size``,
``patch_size``, ``pool``, ``pos_embed`` and ``drop_path``; each ignores the other family's options.
"""
from __future__ import annotations

from functools import partial

from torch import nn

from ..errors import unknown
from .resnet import BasicBlock, Bottleneck, ResNet

_WIDE = [64, 128, 256, 512]

BACKBONES = {
    "resnet18": partial(ResNet, BasicBlock, [2, 2, 2, 2], _WIDE),
    "resnet34": partial(ResNet, BasicBlock, [3, 4, 6, 3], _WIDE),
    "resnet50": partial(ResNet, Bottleneck, [3, 4, 6, 3], _WIDE),
    # For 8x8 and 16x16 inputs (the digits demo): three stages, 8 -> 4 -> 2 at 8x8, 128-d features.
    "resnet-small": partial(ResNet, BasicBlock, [1, 1, 1], [32, 64, 128]),
}

STEMS = ("cifar", "imagenet")
VIT_NAMES = ("vit-tiny", "vit-small", "vit-base")  # built by vit.build_vit


def build_backbone(name: str, in_channels: int = 3, stem: str = "cifar", zero_init_residual: bool = False,
                   image_size: int = 32, patch_size: int = 0, pool: str = "cls",
                   pos_embed: str = "sincos", drop_path: float = 0.0) -> nn.Module:
    if name in VIT_NAMES:
        from .vit import build_vit
        return build_vit(name, in_channels, image_size, patch_size, pool, pos_embed, drop_path)
    if name not in BACKBONES:
        raise unknown("backbone", name, [*BACKBONES, *VIT_NAMES])
    if stem not in STEMS:
        raise unknown("stem", stem, STEMS)
    model = BACKBONES[name](in_channels=in_channels, stem=stem, zero_init_residual=zero_init_residual)
    model.spec = {"name": name, "in_channels": in_channels, "stem": stem}
    return model


def backbone_for(cfg) -> nn.Module:
    """The backbone a :class:`~selfsup.config.Config` describes (its ``model`` section, with the
    view size and channel count of its ``augment`` section), freshly initialised."""
    m = cfg.model
    return build_backbone(m.backbone, cfg.augment.channels, m.stem, m.zero_init_residual, cfg.augment.size,
                          m.patch_size, m.pool, m.pos_embed, m.drop_path)
