"""The papers' image views: what each method's :class:`~selfsup.modalities.base.ViewPlan` becomes
on images. A recipe is a list of :class:`~selfsup.modalities.image.views.ViewConfig`, one per view,
before the config's ``augment.common`` and ``augment.views`` overrides.
"""

from __future__ import annotations

import dataclasses

from ...errors import UsageError
from ..base import ViewPlan
from .views import ViewConfig

# Views with nothing but a crop and a flip: RotNet, MAE, MP3 (the papers' training augmentation).
_PLAIN = dict(jitter_p=0.0, grayscale_p=0.0, blur_p=0.0, solarize_p=0.0)


def byol_views(size: int = 32) -> list[ViewConfig]:
    """BYOL's two asymmetric views (Grill et al. 2020, Table 6): blur always in view 1 and with
    p = 0.1 in view 2, solarisation only in view 2 (p = 0.2); the rest is shared."""
    return [
        ViewConfig(size=size, blur_p=1.0, solarize_p=0.0),
        ViewConfig(size=size, blur_p=0.1, solarize_p=0.2),
    ]


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
    view = dict(
        size=size,
        crop_scale=(0.08, 1.0),
        flip_p=0.5,
        jitter_p=0.8,
        brightness=0.8 * s,
        contrast=0.8 * s,
        saturation=0.8 * s,
        hue=0.2 * s,
        grayscale_p=0.2,
        blur_p=0.5,
        solarize_p=0.0,
    )
    return [ViewConfig(**view), ViewConfig(**view)]


def mocov2_views(size: int = 32) -> list[ViewConfig]:
    """MoCo v2's "aug+" (Chen et al. 2020, Sec. 2 and the authors' code), the same for both views:
    random resized crop (scale 0.2-1) with flip, colour jitter (0.4, 0.4, 0.4, 0.1) with probability
    0.8, grayscale with probability 0.2 and Gaussian blur (sigma 0.1-2) with probability 0.5.
    SimSiam uses the same augmentation."""
    view = dict(
        size=size,
        crop_scale=(0.2, 1.0),
        flip_p=0.5,
        jitter_p=0.8,
        brightness=0.4,
        contrast=0.4,
        saturation=0.4,
        hue=0.1,
        grayscale_p=0.2,
        blur_p=0.5,
        solarize_p=0.0,
    )
    return [ViewConfig(**view), ViewConfig(**view)]


def local_size_for(global_size: int, local_size: int = 0) -> int:
    """``local_size`` when given (> 0), otherwise half of ``global_size`` (at least 1 px)."""
    return local_size if local_size > 0 else max(1, global_size // 2)


def multicrop_views(
    global_size: int,
    local_size: int,
    n_local: int,
    global_scale: tuple[float, float] = (0.4, 1.0),
    local_scale: tuple[float, float] = (0.05, 0.4),
    base: ViewConfig | None = None,
) -> list[ViewConfig]:
    """2 global + ``n_local`` local views, DINO's recipe (Caron et al. 2021, App. / main_dino.py's
    ``DataAugmentationDINO``): the global pair is BYOL's asymmetric pair (blur p 1.0 / 0.1,
    solarisation p 0 / 0.2), every local view has blur p 0.5 and no solarisation. Everything else
    (flip, colour jitter, grayscale) comes from ``base`` (default: :class:`ViewConfig`'s, which are
    BYOL's and DINO's values). The papers' sizes are 224 px global and 96 px local on ImageNet;
    here the local size defaults to half the global size (:func:`local_size_for`), which keeps it
    even so the strided stages of the small-image ResNets halve it cleanly."""
    base = base or ViewConfig()
    glob = dataclasses.replace(base, size=global_size, crop_scale=tuple(global_scale))
    local = dataclasses.replace(base, size=local_size, crop_scale=tuple(local_scale), blur_p=0.5, solarize_p=0.0)
    return [
        dataclasses.replace(glob, blur_p=1.0, solarize_p=0.0),
        dataclasses.replace(glob, blur_p=0.1, solarize_p=0.2),
    ] + [dataclasses.replace(local) for _ in range(n_local)]


def _multicrop(plan: ViewPlan, size: int) -> list[ViewConfig]:
    o = plan.options
    return multicrop_views(
        size, local_size_for(size, o.get("local_size", 0)), plan.n_local, o["global_scale"], o["local_scale"]
    )


def _swav(plan: ViewPlan, size: int) -> list[ViewConfig]:
    """Multi-crop with SwAV's scales; every crop gets the same colour distortion of strength 1
    (jitter 0.8, 0.8, 0.8, 0.2 with p 0.8, grayscale p 0.2) and blur with p 0.5, no solarisation
    (the authors' ``MultiCropDataset``)."""
    return [
        dataclasses.replace(v, brightness=0.8, contrast=0.8, saturation=0.8, hue=0.2, blur_p=0.5, solarize_p=0.0)
        for v in _multicrop(plan, size)
    ]


def _sit(plan: ViewPlan, size: int) -> list[ViewConfig]:
    """SiT: BYOL's pair with crops of 20-100% (the authors' ``DataAugmentationSiT``)."""
    views = byol_views(size)
    for v in views:
        v.crop_scale = (0.2, 1.0)
    return views


def _gmml(plan: ViewPlan, size: int) -> list[ViewConfig]:
    """GMML's light pair (the authors' ``DataAugmentationGMML``): crops of 5-100%, weak jitter."""
    view = dict(
        size=size,
        crop_scale=(0.05, 1.0),
        flip_p=0.5,
        jitter_p=0.3,
        brightness=0.1,
        contrast=0.1,
        saturation=0.1,
        hue=0.01,
        grayscale_p=0.0,
        blur_p=0.1,
        solarize_p=0.0,
    )
    return [ViewConfig(**view), ViewConfig(**view)]


RECIPES = {
    "byol": lambda plan, size: byol_views(size),
    "simclr": lambda plan, size: simclr_views(size),
    "mocov2": lambda plan, size: mocov2_views(size),
    "dino": _multicrop,
    "swav": _swav,
    "sit": _sit,
    "gmml": _gmml,
    # One view: random resized crop and horizontal flip, nothing else (RotNet's 50-100%).
    "rotnet": lambda plan, size: [ViewConfig(size=size, crop_scale=(0.5, 1.0), flip_p=0.5, **_PLAIN)],
    # One view: random resized crop (scale 0.2-1) and horizontal flip (MAE Sec. 4, MP3).
    "mae": lambda plan, size: [ViewConfig(size=size, crop_scale=(0.2, 1.0), flip_p=0.5, **_PLAIN)],
    # One view: the crop alone (I-JEPA's code: no flip, no colour).
    "ijepa": lambda plan, size: [
        ViewConfig(size=size, crop_scale=tuple(plan.options["crop_scale"]), flip_p=0.0, **_PLAIN)
    ],
}
# Kinds and the recipe used when a plan names no style the images know.
DEFAULT_STYLE = {"pair": "simclr", "asymmetric_pair": "byol", "multicrop": "dino", "single": "rotnet", "masked": "mae"}


def recipe_for(plan: ViewPlan, size: int) -> list[ViewConfig]:
    style = plan.style if plan.style in RECIPES else DEFAULT_STYLE[plan.kind]
    views = RECIPES[style](plan, size)
    if len(views) != plan.count:
        raise UsageError(f"the image recipe {style!r} makes {len(views)} views but the method asks for {plan.count}")
    return views
