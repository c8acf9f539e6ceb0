"""The UCI 8x8 handwritten digits bundled with selfsup: a dataset that needs nothing but the package."""

from __future__ import annotations

import gzip
import io
from importlib import resources

import numpy as np
import torch

from ....data.base import Dataset

RESOURCE = "digits.csv.gz"
N_TRAIN = 1437  # of 1797; the remaining 360 are the test split


def load_digits() -> Dataset:
    source = resources.files(__package__).joinpath(RESOURCE)
    # Rows: 64 pixel intensities 0..16, then the label.
    table = np.loadtxt(io.StringIO(gzip.decompress(source.read_bytes()).decode()), delimiter=",", dtype=np.int64)
    images = np.round(table[:, :64] * 255 / 16).astype(np.uint8).reshape(-1, 1, 8, 8)
    images, labels = torch.from_numpy(images), torch.from_numpy(table[:, 64])
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    train, test = order[:N_TRAIN], order[N_TRAIN:]
    return Dataset(
        name="digits",
        train=images[train],
        train_labels=labels[train],
        test=images[test],
        test_labels=labels[test],
        classes=[str(d) for d in range(10)],
        location=str(source),
    )
