"""Fashion-MNIST: found on disk (``--data-dir``, ``$SELFSUP_DATA``, the Debian package, the cache) or downloaded.

Files are verified by the SHA-256 of their decompressed contents, which is the same for the official
gzip files and for the Debian package's recompressed ones.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

import torch

from ....data.base import Dataset, cache_root
from ....errors import DataError
from .idx import IMAGES_MAGIC, LABELS_MAGIC, parse_idx, read_payload

NAME = "fashion-mnist"
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
SHA256 = {  # of the decompressed IDX payloads
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
FILES = [stem + ".gz" for stem in SHA256]
MIRRORS = (
    "https://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
)
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian package dataset-fashion-mnist
TIMEOUT_S = 30

_loaded: dict[Path, Dataset] = {}  # by resolved folder, so a second load in one process is free


def download_dir() -> Path:
    return cache_root() / NAME


def search_dirs() -> list[Path]:
    """Folders searched when no ``data_dir`` is given, first match wins."""
    dirs = [SYSTEM_DIR, download_dir()]
    if os.environ.get("SELFSUP_DATA"):
        dirs.insert(0, Path(os.environ["SELFSUP_DATA"]).expanduser() / NAME)
    return dirs


def _complete(folder: Path) -> bool:
    return all((folder / f).is_file() for f in FILES)


def given_dir(data_dir: str | Path) -> Path:
    """The folder holding the files: ``data_dir`` itself or its ``fashion-mnist`` subfolder."""
    root = Path(data_dir).expanduser()
    for folder in (root, root / NAME):
        if _complete(folder):
            return folder
    missing = [f for f in FILES if not (root / f).is_file()]
    raise DataError(
        f"data dir {root} lacks the Fashion-MNIST file(s) {', '.join(missing)}; "
        f"put all four ({', '.join(FILES)}) there or in {root / NAME}"
    )


def find(data_dir: str | Path | None = None) -> Path | None:
    """The folder to load from, or None when no copy is on disk (an explicit ``data_dir`` must hold one)."""
    if data_dir is not None:
        return given_dir(data_dir)
    return next((d for d in search_dirs() if _complete(d)), None)


def _fetch(name: str, folder: Path) -> None:
    """Download one file into ``folder``, verified before it takes its final name."""
    folder.mkdir(parents=True, exist_ok=True)
    errors = []
    for mirror in MIRRORS:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=name, suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(mirror + name, timeout=TIMEOUT_S) as response:
                shutil.copyfileobj(response, out)
            _verify(read_payload(tmp), name, tmp)
            os.replace(tmp, folder / name)
            return
        except (OSError, DataError) as e:
            errors.append(f"{mirror + name}: {e}")
        finally:
            Path(tmp).unlink(missing_ok=True)
    raise DataError("; ".join(errors))


def _verify(payload: bytes, name: str, path: str | Path) -> None:
    if hashlib.sha256(payload).hexdigest() != SHA256[name.removesuffix(".gz")]:
        raise DataError(
            f"{path} differs from the official Fashion-MNIST {name} (SHA-256 of its contents); "
            "delete it and get a fresh copy"
        )


def _no_copy(reason: str) -> DataError:
    return DataError(
        f"Fashion-MNIST not found ({reason}; looked in {', '.join(map(str, search_dirs()))}); provide it one of "
        f"three ways: pass --data-dir FOLDER holding {', '.join(FILES)}, or set SELFSUP_DATA so that "
        f"$SELFSUP_DATA/{NAME} holds them, or `apt-get install dataset-fashion-mnist` "
        f"(or allow the download to {download_dir()})"
    )


def _read(folder: Path, name: str, magic: int) -> torch.Tensor:
    path = folder / name
    payload = read_payload(path)
    array = parse_idx(payload, path, magic)  # parse first: its errors say more than a hash mismatch
    _verify(payload, name, path)
    return torch.from_numpy(array)


def load_fashion_mnist(data_dir: str | Path | None = None, download: bool = True) -> Dataset:
    folder = find(data_dir)
    if folder is None:
        if not download:
            raise _no_copy("download disabled")
        folder = download_dir()
        try:
            for name in FILES:
                if not (folder / name).is_file():
                    _fetch(name, folder)
        except DataError as e:
            raise _no_copy(f"download failed: {e}") from None
    key = folder.resolve()
    if key not in _loaded:
        train, test = (_read(folder, f"{split}-images-idx3-ubyte.gz", IMAGES_MAGIC) for split in ("train", "t10k"))
        train_y, test_y = (_read(folder, f"{split}-labels-idx1-ubyte.gz", LABELS_MAGIC) for split in ("train", "t10k"))
        _loaded[key] = Dataset(
            name=NAME,
            train=train.unsqueeze(1),
            train_labels=train_y.long(),
            test=test.unsqueeze(1),
            test_labels=test_y.long(),
            classes=list(CLASSES),
            location=str(folder),
        )
    return _loaded[key]


def describe(data_dir: str | Path | None = None) -> dict:
    """Availability of Fashion-MNIST from file names alone (nothing is read or downloaded)."""
    try:
        folder = find(data_dir)
    except DataError as e:
        return {"name": NAME, "available": False, "location": str(data_dir), "note": str(e)}
    if folder is None:
        return {
            "name": NAME,
            "available": False,
            "location": str(download_dir()),
            "note": "not on disk; downloaded here on first use (~30 MB), or `apt-get install dataset-fashion-mnist`",
        }
    origin = "Debian package dataset-fashion-mnist" if folder == SYSTEM_DIR else "found on disk"
    return {"name": NAME, "available": True, "location": str(folder), "note": f"{origin}; 60000 train / 10000 test"}
