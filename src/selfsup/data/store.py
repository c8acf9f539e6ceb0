"""A versioned, memory-mapped store of fixed-shape samples: written once in resumable chunks, read in place.

A store is a folder::

    header.json        written last: format and version, dtype, sample shape, count, labels, class names,
                       extras, names, skipped inputs, the source's fingerprint, the caller's meta, creation
                       info, and every payload file's size in bytes
    samples.bin        the samples, C order, (count, *shape) of dtype, no header (memory-mapped as is)
    labels.npy         int64 (count,), when the store has labels
    extra_<name>.npy   per-sample extra arrays (count, *shape), e.g. each image's size in its file
    names.jsonl        one JSON string per sample (e.g. its file), when the store has names
    progress.json      only while writing: how far the durable part goes

Writing (:class:`StoreWriter`) appends chunks of samples in input order. After a chunk's bytes are
fsynced, ``progress.json`` is replaced atomically with the number of inputs consumed and every
file's size; a writer constructed on a folder whose progress record has the same :class:`Spec`
truncates the files to those sizes and continues, so a store written across any number of
interruptions is byte-identical to an uninterrupted one, header included (which is why the header
records the versions that wrote it but no times). ``finish`` writes ``header.json`` to a temporary
name, fsyncs it and renames it into place: a folder without ``header.json`` is never a store. A
progress record with a different spec (another source fingerprint, shape, dtype...) is discarded,
and the writer starts afresh.

Reading (:func:`open_store`) checks the header and every file's size (cheap; contents are not
checksummed) and maps ``samples.bin`` with :func:`map_file`: the samples tensor is file-backed,
indexing a batch reads only those rows, and the OS pages the rest in and out (they count as the
process's file-backed resident memory while mapped, and as page cache, both given back under
memory pressure). The mapping is private: writing into the tensor changes this process's copy of
those pages, never the file. Labels and extras (a few bytes per sample) are read into memory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataError

FORMAT = "selfsup-store"
VERSION = 1  # bump when the layout changes; readers refuse versions above theirs
HEADER, PROGRESS = "header.json", "progress.json"
SAMPLES, LABELS, NAMES = "samples.bin", "labels.npy", "names.jsonl"
LABEL_DTYPE = np.dtype("<i8")
# The only files a writer deletes: a store folder given by a user may hold other files.
STORE_FILES = (HEADER, PROGRESS, SAMPLES, LABELS, NAMES)
STORE_PREFIXES = ("extra_",)
STORE_SUFFIXES = (".part", ".tmp")


@dataclass(frozen=True)
class Spec:
    """What a store holds, fixed before the first chunk; a writer resumes only under an equal spec.

    ``fingerprint`` identifies the source (the caller's rule, e.g. file names, sizes and mtimes);
    ``extras`` maps a name to ``(dtype, per-sample shape)``; ``meta`` is the caller's JSON-able
    record of how samples were made (it is part of the spec, so changing it restarts a write).
    """

    dtype: str
    shape: tuple[int, ...]
    fingerprint: str
    labels: bool = False
    classes: tuple[str, ...] | None = None
    extras: dict[str, tuple[str, tuple[int, ...]]] = field(default_factory=dict)
    names: bool = False
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Specs are built by code, not users: these are our invariants.
        assert all(isinstance(n, int) and n > 0 for n in self.shape), self.shape
        assert np.dtype(self.dtype).isnative or np.dtype(self.dtype).itemsize == 1, "store native byte order"
        torch.from_numpy(np.empty(0, self.dtype))  # raises TypeError for dtypes torch cannot hold

    def as_json(self) -> dict:
        """A JSON round trip of the spec, the form stored and compared."""
        return json.loads(json.dumps(asdict(self)))

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize


def _extra_file(name: str) -> str:
    return f"extra_{name}.npy"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that a crash leaves the old file or the new one, never a mix."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def remove_store(path: str | os.PathLike) -> None:
    """Delete a store's files (the header first, so it stops being a store at once); other files stay."""
    path = Path(path)
    if not path.is_dir():
        return
    (path / HEADER).unlink(missing_ok=True)
    _fsync_dir(path)
    for f in path.iterdir():
        if f.is_file() and (
            f.name in STORE_FILES or f.name.startswith(STORE_PREFIXES) or f.name.endswith(STORE_SUFFIXES)
        ):
            f.unlink()


class StoreWriter:
    """Appends chunks to the store at ``path``; resumes an interrupted write of the same :class:`Spec`.

    ``inputs_done`` says how many inputs the durable chunks consumed: the caller continues from the
    next one. An input may yield no sample (``skipped``), so inputs and rows are counted apart.
    Constructing a writer replaces whatever else is at ``path`` (a complete store included).
    """

    def __init__(self, path: str | os.PathLike, spec: Spec):
        self.path, self.spec = Path(path), spec
        self.path.mkdir(parents=True, exist_ok=True)
        # The files appended to; labels and extras become .npy files when the store is finished.
        self._parts = [
            SAMPLES,
            *(["labels.part"] if spec.labels else []),
            *(f"extra_{name}.part" for name in spec.extras),
            *([NAMES] if spec.names else []),
        ]
        state = self._resumable_state()
        if state is None:
            remove_store(self.path)
            state = {
                "spec": spec.as_json(),
                "inputs": 0,
                "rows": 0,
                "skipped": [],
                "bytes": {name: 0 for name in self._parts},
            }
        self._state = state
        self._files = {}
        for name, size in state["bytes"].items():
            f = open(self.path / name, "a+b")
            f.truncate(size)  # drop whatever an interrupted chunk wrote after the last progress record
            self._files[name] = f
        self._save_progress()

    def _resumable_state(self) -> dict | None:
        """The progress record, when it belongs to an unfinished write of this spec and its files are whole."""
        if (self.path / HEADER).exists():
            return None
        try:
            state = json.loads((self.path / PROGRESS).read_text(encoding="utf-8"))
            if state["spec"] != self.spec.as_json() or set(state["bytes"]) != set(self._parts):
                return None
            for name, size in state["bytes"].items():
                if (self.path / name).stat().st_size < size:
                    return None
            return state
        except (OSError, ValueError, KeyError, TypeError):
            return None

    @property
    def inputs_done(self) -> int:
        return self._state["inputs"]

    @property
    def rows(self) -> int:
        return self._state["rows"]

    def append(
        self,
        samples: np.ndarray,
        *,
        inputs: int,
        labels: Sequence[int] | np.ndarray | None = None,
        extras: dict[str, np.ndarray] | None = None,
        names: Sequence[str] | None = None,
        skipped: Sequence[str] = (),
    ) -> None:
        """Add one chunk: ``samples`` (k, *shape) made from the next ``inputs`` inputs, ``skipped`` naming
        those that gave none. Durable when this returns."""
        spec, k = self.spec, len(samples)
        assert samples.shape[1:] == spec.shape and samples.dtype == np.dtype(spec.dtype), (samples.shape, samples.dtype)
        assert inputs == k + len(skipped), (inputs, k, len(skipped))
        payload = {SAMPLES: np.ascontiguousarray(samples)}
        if spec.labels:
            assert labels is not None and len(labels) == k
            payload["labels.part"] = np.asarray(labels, dtype=LABEL_DTYPE)
        for name, (dtype, shape) in spec.extras.items():
            value = np.ascontiguousarray((extras or {})[name], dtype=dtype)
            assert value.shape == (k, *shape), (name, value.shape)
            payload[f"extra_{name}.part"] = value
        if spec.names:
            assert names is not None and len(names) == k
            payload[NAMES] = "".join(json.dumps(n) + "\n" for n in names).encode("utf-8")
        for name, data in payload.items():
            f = self._files[name]
            f.write(data)  # bytes, or a C-contiguous array through the buffer protocol (no copy)
            f.flush()
            os.fsync(f.fileno())
        self._state["inputs"] += inputs
        self._state["rows"] += k
        self._state["skipped"] += list(skipped)
        self._state["bytes"] = {name: os.fstat(f.fileno()).st_size for name, f in self._files.items()}
        self._save_progress()

    def _save_progress(self) -> None:
        _write_atomic(self.path / PROGRESS, json.dumps(self._state))

    def finish(self) -> None:
        """Complete the store: the .npy files, then the header, renamed into place after an fsync."""
        spec, rows = self.spec, self.rows
        for f in self._files.values():
            f.close()
        files = {SAMPLES: rows * spec.row_bytes}
        if spec.labels:
            files[LABELS] = _part_to_npy(self.path, "labels.part", LABELS, LABEL_DTYPE, (), rows)
        for name, (dtype, shape) in spec.extras.items():
            files[_extra_file(name)] = _part_to_npy(
                self.path, f"extra_{name}.part", _extra_file(name), np.dtype(dtype), tuple(shape), rows
            )
        if spec.names:
            files[NAMES] = self._state["bytes"][NAMES]
        assert (self.path / SAMPLES).stat().st_size == files[SAMPLES]
        header = {
            "format": FORMAT,
            "version": VERSION,
            "dtype": np.dtype(spec.dtype).str,
            "shape": list(spec.shape),
            "count": rows,
            "labels": {"dtype": LABEL_DTYPE.str} if spec.labels else None,
            "classes": None if spec.classes is None else list(spec.classes),
            "extras": {name: {"dtype": np.dtype(d).str, "shape": list(s)} for name, (d, s) in spec.extras.items()},
            "names": spec.names,
            "inputs": self.inputs_done,
            "skipped": {"count": len(self._state["skipped"]), "names": self._state["skipped"]},
            "fingerprint": spec.fingerprint,
            "meta": spec.meta,
            "files": files,
            "created": {"selfsup": _selfsup_version(), "numpy": np.__version__},
        }
        _write_atomic(self.path / HEADER, json.dumps(header, indent=1))
        for name in [PROGRESS, *(n for n in self._parts if n.endswith(".part"))]:
            (self.path / name).unlink(missing_ok=True)


def _part_to_npy(folder: Path, part: str, final: str, dtype: np.dtype, shape: tuple[int, ...], rows: int) -> int:
    """Prefix the raw rows of ``part`` with an .npy header into ``final``, copying in blocks (bounded memory)."""
    tmp = folder / (final + ".tmp")
    with open(folder / part, "rb") as src, open(tmp, "wb") as dst:
        np.lib.format.write_array_header_1_0(
            dst, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (rows, *shape)}
        )
        while block := src.read(1 << 22):
            dst.write(block)
        dst.flush()
        os.fsync(dst.fileno())
    os.replace(tmp, folder / final)
    return (folder / final).stat().st_size


def _selfsup_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("selfsup")
    except PackageNotFoundError:
        return "unknown"


# --- reading ------------------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class Store:
    """An opened store: ``samples`` (count, *shape) memory-mapped and read-only; the rest in memory."""

    path: Path
    header: dict
    samples: torch.Tensor
    labels: torch.Tensor | None
    extras: dict[str, torch.Tensor]

    @property
    def count(self) -> int:
        return self.header["count"]

    @property
    def classes(self) -> list[str] | None:
        return self.header["classes"]

    @property
    def fingerprint(self) -> str:
        return self.header["fingerprint"]

    @property
    def skipped(self) -> list[str]:
        return self.header["skipped"]["names"]

    def names(self) -> list[str] | None:
        """Each sample's name (e.g. its file), read from disk on each call; None when the store has none."""
        if not self.header["names"]:
            return None
        with open(self.path / NAMES, encoding="utf-8") as f:
            return [json.loads(line) for line in f]

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r}: {self.count} x {tuple(self.header['shape'])} {self.header['dtype']})"


def _redo(path: Path) -> str:
    return f"delete {path} and run the prepare again"


def _corrupt(path: Path, what: str) -> DataError:
    return DataError(f"store {path} is damaged ({what}); {_redo(path)}")


def _read_header(path: Path) -> dict:
    if not path.is_dir():
        raise DataError(f"no store at {path}; run the prepare to write it")
    if not (path / HEADER).is_file():
        if (path / PROGRESS).is_file():
            raise DataError(
                f"store {path} is unfinished (an interrupted prepare); run the prepare again to "
                "continue it, or delete the folder"
            )
        raise DataError(f"{path} is not a complete store (no {HEADER}); {_redo(path)}")
    try:
        header = json.loads((path / HEADER).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise _corrupt(path, f"{HEADER} unreadable: {type(e).__name__}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT or not isinstance(header.get("version"), int):
        raise _corrupt(path, f"{HEADER} is not a {FORMAT} header")
    if header["version"] > VERSION:
        raise DataError(
            f"store {path} has format version {header['version']}, newer than this selfsup reads "
            f"({VERSION}); upgrade selfsup, or {_redo(path)}"
        )
    try:
        _check_fields(header)
    except (KeyError, TypeError, ValueError, AssertionError) as e:
        raise _corrupt(path, f"{HEADER} has a bad field: {type(e).__name__} {e}".rstrip()) from None
    return header


def _check_fields(h: dict) -> None:
    """Types and consistency of a header's fields; raises on the first problem."""
    np.dtype(h["dtype"])
    assert all(isinstance(n, int) and n > 0 for n in h["shape"]) and isinstance(h["count"], int) and h["count"] >= 0
    assert isinstance(h["files"], dict) and all(isinstance(v, int) for v in h["files"].values())
    assert h["labels"] is None or np.dtype(h["labels"]["dtype"]) == LABEL_DTYPE
    assert h["classes"] is None or all(isinstance(c, str) for c in h["classes"])
    for extra in h["extras"].values():
        np.dtype(extra["dtype"])
        assert all(isinstance(n, int) and n > 0 for n in extra["shape"])
    assert isinstance(h["skipped"]["names"], list) and isinstance(h["fingerprint"], str)
    expected = {SAMPLES} | ({LABELS} if h["labels"] else set()) | ({NAMES} if h["names"] else set())
    assert set(h["files"]) == expected | {_extra_file(n) for n in h["extras"]}, "files"
    assert h["files"][SAMPLES] == h["count"] * int(np.prod(h["shape"])) * np.dtype(h["dtype"]).itemsize, "sizes"


def _load_npy(path: Path, name: str, dtype: np.dtype, shape: tuple[int, ...]) -> torch.Tensor:
    try:
        array = np.load(path / name, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise _corrupt(path, f"{name} unreadable: {type(e).__name__}") from None
    if array.dtype != dtype or array.shape != shape:
        raise _corrupt(path, f"{name} holds {array.dtype} {array.shape}, the header says {dtype} {shape}")
    return torch.from_numpy(array)


def map_file(
    path: str | os.PathLike,
    dtype: np.dtype,
    shape: tuple[int, ...],
    offset: int = 0,
    strides: tuple[int, ...] | None = None,
) -> torch.Tensor:
    """A tensor over the bytes of ``path`` from ``offset`` on, mapped privately (copy-on-write) and lazily.

    torch maps the whole file (``torch.from_file``); the tensor views ``shape`` (C order, or the given
    element ``strides``) of ``dtype`` starting at byte ``offset``. Mapped storages report
    ``is_shared()``, which is how the batch loader tells them from the process's own memory.
    """
    dtype = np.dtype(dtype)
    if int(np.prod(shape)) == 0:
        return torch.from_numpy(np.empty(shape, dtype))  # an empty file cannot be mapped
    assert offset % dtype.itemsize == 0, "the data must be aligned to its element size"
    size = os.stat(path).st_size
    whole = torch.from_file(str(path), shared=False, size=size // dtype.itemsize, dtype=_TORCH_DTYPES[dtype.str[1:]])
    if strides is None:
        strides = tuple(int(np.prod(shape[i + 1 :])) for i in range(len(shape)))
    return whole.as_strided(shape, strides, offset // dtype.itemsize)


# numpy dtype (without byte order) -> torch dtype, for the dtypes a store holds
_TORCH_DTYPES = {
    np.dtype(k).str[1:]: v
    for k, v in {
        "u1": torch.uint8,
        "i1": torch.int8,
        "i2": torch.int16,
        "i4": torch.int32,
        "i8": torch.int64,
        "f2": torch.float16,
        "f4": torch.float32,
        "f8": torch.float64,
        "b1": torch.bool,
    }.items()
}


def _map_samples(path: Path, dtype: np.dtype, shape: tuple[int, ...]) -> torch.Tensor:
    return map_file(path / SAMPLES, dtype, shape)


def open_store(path: str | os.PathLike) -> Store:
    """Open a complete store; a missing, unfinished, damaged or too new one is a one-line DataError."""
    path = Path(path)
    h = _read_header(path)
    for name, size in h["files"].items():
        actual = (path / name).stat().st_size if (path / name).is_file() else None
        if actual != size:
            found = "is missing" if actual is None else f"has {actual} bytes, the header says {size}"
            raise _corrupt(path, f"{name} {found}")
    n = h["count"]
    labels = _load_npy(path, LABELS, LABEL_DTYPE, (n,)) if h["labels"] else None
    extras = {
        name: _load_npy(path, _extra_file(name), np.dtype(e["dtype"]), (n, *e["shape"]))
        for name, e in h["extras"].items()
    }
    samples = _map_samples(path, np.dtype(h["dtype"]), (n, *h["shape"]))
    return Store(path=path, header=h, samples=samples, labels=labels, extras=extras)


def is_complete(path: str | os.PathLike, fingerprint: str | None = None) -> bool:
    """Whether ``path`` holds a store that opens (and, when given, has this source fingerprint)."""
    try:
        store = open_store(path)
    except DataError:
        return False
    return fingerprint is None or store.fingerprint == fingerprint
