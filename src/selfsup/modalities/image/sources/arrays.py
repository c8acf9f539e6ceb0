"""Images stored as numpy arrays: ``npy:PATH`` (one array) and ``npz:PATH`` (named splits).

Accepted image arrays: ``(N, H, W)``, ``(N, H, W, C)`` or ``(N, C, H, W)`` with C = 1 or 3; the
channel axis is the one of size 1 or 3 (the last one when both are). uint8 is used as is; other
integers must lie in 0..255; floats with maximum <= 1 are taken as 0..1, else as 0..255.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from ....data.base import Dataset
from ....errors import DataError

SHAPES = "(N, H, W), (N, H, W, C) or (N, C, H, W) with C = 1 or 3"
NPZ_KEYS = (  # (train images, train labels, test images, test labels); the first set whose images exist wins
    ("x_train", "y_train", "x_test", "y_test"),
    ("train_images", "train_labels", "test_images", "test_labels"),
    ("images", "labels", None, None),
)


def _images(array: np.ndarray, where: str) -> torch.Tensor:
    """``array`` as uint8 (N, C, H, W); ``where`` names it in errors."""
    if array.ndim == 3:
        array = array[:, None]
    elif array.ndim == 4 and array.shape[3] in (1, 3):
        array = array.transpose(0, 3, 1, 2)
    elif not (array.ndim == 4 and array.shape[1] in (1, 3)):
        raise DataError(f"{where} has shape {array.shape}; images must be {SHAPES}")
    if array.shape[0] == 0:
        raise DataError(f"{where} holds no images (shape {array.shape})")
    if array.dtype == np.uint8:
        pass
    elif np.issubdtype(array.dtype, np.integer):
        if array.min() < 0 or array.max() > 255:
            raise DataError(f"{where} has integer pixels in {array.min()}..{array.max()}; expected 0..255")
        array = array.astype(np.uint8)
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise DataError(f"{where} contains NaN or infinite pixels; clean them before loading")
        scale = 255.0 if array.max() <= 1.0 else 1.0
        array = np.clip(np.round(array.astype(np.float64) * scale), 0, 255).astype(np.uint8)
    else:
        raise DataError(f"{where} has dtype {array.dtype}; images must be integers or floats")
    return torch.from_numpy(np.ascontiguousarray(array))


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


def _load(path: Path, kind: str):
    if not path.is_file():
        raise DataError(f"{kind} file {path} does not exist; check the path after {kind}:")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"cannot read {path} as a .{kind} file ({e}); is it corrupt or of another format?") from None


def load_npy(path: str) -> Dataset:
    """One image array, all train; a sibling ``<stem>_labels.npy`` gives labels when present."""
    path = Path(path).expanduser().resolve()
    array = _load(path, "npy")
    if not isinstance(array, np.ndarray):
        raise DataError(f"{path} is an .npz archive, not a single array; use npz:{path}")
    images = _images(array, str(path))
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
