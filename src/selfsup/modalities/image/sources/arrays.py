"""Images stored as numpy arrays: ``npy:PATH`` (one array) and ``npz:PATH`` (named splits).

Accepted image arrays: ``(N, H, W)``, ``(N, H, W, C)`` or ``(N, C, H, W)`` with C = 1 or 3; the
channel axis is the one of size 1 or 3 (the last one when both are). uint8 is used as is; other
integers must lie in 0..255; floats with maximum <= 1 are taken as 0..1, else as 0..255.

A uint8 ``.npy`` file is memory-mapped, not read: the Dataset's tensor is a view of the file (a
``(N, H, W, C)`` array becomes a strided ``(N, C, H, W)`` view of it), so an array larger than
memory trains like a prepared store (:mod:`selfsup.data.loader`). Other dtypes are converted to
uint8 in chunks, into memory (a quarter of a float32 array). ``.npz`` members are compressed or
zipped and are read into memory.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from ....data.base import Dataset
from ....data.store import map_file
from ....errors import DataError

SHAPES = "(N, H, W), (N, H, W, C) or (N, C, H, W) with C = 1 or 3"
NPZ_KEYS = (  # (train images, train labels, test images, test labels); the first set whose images exist wins
    ("x_train", "y_train", "x_test", "y_test"),
    ("train_images", "train_labels", "test_images", "test_labels"),
    ("images", "labels", None, None),
)
CHUNK_VALUES = 1 << 24  # values converted at a time


def _channels_first(x: torch.Tensor) -> torch.Tensor:
    """A view of (N, H, W), (N, H, W, C) or (N, C, H, W) images as (N, C, H, W)."""
    if x.ndim == 3:
        return x.unsqueeze(1)
    if x.shape[3] in (1, 3):
        return x.permute(0, 3, 1, 2)
    return x


def _check_shape(array: np.ndarray, where: str) -> None:
    ok = array.ndim == 3 or (array.ndim == 4 and (array.shape[3] in (1, 3) or array.shape[1] in (1, 3)))
    if not ok:
        raise DataError(f"{where} has shape {array.shape}; images must be {SHAPES}")
    if array.shape[0] == 0:
        raise DataError(f"{where} holds no images (shape {array.shape})")


def _chunks(array: np.ndarray):
    rows = max(1, CHUNK_VALUES // max(1, int(np.prod(array.shape[1:]))))
    for start in range(0, len(array), rows):
        yield start, np.asarray(array[start : start + rows])


def _images(array: np.ndarray, where: str, path: Path | None = None) -> torch.Tensor:
    """``array`` as uint8 (N, C, H, W); ``where`` names it in errors. A uint8 memory map of the file
    ``path`` becomes a view of the file; other arrays are converted chunk by chunk."""
    _check_shape(array, where)
    if array.dtype == np.uint8 and isinstance(array, np.memmap) and path is not None:
        strides = tuple(s // array.itemsize for s in array.strides)
        return _channels_first(map_file(path, array.dtype, array.shape, offset=array.offset, strides=strides))
    if array.dtype == np.uint8:
        return _channels_first(torch.from_numpy(np.asarray(array))).contiguous()
    convert = _converter(array, where)
    first = _channels_first(torch.from_numpy(convert(np.asarray(array[:1]))))
    out = torch.empty((len(array), *first.shape[1:]), dtype=torch.uint8)
    for start, chunk in _chunks(array):
        out[start : start + len(chunk)] = _channels_first(torch.from_numpy(convert(chunk)))
    return out


def _converter(array: np.ndarray, where: str):
    """The conversion of chunks of ``array`` (not uint8) to uint8, after checking all its values."""
    if np.issubdtype(array.dtype, np.integer):
        low, high = min(c.min() for _, c in _chunks(array)), max(c.max() for _, c in _chunks(array))
        if low < 0 or high > 255:
            raise DataError(f"{where} has integer pixels in {low}..{high}; expected 0..255")
        return lambda chunk: chunk.astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        if not all(np.isfinite(c).all() for _, c in _chunks(array)):
            raise DataError(f"{where} contains NaN or infinite pixels; clean them before loading")
        scale = 255.0 if max(c.max() for _, c in _chunks(array)) <= 1.0 else 1.0
        return lambda chunk: np.clip(np.round(chunk.astype(np.float64) * scale), 0, 255).astype(np.uint8)
    raise DataError(f"{where} has dtype {array.dtype}; images must be integers or floats")


def _check_labels(labels: np.ndarray | None, images: torch.Tensor, where: str) -> None:
    if labels is None:
        return
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{where} must be a 1-D integer array, got {labels.dtype} {labels.shape}")
    if len(labels) != len(images):
        raise DataError(f"{where} has {len(labels)} labels for {len(images)} images; they must match")


def _encode(*labels: np.ndarray | None) -> tuple[list[torch.Tensor | None], list[str] | None]:
    """Labels remapped to 0..K-1 over all splits; the original values become the class names."""
    present = [y for y in labels if y is not None]
    if not present:
        return [None] * len(labels), None
    values = np.unique(np.concatenate(present))
    return (
        [None if y is None else torch.from_numpy(np.searchsorted(values, y).astype(np.int64)) for y in labels],
        [str(v) for v in values],
    )


def _load(path: Path, kind: str, mmap: bool = False):
    if not path.is_file():
        raise DataError(f"{kind} file {path} does not exist; check the path after {kind}:")
    try:
        return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"cannot read {path} as a .{kind} file ({e}); is it corrupt or of another format?") from None


def load_npy(path: str) -> Dataset:
    """One image array, all train; a sibling ``<stem>_labels.npy`` gives labels when present."""
    path = Path(path).expanduser().resolve()
    array = _load(path, "npy", mmap=True)
    if not isinstance(array, np.ndarray):
        raise DataError(f"{path} is an .npz archive, not a single array; use npz:{path}")
    images = _images(array, str(path), path)
    del array  # the numpy map: the tensor holds its own
    labels_path = path.with_name(f"{path.stem}_labels.npy")
    labels = _load(labels_path, "npy") if labels_path.is_file() else None
    if labels is not None and not isinstance(labels, np.ndarray):
        raise DataError(f"{labels_path} is an .npz archive; labels must be a single integer array")
    _check_labels(labels, images, str(labels_path))
    (train_labels,), classes = _encode(labels)
    return Dataset(
        name=f"npy:{path}",
        train=images,
        train_labels=train_labels,
        test=None,
        test_labels=None,
        classes=classes,
        location=str(path),
    )


def load_npz(path: str) -> Dataset:
    path = Path(path).expanduser().resolve()
    archive = _load(path, "npz")
    if isinstance(archive, np.ndarray):
        raise DataError(f"{path} holds a single array, not an .npz archive; use npy:{path}")
    with archive:
        keys = next((k for k in NPZ_KEYS if k[0] in archive.files), None)
        if keys is None:
            raise DataError(
                f"{path} has arrays {archive.files}; expected x_train (+ y_train, x_test, y_test), "
                "train_images (+ train_labels, test_images, test_labels) or images (+ labels)"
            )
        try:  # members are decompressed lazily, so a corrupt archive can fail only here
            x_train, y_train, x_test, y_test = (archive[k] if k in archive.files else None for k in keys)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise DataError(f"cannot read {path} ({e}); is it corrupt?") from None
    train = _images(x_train, f"{path}[{keys[0]}]")
    test = None if x_test is None else _images(x_test, f"{path}[{keys[2]}]")
    if test is not None and test.shape[1:] != train.shape[1:]:
        raise DataError(f"{path}: test images are {tuple(test.shape[1:])} but train images {tuple(train.shape[1:])}")
    if y_test is not None and test is None:
        raise DataError(f"{path} has {keys[3]} but no {keys[2]}; store the test images too, or drop the labels")
    _check_labels(y_train, train, f"{path}[{keys[1]}]")
    _check_labels(y_test, test, f"{path}[{keys[3]}]")
    (train_labels, test_labels), classes = _encode(y_train, y_test)
    return Dataset(
        name=f"npz:{path}",
        train=train,
        train_labels=train_labels,
        test=test,
        test_labels=test_labels,
        classes=classes,
        location=str(path),
    )
