"""Multi-crop (Caron et al. 2020, SwAV, Sec. 3.2; reused by DINO, Caron et al. 2021, Sec. 3.1):
two global views at full resolution plus ``n_local`` small, low-resolution local views. The global
views come first (the views the teacher / the codes see), the local ones after them; the
modality makes them (``ViewPlan("multicrop", n_local=...)``).
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn


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
    """The views must be the 2 global + ``n_local`` local views the method's view plan
    describes (and of ``local_size`` when that is set), so that method arguments that shape the
    views are never silently ignored."""
    if len(views) != 2 + n_local:
        raise ValueError(
            f"{method} expects 2 global + n_local={n_local} local views, got {len(views)} views "
            f"(the views come from {method}'s view plan)"
        )
    if n_local and local_size > 0 and any(v.shape[-1] != local_size for v in views[2:]):
        raise ValueError(
            f"{method} expects local views of local_size={local_size} px, got "
            f"{sorted({v.shape[-1] for v in views[2:]})} (the views come from {method}'s "
            "view plan)"
        )
