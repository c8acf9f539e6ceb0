"""Prepare a folder of images once: decode each file in parallel worker processes into a memory-mapped store.

Layout (:func:`scan_folder`): ``PATH/train`` plus ``PATH/test`` (or ``PATH/val``) are the splits,
else every image under ``PATH`` is train; within a split, images in class subfolders
(``split/CLASS/...``) are labelled by the sorted class names, loose images are unlabelled; hidden
files are skipped. Each split becomes one store (:mod:`selfsup.data.store`) under
``cache_root()/stores/<folder name>-<hash of its absolute path>-<S>px`` (or ``out``), with the
labels, each sample's file (relative to the folder) and the per-sample extra ``source_size``: the
image's upright (H, W) in its file.

Aspect ratio: every image is resized to fill the S x S slot, whatever its shape (a 4:3 photo is
squeezed horizontally), and its original size is kept in ``source_size``. The random resized crop
(:func:`selfsup.modalities.image.ops.resized_crop_flip`) draws each box on the original's pixel
grid from ``source_size`` - area fraction of H * W, log aspect ratio, the fits test, the offsets
and the fallback box exactly as torchvision's RandomResizedCrop on the file - and scales it to the
slot, so a view is the same part of the photo, resampled to the view size, as torchvision would
give: the crop's scale and ratio statistics stay the photo's. The evaluation transform, which
resizes a whole image to a square, is then the same resize as from the file, and so are the
raw-pixel baseline and the input statistics: nothing downstream needs to know the photo's shape,
and no padding exists to leak into a view. Against fitting the photo inside the slot with its
aspect kept, the slot's pixels all hold the photo (a 4:3 photo keeps 4/3 as many rows), for the same
bytes. Cropping the photo to a square instead would throw away its edges and measure the crop's
area against the square, not the photo.

Storage size: ``default_storage_size(v)`` is 1.5 x the view size, rounded up to a multiple of 8
(32 -> 48, 64 -> 96, 224 -> 336). Views are crops resized to v; a crop whose side in the store is
at least v is resampled down, as from the original, which at 1.5x holds for crops of more than
about 44% of a square photo's area or 59% of a 4:3 one (the large crops, and the whole-image
evaluation view; a 4:3 photo's short side, squeezed less, has more pixels than its long side and
than a copy fitted inside the square with its aspect kept would have); the smallest crops (8% of
the area) are enlarged up to about 2.7x where the original would have had the pixels.
Twice the view size would enlarge fewer crops, for 1.8x the bytes; the store's bytes decide
whether training reads come from the page cache or the disk. Images smaller than S are enlarged
(bicubic); a folder of small images is best prepared at its own size (``--size``).

Decoding: JPEGs decode at a reduced scale with Pillow's ``draft`` (1/2, 1/4 or 1/8, the largest
that keeps both sides at least S), then a bicubic resize of that decoded box to S x S; other
formats decode in full. EXIF orientation is applied (photos from phones stand upright). The store
is 3-channel RGB when any file is in colour (grey files replicated), else 1-channel grey: decided
before decoding from the file headers, read in order up to the first colour one (the first file,
in a folder of photos), with palette images counted as colour; RGBA drops alpha, CMYK converts,
16-bit grey scales to 8 bits.

Unreadable files: a file Pillow cannot open or decode is a one-line DataError naming it, or with
``skip_bad`` is left out, its name recorded in the header (``skipped``). The store is the same
either way: a store prepared under the error can be used later with ``skip_bad``.

Resuming and invalidation: the store is written in chunks (about 32 MiB of samples; a kill loses
at most one), each made durable before the progress record moves on, so an interrupted prepare
(Ctrl-C, SIGKILL, a crash) continues at its last chunk and the finished store is byte-identical
to an uninterrupted one. Its fingerprint covers every image file's split, path relative to the
folder, size and mtime (nanoseconds), plus S and ``PREP_VERSION``: adding, removing, renaming
or rewriting a file invalidates the store, which is then written again from the start (as make
and git assume, a file rewritten with the same size and mtime is taken as unchanged; contents
are not hashed, which would read every file).

Workers and memory: ``workers`` processes (default: the CPUs this process may use; 0 decodes in
this process) receive batches of 8 paths, at most 4 batches per worker in flight, and return the
resized pixels in input order; the main process fills one chunk buffer and appends it. Memory is
bounded by the chunk, the batches in flight and one decoded image per worker, never by the
number of images. Workers are forked on Linux (they start instantly and need no imports; they
run only Pillow and numpy, which take no lock another thread could hold at the fork) and
spawned elsewhere; they ignore Ctrl-C, which the main process handles, and exit when it dies.

Earlier versions decoded a folder in full into ``cache_root()/folders/<key>.pt``; nothing reads
those files any more (a prepare says so once, with their size, when it finds them).
"""

from __future__ import annotations

import gc
import hashlib
import os
import re
import signal
import sys
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ...data.base import cache_root
from ...data.store import Spec, Store, StoreWriter, is_complete, open_store, remove_store
from ...errors import DataError, UsageError

try:
    import fcntl
except ImportError:  # not on Windows: concurrent prepares of one folder are then not serialised
    fcntl = None

PREP_VERSION = 2  # part of the fingerprint: bump when decoding changes what a store holds (2: fills the slot)
SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}
SIXTEEN_BIT = {"I", "I;16", "I;16B", "I;16L", "I;16N"}
GREY_MODES = {"L", "LA", "1"} | SIXTEEN_BIT | {"F"}
CHUNK_BYTES = 32 << 20
TASK_FILES = 8
TASKS_PER_WORKER = 4
START_METHOD = "fork" if sys.platform.startswith("linux") else "spawn"
ORIENTATION_TAG = 0x0112
# EXIF orientation -> the transpose that makes the image upright (as PIL.ImageOps.exif_transpose)
UPRIGHT = {
    2: "FLIP_LEFT_RIGHT",
    3: "ROTATE_180",
    4: "FLIP_TOP_BOTTOM",
    5: "TRANSPOSE",
    6: "ROTATE_270",
    7: "TRANSVERSE",
    8: "ROTATE_90",
}
QUARTER_TURNS = {"TRANSPOSE", "ROTATE_270", "TRANSVERSE", "ROTATE_90"}  # these swap width and height
SKIP_HINT = "fix or delete it, or pass --skip-bad to leave it out"


def default_storage_size(view_size: int) -> int:
    """The storage size S for views of ``view_size`` pixels: 1.5x, rounded up to a multiple of 8."""
    return -(-3 * view_size // 16) * 8


def pillow():
    """PIL.Image, or a one-line DataError naming the extra that installs it."""
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


def scan_folder(root: Path) -> tuple[dict[str, list[Path]], dict[str, list[int] | None], list[str] | None]:
    """The layout in the module docstring: each split's files, their label indices (None when loose)
    and the sorted class names."""
    dirs = _split_dirs(root)
    files = {split: _images(d) for split, d in dirs.items()}
    names = {split: _class_names(dirs[split], files[split]) for split in dirs}
    classes = sorted({c for n in names.values() if n for c in n}) or None
    index = {c: i for i, c in enumerate(classes or ())}
    labels = {split: None if n is None else [index[c] for c in n] for split, n in names.items()}
    return files, labels, classes


def default_store_dir(root: Path, size: int) -> Path:
    """``cache_root()/stores/<folder name>-<hash of the absolute path>-<S>px``."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", root.name)[:40] or "root"
    return cache_root() / "stores" / f"{name}-{hashlib.sha1(str(root).encode()).hexdigest()[:12]}-{size}px"


def folder_fingerprint(root: Path, files: dict[str, list[Path]], size: int) -> str:
    """The rule in the module docstring: split, relative path, size and mtime of every file; S; PREP_VERSION."""
    h = hashlib.sha256(f"prep {PREP_VERSION}\0size {size}".encode())
    for split in sorted(files):
        for f in files[split]:
            st = f.stat()
            h.update(f"\0{split}\0{f.relative_to(root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return h.hexdigest()


# --- in the worker processes ---------------------------------------------------------------------


def _init_worker(parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not a forked copy of the parent's handler
    warnings.simplefilter("ignore")  # Pillow's per-file warnings would flood the terminal
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """A killed main process leaves its workers waiting on a queue forever: notice and exit."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _reason(e: Exception, path: str) -> str:
    """Why a file failed, in one short line (the error names the file already)."""
    text = " ".join(str(e).replace(repr(path), "").replace(path, "").split()).rstrip(" :")[:200]
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _read_modes(paths: list[str]) -> list[str | None]:
    """Each file's Pillow mode from its header alone (None when it does not open: the decode reports it)."""
    Image = pillow()
    out = []
    for path in paths:
        try:
            with Image.open(path) as im:
                out.append(im.mode)
        except Exception:  # Pillow raises many types for broken files (OSError, SyntaxError, ...)
            out.append(None)
    return out


def _to_mode(im, mode: str):
    """``im`` in ``mode`` ("L" or "RGB"); 16-bit grey is scaled to 8 bits, not clipped."""
    if im.mode in SIXTEEN_BIT:
        Image = pillow()
        grey = (np.asarray(im, dtype=np.float32) / 257.0).round().clip(0, 255).astype(np.uint8)
        im = Image.fromarray(grey)  # 2-D uint8: mode L
    return im if im.mode == mode else im.convert(mode)


def decode_image(path: str, size: int, mode: str) -> tuple[np.ndarray, tuple[int, int]]:
    """One file as uint8 (C, size, size), upright and resized to fill the square, and its upright (H, W)."""
    Image = pillow()
    with Image.open(path) as im:
        turn = UPRIGHT.get(im.getexif().get(ORIENTATION_TAG, 1))
        width, height = im.size
        box = None
        if (width, height) != (size, size):
            drafted = im.draft(mode, (size, size))  # JPEG: decode at 1/2, 1/4 or 1/8 scale; others: no-op
            box = drafted[1] if drafted else None
        im = _to_mode(im, mode)
        if im.size != (size, size) or box is not None:
            im = im.resize((size, size), Image.BICUBIC, box=box)  # the constant: Pillow 9.0 has no enums
        if turn is not None:  # filling a square commutes with turning: turn the small image
            im = im.transpose(getattr(Image, turn))
            if turn in QUARTER_TURNS:
                width, height = height, width
        pixels = np.asarray(im)
    pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    return np.ascontiguousarray(pixels), (height, width)


def _decode_batch(paths: list[str], size: int, mode: str) -> list[tuple]:
    """("ok", pixels, source size) or ("bad", reason) per file, in order."""
    out = []
    for path in paths:
        try:
            out.append(("ok", *decode_image(path, size, mode)))
        except Exception as e:  # a broken file is reported, not fatal to the batch
            out.append(("bad", _reason(e, path)))
    return out


# --- in the main process --------------------------------------------------------------------------

Run = Callable[..., Iterator]


def _in_process(fn, batches, *args) -> Iterator:
    for batch in batches:
        yield from fn(batch, *args)


def _in_workers(executor: ProcessPoolExecutor, workers: int) -> Run:
    """``run(fn, batches, *args)``: fn's results over the batches in order, a bounded number in flight."""

    def run(fn, batches, *args):
        pending, batches = deque(), iter(batches)
        try:
            for batch in batches:
                pending.append(executor.submit(fn, batch, *args))
                if len(pending) >= workers * TASKS_PER_WORKER:
                    break
            while pending:
                results = pending.popleft().result()
                batch = next(batches, None)
                if batch is not None:
                    pending.append(executor.submit(fn, batch, *args))
                yield from results
        finally:  # a caller that stops early (an error, enough headers read) leaves no work queued
            for future in pending:
                future.cancel()

    return run


@contextmanager
def _runner(workers: int) -> Iterator[Run]:
    if workers == 0:
        yield _in_process
        return
    import multiprocessing

    executor = ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context(START_METHOD), initializer=_init_worker, initargs=(os.getpid(),)
    )
    try:
        # Start the workers now, before this process starts threads of its own (the progress bar's):
        # a fork copies only the calling thread. Frozen, the parent's objects stay out of the
        # workers' garbage collections, which would otherwise write to (and so copy) their pages.
        gc.freeze()
        try:
            executor.submit(int).result()
        finally:
            gc.unfreeze()
        yield _in_workers(executor, workers)
    except BrokenProcessPool:
        raise DataError(
            "a prepare worker process died (killed for memory?); run the prepare again to continue, "
            "with fewer workers if memory is short"
        ) from None
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """One prepare per store folder at a time (several ranks of one job may all ask for it)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = open(folder / ".lock", "w")
    except OSError as e:
        raise DataError(
            f"cannot create the image store folder {folder} ({e.strerror or e}); choose another store folder"
        ) from None
    with lock as f:
        if fcntl is not None:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                print(f"waiting for another process preparing {folder}", file=sys.stderr, flush=True)
                fcntl.flock(f, fcntl.LOCK_EX)
        yield


class _Bar:
    """A rich progress bar with images/s and ETA, or nothing."""

    def __init__(self, show: bool):
        self.progress = None
        if show:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                ProgressColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.text import Text

            class Rate(ProgressColumn):
                def render(self, task):
                    return Text(f"{task.speed:,.0f} images/s" if task.speed else "- images/s")

            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                Rate(),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
            )

    def __enter__(self):
        if self.progress:
            self.progress.start()
        return self

    def __exit__(self, *exc):
        if self.progress:
            self.progress.stop()

    def task(self, description: str, total: int, done: int = 0):
        return self.progress.add_task(description, total=total, completed=done) if self.progress else None

    def advance(self, task, n: int) -> None:
        if self.progress:
            self.progress.advance(task, n)


def _bad_error(path: Path, reason: str, more: int = 0) -> DataError:
    extra = f" (and {more} more)" if more else ""
    return DataError(f"cannot decode image {path} ({reason}){extra}; {SKIP_HINT}")


def _check_options(size: int, workers: int | None, chunk_rows: int | None) -> int:
    if not isinstance(size, int) or size < 1:
        raise UsageError(f"the storage size must be a positive number of pixels, got {size!r}; e.g. --size 96")
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if not isinstance(workers, int) or workers < 0:
        raise UsageError(f"workers must be 0 (decode in this process) or more, got {workers!r}")
    if chunk_rows is not None and (not isinstance(chunk_rows, int) or chunk_rows < 1):
        raise UsageError(f"chunk_rows must be a positive number of images, got {chunk_rows!r}")
    return workers


def _channels(run: Run, files: dict[str, list[Path]]) -> int:
    """3 when any file is in colour, else 1, from the file headers in order: a photo folder stops at its first."""
    paths = [str(p) for split in files.values() for p in split]
    for mode in run(_read_modes, (paths[j : j + TASK_FILES] for j in range(0, len(paths), TASK_FILES))):
        if mode is not None and mode not in GREY_MODES:
            return 3
    return 1


def _spec(
    root: Path, split: str, size: int, channels: int, fingerprint: str, labelled: bool, classes: list[str] | None
) -> Spec:
    return Spec(
        dtype="|u1",
        shape=(channels, size, size),
        fingerprint=fingerprint,
        labels=labelled,
        classes=None if classes is None else tuple(classes),
        extras={"source_size": ("<i4", (2,))},
        names=True,
        meta={
            "kind": "image",
            "source": str(root),
            "split": split,
            "storage_size": size,
            "layout": "resized to fill the slot; source_size is the upright size in the file",
            "resample": "bicubic after JPEG draft",
            "prep_version": PREP_VERSION,
            "pillow": pillow().__version__,
        },
    )


def _write_split(
    run: Run,
    writer: StoreWriter,
    root: Path,
    paths: list[Path],
    labels: list[int] | None,
    chunk_rows: int,
    skip_bad: bool,
    bar: _Bar,
    description: str,
) -> None:
    """Decode the split's remaining files in order and append them chunk by chunk, then finish the store."""
    channels, size = writer.spec.shape[0], writer.spec.shape[1]
    mode = "RGB" if channels == 3 else "L"
    start, n = writer.inputs_done, len(paths)
    todo = [str(p) for p in paths[start:]]
    results = run(_decode_batch, (todo[j : j + TASK_FILES] for j in range(0, len(todo), TASK_FILES)), size, mode)
    buffer = np.empty((min(chunk_rows, max(1, n - start)), channels, size, size), np.uint8)
    task = bar.task(description, n, start)
    for low in range(start, n, chunk_rows):
        inputs = range(low, min(low + chunk_rows, n))
        rows, source, names, kept, skipped = 0, [], [], [], []
        for i in inputs:
            result = next(results)
            name = paths[i].relative_to(root).as_posix()
            bar.advance(task, 1)
            if result[0] == "bad":
                if not skip_bad:
                    raise _bad_error(paths[i], result[1])
                skipped.append(name)
                continue
            buffer[rows] = result[1]
            source.append(result[2])
            names.append(name)
            kept.append(i)
            rows += 1
        writer.append(
            buffer[:rows],
            inputs=len(inputs),
            names=names,
            skipped=skipped,
            labels=None if labels is None else [labels[i] for i in kept],
            extras={"source_size": np.array(source, np.int32).reshape(-1, 2)},
        )
    if writer.rows == 0:
        raise DataError(f"no readable images among the {n} under {root} ({description}); fix or replace them")
    writer.finish()


def _usable(stores: dict[str, Store], root: Path, skip_bad: bool) -> dict[str, Store]:
    """The stores, unless they left out unreadable files and ``skip_bad`` is off."""
    skipped = [name for store in stores.values() for name in store.skipped]
    if skipped and not skip_bad:
        raise _bad_error(root / skipped[0], "skipped when the store was prepared", more=len(skipped) - 1)
    if skipped:
        warnings.warn(f"skipped {len(skipped)} unreadable images under {root}", stacklevel=3)
    return stores


def prepare_folder(
    root: str | os.PathLike,
    size: int,
    workers: int | None = None,
    skip_bad: bool = False,
    out: str | os.PathLike | None = None,
    progress: bool = True,
    chunk_rows: int | None = None,
) -> dict[str, Store]:
    """The folder's splits as opened stores ({"train": ..., "test": ...}), preparing what is missing or stale.

    ``size`` is the storage size S (see :func:`default_storage_size`); ``workers`` decoding
    processes (None: the usable CPUs; 0: in this process); ``out`` the store folder (default under
    ``cache_root()``); ``chunk_rows`` images per chunk (default: about 32 MiB of pixels).
    """
    workers = _check_options(size, workers, chunk_rows)
    pillow()  # here, not in the workers, where a missing Pillow would look like unreadable files
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DataError(
            f"image folder {root} {'is not a folder' if root.exists() else 'does not exist'}; "
            "give folder:PATH a folder of images"
        )
    files, labels, classes = scan_folder(root)
    fingerprint = folder_fingerprint(root, files, size)
    out = Path(out).expanduser().resolve() if out is not None else default_store_dir(root, size)
    splits = {split: out / split for split in files}
    with _locked(out):
        for stale in {"train", "test"} - set(files):
            remove_store(out / stale)
        todo = [split for split in files if not is_complete(splits[split], fingerprint)]
        if todo:
            _prepare(
                root,
                files,
                labels,
                classes,
                fingerprint,
                {s: splits[s] for s in todo},
                size,
                workers,
                skip_bad,
                progress,
                chunk_rows,
            )
        return _usable({split: open_store(path) for split, path in splits.items()}, root, skip_bad)


_NOTED: set[Path] = set()


def _note_old_caches() -> None:
    """Say once (a process) that the decoded caches of earlier versions are unused, and how large they are."""
    old = cache_root() / "folders"
    files = sorted(old.glob("*.pt")) if old.is_dir() and old not in _NOTED else []
    if files:
        _NOTED.add(old)
        size = sum(f.stat().st_size for f in files)
        warnings.warn(
            f"{old} holds {len(files)} decoded-image caches of an earlier selfsup ({size / 2**20:,.0f} MiB) "
            "that nothing reads any more; delete that folder to free the space",
            stacklevel=3,
        )


def _prepare(
    root: Path,
    files: dict[str, list[Path]],
    labels: dict,
    classes: list[str] | None,
    fingerprint: str,
    todo: dict[str, Path],
    size: int,
    workers: int,
    skip_bad: bool,
    progress: bool,
    chunk_rows: int | None,
) -> None:
    _note_old_caches()
    with _runner(min(workers, sum(map(len, files.values())))) as run, _Bar(progress) as bar:
        channels = _channels(run, files)
        rows = chunk_rows or max(1, CHUNK_BYTES // (channels * size * size))
        for split, path in todo.items():
            spec = _spec(root, split, size, channels, fingerprint, labels[split] is not None, classes)
            try:
                writer = StoreWriter(path, spec)
                _write_split(run, writer, root, files[split], labels[split], rows, skip_bad, bar, f"prepare {split}")
            except OSError as e:
                raise DataError(
                    f"cannot write the image store {path} ({e.strerror or e}); free disk space or "
                    "choose another store folder, then run again to continue"
                ) from None
