"""Augmentations on the training device: batched image ops and the view recipes built from them."""
from selfsup.augment.image import (
    Uniforms,
    color_jitter,
    gaussian_blur,
    jitter_with,
    normalize,
    random_grayscale,
    resized_crop_flip,
    solarize,
)
from selfsup.augment.views import ViewAugment, ViewConfig, ViewRecipe, byol_views, channel_stats

__all__ = [
    "Uniforms",
    "ViewAugment",
    "ViewConfig",
    "ViewRecipe",
    "byol_views",
    "channel_stats",
    "color_jitter",
    "gaussian_blur",
    "jitter_with",
    "normalize",
    "random_grayscale",
    "resized_crop_flip",
    "solarize",
]
