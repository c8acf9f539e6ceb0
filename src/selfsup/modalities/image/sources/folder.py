"""``folder:PATH``: a folder of image files, prepared once into a memory-mapped store and read from it.

The layout, the decoding, the storage size and when a store is rebuilt are :mod:`..prepare`'s. The
Dataset's ``train`` and ``test`` are the stores' memory-mapped uint8 tensors (nothing is decoded or
read into memory here), and each split's ``source_size`` (every image's size in its file) travels
in ``Dataset.extras``, so that the crop draws its boxes as on the original photos.

The source's options (``data.options``, or ``selfsup data prepare``'s flags):

* ``size``: the storage size S. Without it, S is ``default_storage_size`` of a trained encoder's
  view size (``selfsup eval`` and ``embed`` with another folder), else of the default view size.
  A training run records the S it used in its config (the image modality fills it in from the
  view size), so evaluating, reporting and resuming it find the same store;
* ``workers``: decoding processes (default: every usable CPU);
* ``store``: the folder the stores are written to (default under ``cache_root()/stores``).
"""

from __future__ import annotations

import sys

from ....data.base import Dataset
from ....errors import UsageError
from ..prepare import default_storage_size, prepare_folder

OPTIONS = ("size", "workers", "store")
DEFAULT_VIEW_SIZE = 32  # augment.size's default (the config imports the modalities, so it is not read from there)
# What load_dataset adds to every source's options, and the settings of other kinds of data.
GIVEN = ("data_dir", "skip_bad", "download", "input_spec", "target", "progress")


def storage_size(options: dict) -> int:
    """S from the ``size`` option, else from an encoder's view size, else from the default view size."""
    size = options.get("size")
    if size is None:
        spec = options.get("input_spec") or {}
        return default_storage_size(int(spec.get("size") or DEFAULT_VIEW_SIZE))
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise UsageError(f"data.options.size (the storage size) must be a positive number of pixels, got {size!r}")
    return size


def load_folder(path: str, options: dict) -> Dataset:
    unknown = sorted(set(options) - set(OPTIONS) - set(GIVEN))
    if unknown:
        raise UsageError(f"folder data has no option {unknown[0]!r}; its options (data.options): {', '.join(OPTIONS)}")
    size = storage_size(options)
    progress = options.get("progress")
    stores = prepare_folder(
        path,
        size,
        workers=options.get("workers"),
        skip_bad=bool(options.get("skip_bad")),
        out=options.get("store"),
        progress=sys.stderr.isatty() if progress is None else progress,
    )
    train, test = stores["train"], stores.get("test")
    root = train.header["meta"]["source"]
    return Dataset(
        name=f"folder:{root}",
        train=train.samples,
        train_labels=train.labels,
        test=None if test is None else test.samples,
        test_labels=None if test is None else test.labels,
        classes=train.classes,
        location=root,
        skipped=sum(len(s.skipped) for s in stores.values()),
        # each split's files (relative to the folder), read from the store when asked for: neighbours,
        # duplicates and selections name files, not row numbers
        meta={"store": str(train.path.parent), "storage_size": size, "files": {k: v.names for k, v in stores.items()}},
        extras={split: {"source_size": s.extras["source_size"]} for split, s in stores.items()},
    )
