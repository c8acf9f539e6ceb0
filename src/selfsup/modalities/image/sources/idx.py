"""The IDX file format of (Fashion-)MNIST: a magic number, big-endian dimensions, then the values.

The magic is ``0x0000TTNN``: two zero bytes, a type code ``TT`` and the number of dimensions ``NN``.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from ....errors import DataError

IMAGES_MAGIC = 0x00000803  # uint8, 3 dimensions
LABELS_MAGIC = 0x00000801  # uint8, 1 dimension
TYPE_CODES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_payload(path: str | Path) -> bytes:
    """The bytes of ``path``, gunzipped when it is a gzip file (recognised by content, not name)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None
    if not raw.startswith(b"\x1f\x8b"):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path} is a truncated or corrupt gzip file ({e}); delete it and get a fresh copy") from None


def parse_idx(payload: bytes, path: str | Path, magic: int | None = None) -> np.ndarray:
    """Decode an IDX payload read from ``path`` (named in errors); ``magic`` pins the expected kind."""
    if len(payload) < 4:
        raise DataError(f"{path} is truncated: {len(payload)} bytes, shorter than an IDX header")
    found = int.from_bytes(payload[:4], "big")
    type_code, ndim = payload[2], payload[3]
    if magic is not None and found != magic:
        raise DataError(
            f"{path} has IDX magic 0x{found:08x}, expected 0x{magic:08x}; "
            "is it the right file? Replace it with a fresh copy"
        )
    if payload[:2] != b"\0\0" or type_code not in TYPE_CODES or ndim == 0:
        raise DataError(
            f"{path} is not an IDX file: magic 0x{found:08x}, expected 0x0000TTNN "
            f"(0x{IMAGES_MAGIC:08x} for uint8 images, 0x{LABELS_MAGIC:08x} for uint8 labels)"
        )
    start = 4 + 4 * ndim
    if len(payload) < start:
        raise DataError(f"{path} is truncated inside its IDX header; replace it with a fresh copy")
    shape = tuple(int.from_bytes(payload[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(TYPE_CODES[type_code])
    expected = start + dtype.itemsize * int(np.prod(shape))
    if len(payload) != expected:
        problem = "truncated" if len(payload) < expected else "followed by extra bytes"
        raise DataError(
            f"{path} is {problem}: its header promises {shape} values ({expected} bytes) "
            f"but it holds {len(payload)} bytes; replace it with a fresh copy"
        )
    # astype copies into a writable, native-endian array (frombuffer over bytes is read-only).
    return np.frombuffer(payload, dtype, offset=start).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx(path: str | Path, magic: int | None = None) -> np.ndarray:
    """Read an IDX file, gzipped or plain, as a numpy array of the shape its header gives."""
    return parse_idx(read_payload(path), path, magic)
