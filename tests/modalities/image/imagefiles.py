"""Real image files for the prepare and folder tests, written with Pillow (imported by the tests and conftest.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

Image = pytest.importorskip("PIL.Image")

# (width, height): landscape and portrait JPEGs large enough for draft decoding at S=48, a square
# PNG, and one image smaller than the slot (enlarged to fill it).
SIZES = [(200, 150), (150, 200), (120, 120), (40, 28)]


def picture(width: int, height: int, seed: int, grey: bool = False) -> np.ndarray:
    """A smooth random field with some texture: neither flat nor noise, like a photo for a codec."""
    rng = np.random.default_rng(seed)
    channels = 1 if grey else 3
    coarse = rng.integers(0, 256, (6, 8, channels), dtype=np.uint8)
    layers = [
        np.asarray(Image.fromarray(coarse[..., c]).resize((width, height), Image.Resampling.BICUBIC))
        for c in range(channels)
    ]
    field = np.stack(layers, -1).astype(np.int16) + rng.integers(-12, 13, (height, width, channels))
    field = field.clip(0, 255).astype(np.uint8)
    return field[..., 0] if grey else field


def write_image(path: Path, width: int, height: int, seed: int, grey: bool = False, **save) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(picture(width, height, seed, grey)).save(path, **save)
    return path


def make_folder(root: Path, per_class: int = 6, classes=("cat", "dog"), test_name: str = "val") -> Path:
    """``root/train/<class>/`` and ``root/<test_name>/<class>/``, JPEG and PNG files of SIZES in turn."""
    seed = 0
    for split, count in (("train", per_class), (test_name, max(1, per_class // 3))):
        for c in classes:
            for i in range(count):
                width, height = SIZES[i % len(SIZES)]
                suffix = ".png" if i % 4 == 2 else ".jpg"
                write_image(root / split / c / f"img{i:03d}{suffix}", width, height, seed)
                seed += 1
    return root


def store_bytes(path: Path) -> dict[str, bytes]:
    """Every file of a store folder, by name."""
    return {f.name: f.read_bytes() for f in sorted(path.iterdir())}
