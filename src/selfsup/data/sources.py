"""Which datasets selfsup can read, picked by a spec string such as ``digits`` or ``folder:PATH``."""
from __future__ import annotations

from pathlib import Path

from ..errors import DataError, unknown
from . import fashion
from .arrays import load_npy, load_npz
from .base import Dataset
from .digits import RESOURCE, load_digits
from .folder import load_folder

SOURCE_KINDS = ("digits", "fashion-mnist", "folder:PATH", "npy:PATH", "npz:PATH")


def load_dataset(spec: str, data_dir: str | None = None, skip_bad: bool = False, download: bool = True) -> Dataset:
    """Load the dataset ``spec`` names; ``data_dir`` and ``download`` concern fashion-mnist only,
    ``skip_bad`` folder sources only."""
    if spec == "digits":
        return load_digits()
    if spec in ("fashion-mnist", "fashion_mnist"):
        return fashion.load_fashion_mnist(data_dir, download)
    kind, colon, path = spec.partition(":")
    if not colon or kind not in ("folder", "npy", "npz"):
        raise unknown("dataset", spec, SOURCE_KINDS)
    if not path:
        raise DataError(f"dataset {spec!r} lacks a path; write {kind}:PATH")
    if kind == "folder":
        return load_folder(path, skip_bad)
    return load_npy(path) if kind == "npy" else load_npz(path)


def describe_sources(data_dir: str | None = None) -> list[dict]:
    """One entry per source kind for ``selfsup data``; looks for files only, reads and downloads nothing."""
    try:
        import PIL  # noqa: F401  (only whether it is installed matters)
        pillow = True
    except ImportError:
        pillow = False
    return [
        {"name": "digits", "available": True, "location": str(Path(__file__).with_name(RESOURCE)),
         "note": "bundled UCI 8x8 digits; 1437 train / 360 test, 10 classes"},
        fashion.describe(data_dir),
        {"name": "folder:PATH", "available": pillow, "location": "",
         "note": "image files; PATH/train + PATH/test (or val) splits, class subfolders give labels"
                 + ("" if pillow else "; needs Pillow: pip install 'selfsup[images]'")},
        {"name": "npy:PATH", "available": True, "location": "",
         "note": "one image array (N,H,W), (N,H,W,C) or (N,C,H,W); labels from a sibling <stem>_labels.npy"},
        {"name": "npz:PATH", "available": True, "location": "",
         "note": "arrays x_train/y_train/x_test/y_test, train_images/... or images/labels"},
    ]
