"""Multi-crop (Caron et al. 2020, SwAV, Sec. 3.2; reused by DINO, Caron et al. 2021, Sec. 3.1):
two global views at full resolution plus ``n_local`` small, low-resolution local views.

A multi-crop recipe is only a list of :class:`~selfsup.augment.views.ViewConfig`: the global
views come first (the views the teacher / the codes see), the local ones after them. The
papers' sizes are 224 px global and 96 px local on ImageNet (a ratio of 0.43); here the local size
defaults to half the global size (16 px for 32 px views, 4 px for the 8x8 digits), which keeps
the size even so the strided stages of the small-image ResNets halve it cleanly.
"""
from __future__ import annotations

import contextlib
import dataclasses

import torch
from torch import nn

from ..augment.views import ViewConfig

DINO_GLOBAL_SCALE = (0.4, 1.0)    # DINO's main_dino.py defaults (global_crops_scale, local_crops_scale)
DINO_LOCAL_SCALE = (0.05, 0.4)
SWAV_GLOBAL_SCALE = (0.14, 1.0)   # SwAV, Sec. 4 / App. A: 2x224 crops of (0.14, 1), 6x96 of (0.05, 0.14)
SWAV_LOCAL_SCALE = (0.05, 0.14)


def local_size_for(global_size: int, local_size: int = 0) -> int:
    """``local_size`` when given (> 0), otherwise half of ``global_size`` (at least 1 px)."""
    return local_size if local_size > 0 else max(1, global_size // 2)


def multicrop_views(global_size: int, local_size: int, n_local: int,
                    global_scale: tuple[float, float] = DINO_GLOBAL_SCALE,
                    local_scale: tuple[float, float] = DINO_LOCAL_SCALE,
                    base: ViewConfig | None = None) -> list[ViewConfig]:
    """2 global + ``n_local`` local views, DINO's recipe (Caron et al. 2021, App. / main_dino.py's
    ``DataAugmentationDINO``): the global pair is BYOL's asymmetric pair (blur p 1.0 / 0.1,
    solarisation p 0 / 0.2), every local view has blur p 0.5 and no solarisation. Everything else
    (flip, colour jitter, grayscale) comes from ``base`` (default: :class:`ViewConfig`'s, which are
    BYOL's and DINO's values)."""
    base = base or ViewConfig()
    glob = dataclasses.replace(base, size=global_size, crop_scale=tuple(global_scale))
    local = dataclasses.replace(base, size=local_size, crop_scale=tuple(local_scale), blur_p=0.5,
                                solarize_p=0.0)
    return ([dataclasses.replace(glob, blur_p=1.0, solarize_p=0.0),
             dataclasses.replace(glob, blur_p=0.1, solarize_p=0.2)]
            + [dataclasses.replace(local) for _ in range(n_local)])


@contextlib.contextmanager
def frozen_bn_stats(module: nn.Module):
    """BatchNorm layers inside still normalise with the batch's statistics, but their running
    statistics (what evaluation uses) are left as they are (momentum 0 for the duration)."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in zip(norms, saved):
            m.momentum = momentum


def forward_multicrop(backbone: nn.Module, views: list[torch.Tensor]) -> torch.Tensor:
    """Backbone features of all views, concatenated in view order: (len(views) * B, D).

    Consecutive views of the same resolution go through the backbone as one batch (DINO's
    ``MultiCropWrapper``, SwAV's ``forward`` do the same), so BatchNorm sees the global views
    together and the local views together, and there is one backbone call per resolution.

    Unlike the reference code, only the global views (the first resolution) update BatchNorm's
    running statistics: the encoder is evaluated on whole images at the global size, and
    statistics of the small local crops (at 8x8, a 4x4 crop leaves a 1x1 map after two strided
    stages) would otherwise become most of the running averages and cost kNN accuracy (digits,
    DINO: 0.947 with the local crops' statistics, 0.964 with the same weights and statistics of
    whole images).
    """
    feats, start = [], 0
    while start < len(views):
        end = start + 1
        while end < len(views) and views[end].shape[-2:] == views[start].shape[-2:]:
            end += 1
        x = torch.cat(views[start:end]) if end - start > 1 else views[start]
        with contextlib.nullcontext() if start == 0 else frozen_bn_stats(backbone):
            feats.append(backbone(x))
        start = end
    return torch.cat(feats) if len(feats) > 1 else feats[0]


def check_views(method: str, views: list[torch.Tensor], n_local: int, local_size: int = 0) -> None:
    """The views must be the 2 global + ``n_local`` local views ``default_views(size, args)``
    describes (and of ``local_size`` when that is set), so that method arguments that shape the
    views are never silently ignored."""
    if len(views) != 2 + n_local:
        raise ValueError(f"{method} expects 2 global + n_local={n_local} local views, got {len(views)} views "
                         f"(the views come from {method}'s default_views(size, args))")
    if n_local and local_size > 0 and any(v.shape[-1] != local_size for v in views[2:]):
        raise ValueError(f"{method} expects local views of local_size={local_size} px, got "
                         f"{sorted({v.shape[-1] for v in views[2:]})} (the views come from {method}'s "
                         "default_views(size, args))")
