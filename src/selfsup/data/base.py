"""What every data source returns: the :class:`Dataset` record, and the cache folder."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch


def cache_root() -> Path:
    """Where selfsup keeps downloads and decoded copies: ``$SELFSUP_CACHE`` or ``~/.cache/selfsup``."""
    return Path(os.environ.get("SELFSUP_CACHE") or Path.home() / ".cache" / "selfsup").expanduser()


@dataclass(repr=False)
class Dataset:
    """Samples of any dtype and shape, one per row of ``train`` (and ``test``, ``val``), with
    optional labels: int64 ``0..K-1`` for classes, or float targets for regression.

    ``modality`` names the :mod:`selfsup.modalities` entry that knows what a sample is (uint8
    ``(N, C, H, W)`` images, float ``(N, F)`` table rows, ``(N, C, T)`` series); ``meta`` holds its
    JSON-ready description of the data (columns, lengths, ...). Tensors may be shared with an
    in-process cache or memory-mapped from a file: treat them as read-only.
    """

    name: str
    train: torch.Tensor
    train_labels: torch.Tensor | None
    test: torch.Tensor | None
    test_labels: torch.Tensor | None
    classes: list[str] | None
    location: str
    skipped: int = 0  # unreadable files left out (folder sources with skip_bad)
    modality: str = "image"
    meta: dict = field(default_factory=dict)
    val: torch.Tensor | None = None
    val_labels: torch.Tensor | None = None

    def __post_init__(self) -> None:
        # Sources build these from user files they have already checked; this catches our own bugs.
        for split, samples, labels in self.splits(labelled=False):
            if samples.shape[1:] != self.train.shape[1:] or samples.dtype != self.train.dtype:
                raise ValueError(
                    f"{self.name}: the {split} split is {samples.dtype} {tuple(samples.shape[1:])}, "
                    f"train is {self.train.dtype} {tuple(self.train.shape[1:])}"
                )
            if labels is not None and (labels.ndim != 1 or len(labels) != len(samples)):
                raise ValueError(f"{self.name}: {split} labels must be (N,), got {tuple(labels.shape)}")
            if labels is not None and labels.dtype not in (torch.int64, torch.float32, torch.float64):
                raise ValueError(f"{self.name}: {split} labels must be int64 classes or float targets")

    def splits(self, labelled: bool = True):
        """``(name, samples, labels)`` of each split present (with labels only, if ``labelled``)."""
        for name in ("train", "val", "test"):
            samples, labels = getattr(self, name), getattr(self, f"{name}_labels")
            if samples is not None and (labels is not None or not labelled):
                yield name, samples, labels

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.train.shape[1:])

    @property
    def task(self) -> str | None:
        """``"classification"``, ``"regression"`` (float labels), or None without labels."""
        if self.train_labels is None:
            return None
        return "regression" if self.train_labels.is_floating_point() else "classification"

    @property
    def num_classes(self) -> int | None:
        if self.task != "classification":
            return None
        if self.classes is not None:
            return len(self.classes)
        return int(self.train_labels.max()) + 1

    def __repr__(self) -> str:
        test = "no test split" if self.test is None else f"test {len(self.test)}"
        labels = {None: "unlabeled", "regression": "regression targets"}.get(self.task, f"{self.num_classes} classes")
        shape = "x".join(str(s) for s in self.sample_shape)
        return f"Dataset({self.name!r}: {self.modality}, train {len(self.train)}, {test}, {shape}, {labels})"


def training_subset(data: Dataset, n: int) -> Dataset:
    """The same dataset with a fixed random ``n`` of its training samples (the other splits kept)."""
    if n >= len(data.train):
        return data
    keep = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(0))[:n].sort().values
    labels = data.train_labels[keep] if data.train_labels is not None else None
    return dataclasses.replace(data, name=f"{data.name}[{n}]", train=data.train[keep], train_labels=labels)
