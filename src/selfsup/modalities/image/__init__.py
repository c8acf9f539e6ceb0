"""Images: uint8 ``(N, C, H, W)`` samples, C = 1 or 3, viewed with batched per-sample augmentation
on the training device (:mod:`.ops`, :mod:`.views`) following each paper's recipe (:mod:`.recipes`).

The input spec is ``{"size", "channels", "mean", "std"}``: the view size, the channels the model
sees (grey images are replicated to 3 when asked) and the per-channel statistics of the training
split the views are normalised with. The raw-input baseline is the flattened pixels in [0, 1].
"""

from __future__ import annotations

import torch

from ...errors import UsageError
from ..base import VIEW_KINDS, Modality, ViewPlan
from .recipes import recipe_for
from .sources import SOURCES
from .views import ViewAugment, ViewConfig, ViewRecipe, channel_stats


class ImageModality(Modality):
    name = "image"
    raw_name = "raw pixels"
    view_config = ViewConfig
    default_backbone = "resnet18"
    sources = SOURCES
    view_kinds = frozenset(VIEW_KINDS)

    def default_views(self, plan: ViewPlan, augment) -> list[ViewConfig]:
        return recipe_for(plan, augment.size)

    def check_config(self, cfg) -> None:
        if cfg.augment.channels not in (1, 3):
            raise UsageError(f"augment.channels must be 1 or 3, got {cfg.augment.channels}")

    def input_spec(self, data, cfg) -> dict:
        mean, std = input_stats(data, cfg.augment.channels)
        return {
            "size": cfg.view_configs()[0].size,
            "channels": cfg.augment.channels,
            "mean": list(mean),
            "std": list(std),
        }

    def views(self, view_configs, spec, data=None) -> ViewRecipe:
        return ViewRecipe(view_configs, spec["channels"], spec["mean"], spec["std"])

    def eval_transform(self, spec):
        return ViewRecipe([ViewConfig(size=spec["size"])], spec["channels"], spec["mean"], spec["std"]).eval_transform

    def check_input(self, data, spec) -> None:
        channels, wanted = data.train.shape[1], spec["channels"]
        if not (channels == wanted or (channels == 1 and wanted == 3)):  # grayscale is replicated to 3
            raise UsageError(
                f"{data.name} has {channels}-channel images but the encoder takes {wanted} "
                "channels; use data with the same channels as the training data"
            )

    def memory_format(self, channels_last: bool) -> torch.memory_format:
        return torch.channels_last if channels_last else torch.contiguous_format

    def raw_features(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(len(x), -1).float() / 255

    def finetune_views(self, spec, first_view, settings):
        crop_scale = tuple(settings.crop_scale or first_view.crop_scale)
        view = ViewConfig(
            size=spec["size"],
            crop_scale=crop_scale,
            flip_p=first_view.flip_p,
            jitter_p=0.0,
            grayscale_p=0.0,
            blur_p=0.0,
            solarize_p=0.0,
        )
        augment = ViewAugment(view, spec["channels"], spec["mean"], spec["std"])
        augment.settings = {"crop_scale": list(crop_scale), "flip_p": first_view.flip_p}
        return augment

    def pictures(self, context) -> dict[str, str]:
        from .report import pictures

        return pictures(context)


def input_stats(data, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of ``data``'s training images as the model sees them with
    ``channels`` input channels (a grayscale image's statistics replicated to 3 channels)."""
    mean, std = channel_stats(data.train)
    if channels == 3 and data.train.shape[1] == 1:
        return mean * 3, std * 3
    if channels == 1 and data.train.shape[1] == 3:
        raise UsageError(f"{data.name} has 3 channels; set augment.channels=3")
    return mean, std


MODALITY = ImageModality()

__all__ = ["MODALITY", "ImageModality", "ViewAugment", "ViewConfig", "ViewRecipe", "channel_stats", "input_stats"]
