"""The image sources: bundled digits, Fashion-MNIST, folders of image files, numpy arrays.

Each returns a :class:`~selfsup.data.base.Dataset` of uint8 ``(N, C, H, W)`` images, C = 1 or 3.
"""

from __future__ import annotations

from pathlib import Path

from ....errors import DataError
from ...base import Source
from . import fashion
from .arrays import load_npy, load_npz
from .digits import RESOURCE, load_digits
from .folder import load_folder


def _path(spec: str) -> str:
    kind, _, path = spec.partition(":")
    if not path:
        raise DataError(f"dataset {spec!r} lacks a path; write {kind}:PATH")
    return path


def _pillow_note() -> str:
    try:
        import PIL  # noqa: F401  (only whether it is installed matters)
    except ImportError:
        return "; needs Pillow: pip install 'selfsup[images]'"
    return ""


def _describe_digits(data_dir):
    return [
        {
            "name": "digits",
            "available": True,
            "location": str(Path(__file__).with_name(RESOURCE)),
            "note": "bundled UCI 8x8 digits; 1437 train / 360 test, 10 classes",
        }
    ]


def _describe_folder(data_dir):
    note = _pillow_note()
    return [
        {
            "name": "folder:PATH",
            "available": not note,
            "location": "",
            "note": "image files, prepared once into a memory-mapped store (`selfsup data prepare`); "
            "PATH/train + PATH/test (or val) splits, class subfolders give labels" + note,
        }
    ]


def _fixed(name: str, note: str):
    return lambda data_dir: [{"name": name, "available": True, "location": "", "note": note}]


SOURCES = (
    Source("digits", lambda spec, options: load_digits(), _describe_digits, "digits"),
    Source(
        "fashion-mnist",
        lambda spec, options: fashion.load_fashion_mnist(options.get("data_dir"), options.get("download", True)),
        lambda data_dir: [fashion.describe(data_dir)],
        "fashion-mnist",
    ),
    Source(
        "fashion_mnist",
        lambda spec, options: fashion.load_fashion_mnist(options.get("data_dir"), options.get("download", True)),
        lambda data_dir: [],
        "fashion-mnist",
    ),
    Source("folder:", lambda spec, options: load_folder(_path(spec), options), _describe_folder, "folder:PATH"),
    Source(
        "npy:",
        lambda spec, options: load_npy(_path(spec)),
        _fixed("npy:PATH", "one image array (N,H,W), (N,H,W,C) or (N,C,H,W); labels from a sibling <stem>_labels.npy"),
        "npy:PATH",
    ),
    Source(
        "npz:",
        lambda spec, options: load_npz(_path(spec)),
        _fixed("npz:PATH", "arrays x_train/y_train/x_test/y_test, train_images/... or images/labels"),
        "npz:PATH",
    ),
)
