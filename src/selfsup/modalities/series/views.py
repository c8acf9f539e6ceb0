"""The series view maker: each view's settings (:class:`SeriesViewConfig`) made concrete on a batch, on
the device, with every random parameter drawn per sample from the generator passed in (:mod:`.ops`).

A view applies, in this order and each only when switched on: TS2Vec's random window of
``max_length`` steps, TS2Vec's centring of shorter series, window slicing (``crop_scale``), segment
permutation, time warping, magnitude warping, scaling, TS-TCC's scaling, jitter. The padding after a
shorter series' end is never read (every op keeps it NaN or leaves it untouched).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..base import Views
from . import ops


@dataclass
class SeriesViewConfig:
    """One view's settings (the config's ``augment.views`` entries for series). Sigmas are in the units
    of the normalised series; 0 switches an op off."""

    max_length: int = 0  # TS2Vec's max_train_length: one random window of this many steps per batch (0: off)
    centerize: bool = False  # TS2Vec: split a shorter series' padding evenly between its ends
    crop_scale: tuple[float, float] = (1.0, 1.0)  # window slicing: kept fraction of each series, stretched back
    permute_segments: int = 0  # TS-TCC's max_seg: cut into 1..max_seg-1 pieces and shuffle them (< 2: off)
    time_warp: float = 0.0  # sigma of the smooth random time map (Um et al. 2017)
    magnitude_warp: float = 0.0  # sigma of the smooth random gain curve (Um et al. 2017)
    scale: float = 0.0  # sigma of one factor N(1, sigma) per sample and channel (Um et al. 2017)
    tstcc_scale: float = 0.0  # TS-TCC's scaling: a factor N(2, sigma) per sample and time step
    jitter: float = 0.0  # sigma of additive Gaussian noise


class SeriesViews(Views):
    """The views of one method's plan (one :class:`SeriesViewConfig` each) and the evaluation transform."""

    def __init__(self, view_configs: list[SeriesViewConfig], spec: dict):
        self.view_configs = list(view_configs)
        self.spec = spec

    def __call__(
        self, batch: torch.Tensor, generator: torch.Generator, shard: tuple[int, int] = (0, 1)
    ) -> list[torch.Tensor]:
        """The views of ``batch``. With ``shard=(rank, world_size)`` the parameters of the whole global
        batch are drawn (each op's draws depend on shapes only) and this rank's rows kept."""
        rank, world = shard
        x = batch.float()
        if world > 1:  # rows at the global positions rank, rank + world, ... of a stand-in global batch
            x = x.repeat_interleave(world, dim=0)
        views = [view(x, generator, c) for c in self.view_configs]
        return [v[rank::world] for v in views] if world > 1 else views

    def eval_transform(self, batch: torch.Tensor) -> torch.Tensor:
        return eval_transform(self.spec)(batch)


def view(x: torch.Tensor, generator: torch.Generator, c: SeriesViewConfig) -> torch.Tensor:
    """One view of ``x`` ``(B, C, T)`` with settings ``c``."""
    if c.max_length:
        x = ops.random_window(x, generator, c.max_length)
    if c.centerize:
        x = ops.centerize(x)
    lengths = ops.series_lengths(x)
    if tuple(c.crop_scale) != (1.0, 1.0):
        x = ops.window_slice(x, generator, tuple(c.crop_scale), lengths)
    if c.permute_segments >= 2:
        x = ops.segment_permutation(x, generator, c.permute_segments, lengths)
    if c.time_warp:
        x = ops.time_warp(x, generator, c.time_warp, lengths=lengths)
    if c.magnitude_warp:
        x = ops.magnitude_warp(x, generator, c.magnitude_warp, lengths=lengths)
    if c.scale:
        x = ops.scale(x, generator, c.scale)
    if c.tstcc_scale:
        x = ops.tstcc_scaling(x, generator, c.tstcc_scale)
    if c.jitter:
        x = ops.jitter(x, generator, c.jitter)
    return x


def eval_transform(spec: dict):
    """Deterministic: float32, and series shorter than the training length padded with NaN to it (what
    fixed-length encoders such as ``tstcc-cnn`` with ``pool=flatten`` need; the others ignore it)."""
    length = spec.get("length") or 0

    def transform(batch: torch.Tensor) -> torch.Tensor:
        x = batch.float()
        if x.shape[-1] < length:
            x = torch.nn.functional.pad(x, (0, length - x.shape[-1]), value=float("nan"))
        return x

    return transform
