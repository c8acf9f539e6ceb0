"""A folder of image files, decoded once and cached as a tensor file.

Layout: ``PATH/train`` plus ``PATH/test`` (or ``PATH/val``) are the splits, else every image under
``PATH`` is train. Within a split, images in class subfolders (``split/CLASS/...``) are labelled by
the sorted class names; loose images are unlabelled.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from ....data.base import Dataset, cache_root
from ....errors import DataError

SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}
GRAY_MODES = {"L", "LA", "1"}
CACHE_VERSION = 1  # part of the cache key: bump when decoding changes


def _pillow():
    try:
        from PIL import Image
    except ImportError:
        raise DataError("reading image folders needs Pillow: pip install 'selfsup[images]'") from None
    return Image


def _split_dirs(root: Path) -> dict[str, Path]:
    test = next((root / name for name in ("test", "val") if (root / name).is_dir()), None)
    if (root / "train").is_dir() and test is not None:
        return {"train": root / "train", "test": test}
    return {"train": root}


def _images(split: Path) -> list[Path]:
    # Hidden files are skipped: they include macOS "._x.png" resource forks, which are not images.
    files = sorted(
        p
        for p in split.rglob("*")
        if p.suffix.lower() in SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(split).parts)
    )
    if not files:
        raise DataError(f"no images ({', '.join(sorted(SUFFIXES))}) under {split}; check the path")
    return files


def _class_names(split: Path, files: list[Path]) -> list[str] | None:
    """Each file's class folder, or None when the split's images are loose."""
    parts = [f.relative_to(split).parts for f in files]
    nested = sum(len(p) > 1 for p in parts)
    if nested == 0:
        return None
    if nested < len(parts):
        raise DataError(
            f"{split} mixes {len(parts) - nested} loose images with class subfolders; "
            "move every image into a class folder, or all out of them for unlabelled data"
        )
    return [p[0] for p in parts]


def _cache_file(root: Path, files: dict[str, list[Path]]) -> Path:
    h = hashlib.sha1(f"{CACHE_VERSION}\0{root}".encode())
    for f in sorted(f for split in files.values() for f in split):
        st = f.stat()
        h.update(f"\0{f.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return cache_root() / "folders" / f"{h.hexdigest()}.pt"


def _decode(root: Path, dirs: dict[str, Path], files: dict[str, list[Path]]) -> dict:
    """Decode every image into uint8 tensors; the result is what the cache file holds."""
    Image = _pillow()
    images, names, bad = {}, {}, []
    for split, paths in files.items():
        classes = _class_names(dirs[split], paths)
        images[split], names[split] = [], None if classes is None else []
        for i, path in enumerate(paths):
            try:
                with Image.open(path) as im:
                    im.load()
                    images[split].append(im.copy())
            except Exception:  # Pillow raises many types for broken files (OSError, SyntaxError, ...)
                bad.append(str(path))
                continue
            if classes is not None:
                names[split].append(classes[i])
        if not images[split]:
            raise DataError(
                f"no readable images under {dirs[split]}: all {len(paths)} failed to decode, "
                f"e.g. {bad[-1]}; fix or replace them"
            )

    everything = [im for split in images.values() for im in split]
    mode = "L" if all(im.mode in GRAY_MODES for im in everything) else "RGB"
    size = Counter(im.size for im in everything).most_common(1)[0][0]
    classes = sorted({c for split in names.values() if split for c in split}) or None
    index = {c: i for i, c in enumerate(classes or ())}
    out = {"classes": classes, "bad": bad, "resized": sum(im.size != size for im in everything)}
    for split in ("train", "test"):
        if split not in images:
            out[split] = out[f"{split}_labels"] = None
            continue
        pixels = np.stack([np.asarray(im.convert(mode).resize(size, Image.BILINEAR)) for im in images[split]])
        out[split] = torch.from_numpy(pixels.reshape(*pixels.shape[:3], -1)).permute(0, 3, 1, 2).contiguous()
        labels = names[split]
        out[f"{split}_labels"] = None if labels is None else torch.tensor([index[c] for c in labels])
    return out


def _save(content: dict, path: Path) -> None:
    """Write atomically, so an interrupted run never leaves a half-written cache behind."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".part")
        with os.fdopen(fd, "wb") as out:
            torch.save(content, out)
        os.replace(tmp, path)
    except OSError as e:
        warnings.warn(
            f"could not write the decoded-images cache {path} ({e}); images will be decoded again next time",
            stacklevel=2,
        )


def load_folder(path: str, skip_bad: bool = False) -> Dataset:
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise DataError(
            f"image folder {root} {'is not a folder' if root.exists() else 'does not exist'}; "
            "give folder:PATH a folder of images"
        )
    dirs = _split_dirs(root)
    files = {split: _images(d) for split, d in dirs.items()}
    cache = _cache_file(root, files)
    try:
        content = torch.load(cache, weights_only=True)
    except Exception:  # absent, or unreadable (e.g. from an interrupted older version): decode again
        content = _decode(root, dirs, files)
        _save(content, cache)

    bad = content["bad"]
    if bad and not skip_bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise DataError(f"cannot decode image {bad[0]}{more}; fix or delete it, or pass --skip-bad to leave it out")
    if bad:
        warnings.warn(f"skipped {len(bad)} unreadable images under {root}", stacklevel=2)
    if content["resized"]:
        h, w = content["train"].shape[2:]
        warnings.warn(
            f"resized {content['resized']} images under {root} to {w}x{h}, the most common size", stacklevel=2
        )
    return Dataset(
        name=f"folder:{root}",
        train=content["train"],
        train_labels=content["train_labels"],
        test=content["test"],
        test_labels=content["test_labels"],
        classes=content["classes"],
        location=str(root),
        skipped=len(bad),
    )
