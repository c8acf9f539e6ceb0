"""Image views: the chain of batched ops that turns a uint8 batch into one augmented view.

The default view settings are BYOL's (Grill et al. 2020, "Bootstrap your own latent", Table 6 and
Appendix B): random resized crop with flip, colour jitter, grayscale, Gaussian blur and
solarisation, in that order, with two asymmetric views that differ in blur and solarisation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ...data.base import Rows, unpack
from ...errors import UsageError
from ..base import Views
from . import ops

VIEW_DRAWS = sum(ops.DRAWS.values())  # uniforms per sample that one view consumes at most


@dataclass
class ViewConfig:
    """One view's recipe; every probability and range is configurable."""

    size: int = 32
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    grayscale_p: float = 0.2
    blur_p: float = 1.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_kernel: int = 0  # 0 = automatic: odd, about 10% of size, at least 3 (BYOL: 23 px at 224)
    solarize_p: float = 0.0
    solarize_threshold: float = 0.5

    def __post_init__(self) -> None:
        # Configs come from YAML as lists; keep the declared tuple types.
        for name in ("crop_scale", "crop_ratio", "blur_sigma"):
            setattr(self, name, tuple(float(v) for v in getattr(self, name)))
        problems = [
            f"{name} must be in [0, 1], got {getattr(self, name)}"
            for name in ("flip_p", "jitter_p", "grayscale_p", "blur_p", "solarize_p")
            if not 0 <= getattr(self, name) <= 1
        ]
        for name in ("crop_scale", "crop_ratio", "blur_sigma"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                problems.append(f"{name} must be an increasing positive pair, got {(lo, hi)}")
        if self.size < 1:
            problems.append(f"size must be positive, got {self.size}")
        if self.blur_kernel < 0 or (self.blur_kernel and self.blur_kernel % 2 == 0):
            problems.append(f"blur_kernel must be 0 (automatic) or odd, got {self.blur_kernel}")
        if min(self.brightness, self.contrast, self.saturation) < 0 or not 0 <= self.hue <= 0.5:
            problems.append("brightness, contrast and saturation must be >= 0, hue in [0, 0.5]")
        if problems:
            raise UsageError("bad view config: " + "; ".join(problems))

    @property
    def kernel_size(self) -> int:
        """The blur kernel: ``blur_kernel``, or odd, about 10% of ``size`` and at least 3."""
        return self.blur_kernel or max(3, round(self.size / 10) | 1)


def _to_unit(batch: torch.Tensor) -> torch.Tensor:
    """uint8 in [0, 255] -> float32 in [0, 1]; float batches are taken to be in [0, 1]."""
    if batch.dtype == torch.uint8:
        return batch.to(torch.float32).div_(255)
    return batch.to(torch.float32)


class _Normalizer:
    """Channel replication and normalisation, with mean/std kept on the batch's device."""

    def __init__(self, channels: int, mean: Sequence[float], std: Sequence[float]):
        if channels not in (1, 3):
            raise UsageError(f"channels must be 1 or 3, got {channels}")
        if len(mean) != channels or len(std) != channels:
            raise UsageError(f"mean and std need {channels} values each, got {len(mean)} and {len(std)}")
        self.channels = channels
        self.mean = torch.tensor(mean, dtype=torch.float32)
        self.std = torch.tensor(std, dtype=torch.float32)

    def check(self, batch: torch.Tensor) -> None:
        if batch.ndim != 4 or batch.shape[1] not in (1, self.channels):
            raise ValueError(f"expected a (N, 1 or {self.channels}, H, W) batch, got shape {tuple(batch.shape)}")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.mean.device != x.device:  # moved once, so no host-to-device copy per batch
            self.mean, self.std = self.mean.to(x.device), self.std.to(x.device)
        return ops.normalize(x.expand(-1, self.channels, -1, -1), self.mean, self.std)


class ViewAugment:
    """One view: uint8 (or [0, 1] float) batch on the device -> normalised float32 view.

    Order as in BYOL: crop+flip, colour jitter, grayscale, blur, solarise, normalise. A
    1-channel batch for a 3-channel model is replicated just before normalising rather than
    first: every op keeps the three channels of a grey image equal (the grey of a grey pixel is
    itself, its hue is undefined, and the ops draw the same random numbers for 1 and 3
    channels), so the result is the same - up to float rounding - at a third of the cost.
    """

    def __init__(self, cfg: ViewConfig, channels: int, mean: Sequence[float], std: Sequence[float]):
        self.cfg = cfg
        self._normalize = _Normalizer(channels, mean, std)

    def __call__(self, batch: torch.Tensor | Rows, generator: ops.Source) -> torch.Tensor:
        """``batch``: uint8 images, or :class:`~selfsup.data.base.Rows` whose ``source_size`` extra (each
        image's size in its file) makes the crop draw its boxes as on the originals. ``generator`` may
        be a :class:`~selfsup.modalities.image.ops.Uniforms` pool with at least ``VIEW_DRAWS`` columns
        left; a generator is drawn from once, up front."""
        batch, extras = unpack(batch)
        self._normalize.check(batch)
        cfg = self.cfg
        g = generator
        if isinstance(g, torch.Generator):  # all draws first: the view compiles as one graph
            g = ops.Uniforms(batch.shape[0], VIEW_DRAWS, g, batch.device)
        x = _to_unit(batch)
        x = ops.resized_crop_flip(
            x, cfg.size, cfg.crop_scale, cfg.crop_ratio, cfg.flip_p, generator=g, source_size=extras.get("source_size")
        )
        x = ops.color_jitter(x, cfg.jitter_p, cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue, generator=g)
        x = ops.random_grayscale(x, cfg.grayscale_p, generator=g)
        x = ops.gaussian_blur(x, cfg.blur_p, cfg.blur_sigma, kernel_size=cfg.kernel_size, generator=g)
        x = ops.solarize(x, cfg.solarize_p, cfg.solarize_threshold, generator=g)
        return self._normalize(x)


class ViewRecipe(Views):
    """All views of a method, drawn from one generator, plus the deterministic eval transform."""

    def __init__(self, views: list[ViewConfig], channels: int, mean: Sequence[float], std: Sequence[float]):
        if not views:
            raise UsageError("a view recipe needs at least one view")
        self.views = [ViewAugment(cfg, channels, mean, std) for cfg in views]
        self.size = views[0].size
        self._normalize = _Normalizer(channels, mean, std)

    def __call__(
        self, batch: torch.Tensor | Rows, generator: torch.Generator, shard: tuple[int, int] = (0, 1)
    ) -> list[torch.Tensor]:
        """The views of ``batch`` (images, or :class:`~selfsup.data.base.Rows` with each image's
        ``source_size``). ``shard=(rank, world_size)``: ``batch`` holds the positions ``rank, rank +
        world_size, ...`` of a global batch; the random parameters of the whole global batch are
        drawn (every rank's generator stays in step) and this shard's rows kept, so each image gets
        the augmentation one process on the global batch would give it."""
        batch, extras = unpack(batch)
        self._normalize.check(batch)
        rank, world = shard
        pool = ops.Uniforms(batch.shape[0] * world, VIEW_DRAWS * len(self.views), generator, batch.device)
        if world > 1:
            pool.values = pool.values[rank::world]
        x = _to_unit(batch)  # converted once, shared by the views
        x = Rows(x, extras) if extras else x
        return [view(x, pool) for view in self.views]

    def eval_transform(self, batch: torch.Tensor | Rows) -> torch.Tensor:
        """Resize the whole image to (size, size) (bilinear, antialiased when shrinking),
        replicate channels and normalise; no randomness, for kNN/linear eval and export.

        A prepared image fills its slot (stretched to it, its original size in ``source_size``), so
        this is the same resize of the whole photo to a square as from the original file."""
        batch, _ = unpack(batch)
        self._normalize.check(batch)
        x = _to_unit(batch)
        if x.shape[-2:] != (self.size, self.size):
            shrink = x.shape[-2] > self.size or x.shape[-1] > self.size
            size = (self.size, self.size)
            x = F.interpolate(x, size, mode="bilinear", align_corners=False, antialias=shrink)
            x = x.clamp_(0, 1)  # antialiased resampling can overshoot
        return self._normalize(x)


def channel_stats(
    images: torch.Tensor, rows: torch.Tensor | None = None, chunk: int | None = None
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std, in [0, 1] units, of a uint8 (N, C, H, W) dataset, or of
    its ``rows`` (an index tensor) when given.

    Read ``chunk`` images at a time (default: about 4 Mi values, 16 MiB as int32, whatever the image
    size), so memory stays small; sums are exact int64, so the result does not depend on the chunking.
    """
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"expected a uint8 (N, C, H, W) tensor, got {images.dtype} {tuple(images.shape)}")
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.int64)
    squares = torch.zeros(c, dtype=torch.int64)
    count = len(images) if rows is None else len(rows)
    step = chunk or max(1, (1 << 22) // max(1, images[0].numel()))
    for start in range(0, count, step):
        part = images[start : start + step] if rows is None else images.index_select(0, rows[start : start + step])
        part = part.to(torch.int32)
        total += part.sum((0, 2, 3), dtype=torch.int64).cpu()
        squares += (part * part).sum((0, 2, 3), dtype=torch.int64).cpu()
    values = count * images[0, 0].numel()
    mean = total.double() / values
    std = (squares.double() / values - mean**2).clamp_min(0).sqrt()
    return tuple((mean / 255).tolist()), tuple((std / 255).tolist())
