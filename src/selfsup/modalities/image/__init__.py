"""Images: uint8 ``(N, C, H, W)`` samples, C = 1 or 3, viewed with batched per-sample augmentation
on the training device (:mod:`.ops`, :mod:`.views`) following each paper's recipe (:mod:`.recipes`).
Folders of image files are prepared once into a memory-mapped store (:mod:`.prepare`).

The input spec is ``{"size", "channels", "mean", "std"}``: the view size, the channels the model
sees (grey images are replicated to 3 when asked) and the per-channel statistics of the training
split the views are normalised with (exact up to ``STATS_FULL_BYTES`` of images, else from a seeded
sample of ``STATS_SAMPLE``; see :func:`input_stats`). The raw-input baseline is the pixels in
[0, 1], flattened; images larger than ``RAW_SIDE`` x ``RAW_SIDE`` are first area-resized to it
(see :meth:`ImageModality.raw_features`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...data.base import unpack
from ...errors import UsageError
from ..base import VIEW_KINDS, Modality, ViewPlan
from .prepare import default_storage_size
from .recipes import recipe_for
from .sources import SOURCES
from .views import ViewAugment, ViewConfig, ViewRecipe, channel_stats

STATS_FULL_BYTES = 256 << 20  # a training split up to this size gives exact statistics (one pass)
STATS_SAMPLE = 4096  # larger ones: this many images, a seeded sample
RAW_SIDE = 32  # the raw-pixel baseline sees at most 32 x 32 pixels per channel


class ImageModality(Modality):
    name = "image"
    raw_name = "raw pixels"
    view_config = ViewConfig
    default_backbone = "resnet18"
    sources = SOURCES
    view_kinds = frozenset(VIEW_KINDS)

    def default_views(self, plan: ViewPlan, augment) -> list[ViewConfig]:
        return recipe_for(plan, augment.size)

    def check_config(self, cfg, named: frozenset[str] = frozenset()) -> None:
        """Also completes a folder run's source options: the store's size (``data.options.size``) from
        the largest view, so that the run's config records which store it trains from."""
        if cfg.augment.channels not in (1, 3):
            raise UsageError(f"augment.channels must be 1 or 3, got {cfg.augment.channels}")
        if cfg.data.name.startswith("folder:") and "size" not in cfg.data.options:
            cfg.data.options["size"] = default_storage_size(max(v.size for v in cfg.view_configs()))

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

    def raw_features(self, x) -> torch.Tensor:
        """Pixels in [0, 1], flattened. An image larger than ``RAW_SIDE`` x ``RAW_SIDE`` is first
        area-resized to it (each output pixel the mean of its block of the image: a bounded
        representation, 3,072 values for colour, that keeps what a kNN on pixels can use); smaller
        ones (digits, Fashion-MNIST, CIFAR) are used as they are."""
        x, _ = unpack(x)
        if x.shape[-2] > RAW_SIDE or x.shape[-1] > RAW_SIDE:
            side = (min(x.shape[-2], RAW_SIDE), min(x.shape[-1], RAW_SIDE))
            return F.adaptive_avg_pool2d(x.float(), side).reshape(len(x), -1) / 255
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
    ``channels`` input channels (a grayscale image's statistics replicated to 3 channels).

    A training split of up to ``STATS_FULL_BYTES`` (Fashion-MNIST, a few thousand photos) is read
    whole, in chunks. A larger one (a store of photos) gives them from ``STATS_SAMPLE`` images
    drawn with a fixed seed (the statistics describe the data, not the run): the mean's standard
    error is then the spread of the images' own mean intensities (about 0.1-0.15 in [0, 1] for
    photos) over sqrt(4096) = 64, about 0.002, under 1% of the pixel std (about 0.25); the views
    are normalised to within that, which nothing downstream can tell apart.
    """
    images = data.train
    rows = None
    if images.numel() * images.element_size() > STATS_FULL_BYTES and len(images) > STATS_SAMPLE:
        rows = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:STATS_SAMPLE].sort().values
    mean, std = channel_stats(images, rows)
    if channels == 3 and data.train.shape[1] == 1:
        return mean * 3, std * 3
    if channels == 1 and data.train.shape[1] == 3:
        raise UsageError(f"{data.name} has 3 channels; set augment.channels=3")
    return mean, std


MODALITY = ImageModality()

__all__ = ["MODALITY", "ImageModality", "ViewAugment", "ViewConfig", "ViewRecipe", "channel_stats", "input_stats"]
