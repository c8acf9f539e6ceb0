"""What every data source shares: the :class:`Dataset` record and the cache folder."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch


def cache_root() -> Path:
    """Where selfsup keeps downloads and decoded copies: ``$SELFSUP_CACHE`` or ``~/.cache/selfsup``."""
    return Path(os.environ.get("SELFSUP_CACHE") or Path.home() / ".cache" / "selfsup").expanduser()


@dataclass(repr=False)
class Dataset:
    """Images as uint8 ``(N, C, H, W)`` tensors with optional int64 labels ``0..K-1``.

    Tensors may be shared with an in-process cache: treat them as read-only.
    """

    name: str
    train: torch.Tensor
    train_labels: torch.Tensor | None
    test: torch.Tensor | None
    test_labels: torch.Tensor | None
    classes: list[str] | None
    location: str
    skipped: int = 0  # unreadable files left out (folder sources with skip_bad)

    def __post_init__(self) -> None:
        # Sources build these from user files they have already checked; this catches our own bugs.
        for images, labels in ((self.train, self.train_labels), (self.test, self.test_labels)):
            if images is None:
                continue
            if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1:] != self.train.shape[1:]:
                raise ValueError(f"{self.name}: images must be uint8 (N, C, H, W) with one shape, "
                                 f"got {images.dtype} {tuple(images.shape)}")
            if labels is not None and (labels.dtype != torch.int64 or labels.shape != images.shape[:1]):
                raise ValueError(f"{self.name}: labels must be int64 (N,), got {labels.dtype} {tuple(labels.shape)}")

    @property
    def channels(self) -> int:
        return self.train.shape[1]

    @property
    def height(self) -> int:
        return self.train.shape[2]

    @property
    def width(self) -> int:
        return self.train.shape[3]

    @property
    def num_classes(self) -> int | None:
        if self.train_labels is None:
            return None
        if self.classes is not None:
            return len(self.classes)
        return int(self.train_labels.max()) + 1

    def __repr__(self) -> str:
        test = "no test split" if self.test is None else f"test {len(self.test)}"
        labels = "unlabeled" if self.train_labels is None else f"{self.num_classes} classes"
        return (f"Dataset({self.name!r}: train {len(self.train)}, {test}, "
                f"{self.channels}x{self.height}x{self.width}, {labels})")
