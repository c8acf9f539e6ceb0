"""Readers for the time-series archive formats and for a user's own arrays.

Every reader returns a :class:`ParsedSeries`: float32 values ``(N, C, T)`` with NaN after the end
of each shorter series (``T`` is the longest length in the file), the raw label strings (or float
targets) and what the file's header said. Formats:

- sktime/aeon ``.ts`` (univariate and multivariate, equal and unequal length, class labels or
  regression targets, ``?`` for missing values, optional ``(timestamp,value)`` tuples);
- UCR ``.tsv`` / old-style ``.txt`` (label first, then values; NaN padding in the variable-length sets);
- Weka ``.arff``, univariate (one numeric attribute per time step) and UEA's relational multivariate
  form (one quoted relational value per case, channels separated by a literal ``\\n``);
- ``.npy`` shaped ``(N, C, T)`` or ``(N, T)`` and ``.npz`` with ``x_train/y_train/x_test/y_test``.

A user's mistake in a file ends in one :class:`DataError` line naming the file and line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import DataError

SERIES_SUFFIXES = (".ts", ".tsv", ".txt", ".arff")


@dataclass
class ParsedSeries:
    """One split read from one file."""

    values: np.ndarray  # float32 (N, C, T), NaN after each series' end
    labels: list[str] | np.ndarray | None  # raw class strings, float targets (regression) or None
    path: Path
    first_line: int = 1  # line of the first case, for error messages about the whole split
    class_names: list[str] | None = None  # as the header declares them, if it does
    regression: bool = False
    allows_missing: bool = True  # False where the header says "@missing false"
    header: dict = field(default_factory=dict)


def read_series(path: str | Path) -> ParsedSeries:
    """Read one archive split by its suffix (``.ts``, ``.tsv``, ``.txt``, ``.arff``)."""
    path = Path(path)
    readers = {".ts": read_ts, ".tsv": read_ucr_text, ".txt": read_ucr_text, ".arff": read_arff}
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise DataError(f"{path}: unknown series format {path.suffix!r}; use .ts, .tsv, .txt, .arff, .npy or .npz")
    return reader(path)


# --------------------------------------------------------------------------- helpers


def _lines(path: Path):
    """``(line number, stripped text)`` of a text file, one-line errors for unreadable files."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        raise DataError(f"cannot read {path}: {err.strerror}; check the path and its permissions") from None
    for number, line in enumerate(text.splitlines(), start=1):
        yield number, line.strip()


def _numbers(tokens: list[str], path: Path, line: int) -> np.ndarray:
    """Tokens as float64, ``?`` and empty tokens as NaN; names the bad token when one is not a number."""
    cleaned = ["nan" if t in ("?", "") else t for t in tokens]
    try:
        return np.asarray(cleaned, dtype=np.float64)
    except ValueError:
        bad = next(t for t in cleaned if not _is_number(t))
        raise DataError(f"{path}:{line}: {bad[:40]!r} is not a number; fix or remove that line") from None


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _length(channels: list[np.ndarray]) -> int:
    """Index after the last timestamp where any channel has a value (trailing NaN is padding)."""
    length = 0
    for values in channels:
        finite = np.flatnonzero(~np.isnan(values))
        if finite.size:
            length = max(length, int(finite[-1]) + 1)
    return length


def _stack(cases: list[list[np.ndarray]]) -> np.ndarray:
    """Cases of per-channel 1-D arrays as float32 ``(N, C, T)``, NaN beyond each series' end."""
    if not cases:
        return np.zeros((0, 0, 0), dtype=np.float32)
    channels = len(cases[0])
    longest = max((len(v) for case in cases for v in case), default=0)
    out = np.full((len(cases), channels, longest), np.nan, dtype=np.float32)
    for i, case in enumerate(cases):
        for c, values in enumerate(case):
            out[i, c, : len(values)] = values
    return out


def _check_missing(values: list[np.ndarray], allows_missing: bool, path: Path, line: int) -> None:
    """NaN inside a series (before its end) where the header forbids missing values is an error."""
    if allows_missing:
        return
    end = _length(values)
    if any(np.isnan(v[:end]).any() or len(v) < end for v in values):
        raise DataError(
            f"{path}:{line}: missing value (? or NaN) in a file whose header says '@missing false'; "
            f"fix the value or set '@missing true'"
        )


def _bool(value: str, key: str, path: Path, line: int) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    raise DataError(f"{path}:{line}: {key} must be true or false, got {value!r}")


def _int(value: str, key: str, path: Path, line: int) -> int:
    try:
        return int(value)
    except ValueError:
        raise DataError(f"{path}:{line}: {key} must be a whole number, got {value!r}") from None


# --------------------------------------------------------------------------- .ts

_TUPLE = re.compile(r"\(([^()]*)\)")


def read_ts(path: str | Path) -> ParsedSeries:
    """The sktime/aeon ``.ts`` format: ``@`` header lines, then ``@data`` and one case per line.

    A case is its channels separated by ``:``, each a comma-separated list of values (``?`` missing),
    followed by the class label when ``@classLabel true`` (or a number when ``@targetLabel true``).
    With ``@timeStamps true`` values come as ``(timestamp,value)`` tuples; they are kept in file
    order and the timestamps are not used.
    """
    path = Path(path)
    header: dict = {}
    cases: list[list[np.ndarray]] = []
    labels: list[str] = []
    in_data, first_line = False, 0
    for number, line in _lines(path):
        if not line or line[0] in "#%":
            continue
        if not in_data:
            if not line.startswith("@"):
                raise DataError(
                    f"{path}:{number}: expected a header line starting with '@' before '@data', "
                    f"got {line[:40]!r}; is this a .ts file?"
                )
            key, _, value = line.partition(" ")
            key = key.lower()
            if key == "@data":
                in_data = True
                _validate_ts_header(header, path, number)
            else:
                _ts_header_entry(header, key, value.strip(), path, number)
            continue
        first_line = first_line or number
        values, label = _ts_case(line, header, path, number)
        _check_missing(values, header["missing"], path, number)
        cases.append(values)
        if label is not None:
            labels.append(label)
    if not in_data:
        raise DataError(f"{path}: no '@data' line; a .ts file needs its header, then '@data', then one case a line")
    if not cases:
        raise DataError(f"{path}: no cases after '@data'; the file is empty or truncated")
    _check_equal_length(cases, header, path, first_line)
    regression = header.get("targetlabel", False)
    parsed_labels: list[str] | np.ndarray | None = None
    if labels:
        parsed_labels = _numbers(labels, path, first_line) if regression else labels
        if not regression and header.get("class_names"):
            unknown = sorted(set(labels) - set(header["class_names"]))
            if unknown:
                line = first_line + labels.index(unknown[0])
                raise DataError(
                    f"{path}:{line}: class {unknown[0]!r} is not among those the header declares "
                    f"({' '.join(header['class_names'])}); fix the label or the @classLabel line"
                )
    return ParsedSeries(
        values=_stack(cases),
        labels=parsed_labels,
        path=path,
        first_line=first_line,
        class_names=header.get("class_names"),
        regression=regression,
        allows_missing=header["missing"],
        header=_public_header(header),
    )


def _ts_header_entry(header: dict, key: str, value: str, path: Path, line: int) -> None:
    if key == "@problemname":
        header["problemname"] = value
    elif key in ("@timestamps", "@missing", "@univariate", "@equallength"):
        header[key[1:]] = _bool(value, key, path, line)
    elif key == "@dimensions":
        header["dimensions"] = _int(value, key, path, line)
    elif key == "@serieslength":
        header["serieslength"] = _int(value, key, path, line)
    elif key == "@classlabel":
        flag, *names = value.split()
        header["classlabel"] = _bool(flag or "", key, path, line)
        if header["classlabel"]:
            if not names:
                raise DataError(f"{path}:{line}: '@classLabel true' must list the class names after it")
            header["class_names"] = names
    elif key == "@targetlabel":
        header["targetlabel"] = _bool(value.split()[0] if value else "", key, path, line)
    # Other keys (@description, ...) carry no structure; they are ignored.


def _validate_ts_header(header: dict, path: Path, line: int) -> None:
    header.setdefault("timestamps", False)
    header.setdefault("missing", True)
    header.setdefault("classlabel", False)
    header.setdefault("targetlabel", False)
    if header.get("univariate") and header.get("dimensions", 1) != 1:
        raise DataError(
            f"{path}:{line}: header says '@univariate true' and '@dimensions {header['dimensions']}'; fix one of them"
        )
    if header.get("univariate"):
        header["dimensions"] = 1
    if header["classlabel"] and header["targetlabel"]:
        raise DataError(f"{path}:{line}: header has both '@classLabel true' and '@targetLabel true'; keep one")


def _ts_case(line: str, header: dict, path: Path, number: int) -> tuple[list[np.ndarray], str | None]:
    fields = _split_outside_parentheses(line) if header["timestamps"] else line.split(":")
    label = None
    if header["classlabel"] or header["targetlabel"]:
        if len(fields) < 2:
            raise DataError(f"{path}:{number}: expected values then ':' and a label, found no ':'")
        label = fields.pop().strip()
    expected = header.get("dimensions")
    if expected is not None and len(fields) != expected:
        raise DataError(
            f"{path}:{number}: {len(fields)} channel(s) where the header says {expected}; channels are separated by ':'"
        )
    header.setdefault("dimensions", len(fields))
    if len(fields) != header["dimensions"]:
        raise DataError(f"{path}:{number}: {len(fields)} channel(s) where earlier cases have {header['dimensions']}")
    values = []
    for text in fields:
        if header["timestamps"]:
            tokens = [t.rpartition(",")[2].strip() for t in _TUPLE.findall(text)]
        else:
            tokens = [t.strip() for t in text.split(",")]
        values.append(_numbers(tokens, path, number))
    return values, label


def _split_outside_parentheses(line: str) -> list[str]:
    """Split on ``:`` except inside ``(timestamp,value)`` tuples, whose timestamps may hold colons."""
    fields, depth, start = [], 0, 0
    for i, char in enumerate(line):
        depth += (char == "(") - (char == ")")
        if char == ":" and depth == 0:
            fields.append(line[start:i])
            start = i + 1
    fields.append(line[start:])
    return fields


def _check_equal_length(cases: list[list[np.ndarray]], header: dict, path: Path, first_line: int) -> None:
    expected = header.get("serieslength")
    if not header.get("equallength", False) or expected is None:
        return
    for i, case in enumerate(cases):
        for values in case:
            if len(values) != expected:
                raise DataError(
                    f"{path}:{first_line + i}: series of length {len(values)} where the header says "
                    f"'@seriesLength {expected}'; fix the case or set '@equalLength false'"
                )


def _public_header(header: dict) -> dict:
    return {k: v for k, v in header.items() if k != "class_names"}


# --------------------------------------------------------------------------- UCR .tsv / .txt


def read_ucr_text(path: str | Path) -> ParsedSeries:
    """UCR's text format: one case a line, the label first, then the values.

    ``.tsv`` (the 2018 archive) separates by tabs, the older ``.txt`` by spaces, ``.csv`` by commas.
    Trailing NaN is padding of a shorter series; NaN inside a series is a missing value (the archive
    has sets with both).
    """
    path = Path(path)
    cases, labels, first_line = [], [], 0
    for number, line in _lines(path):
        if not line:
            continue
        tokens = line.split(",") if "," in line else line.split()
        if len(tokens) < 2:
            raise DataError(f"{path}:{number}: expected a label and at least one value, got {line[:40]!r}")
        first_line = first_line or number
        labels.append(_label_text(tokens[0]))
        cases.append([_numbers(tokens[1:], path, number)])
    if not cases:
        raise DataError(f"{path}: no cases; the file is empty")
    return ParsedSeries(values=_stack(cases), labels=labels, path=path, first_line=first_line)


def _label_text(token: str) -> str:
    """``'1.0000000e+00'`` as ``'1'`` so the old .txt files name classes as the .ts files do."""
    token = token.strip()
    try:
        number = float(token)
    except ValueError:
        return token
    return str(int(number)) if number.is_integer() else token


# --------------------------------------------------------------------------- .arff


def read_arff(path: str | Path) -> ParsedSeries:
    """Weka ``.arff`` as the UCR/UEA archives write it.

    Univariate: one numeric attribute per time step, the class attribute last. Multivariate (UEA):
    a ``relational`` attribute whose value per case is one quoted string holding the channels,
    separated by a literal ``\\n``, each a comma-separated list of values; then the class.
    """
    path = Path(path)
    numeric, relational, class_names = 0, False, None
    in_relational, in_data, first_line = False, False, 0
    cases, labels = [], []
    for number, line in _lines(path):
        if not line or line.startswith("%"):
            continue
        if not in_data:
            lowered = line.lower()
            if lowered.startswith("@attribute"):
                kind = _arff_attribute_type(line)
                if kind == "relational":
                    relational = in_relational = True
                elif in_relational:
                    continue  # the relation's own numeric attributes
                elif kind.startswith("{"):
                    class_names = [n.strip().strip("'\"") for n in kind.strip("{}").split(",")]
                else:
                    numeric += 1
            elif lowered.startswith("@end"):
                in_relational = False
            elif lowered.startswith("@data"):
                in_data = True
            elif not lowered.startswith("@relation"):
                raise DataError(
                    f"{path}:{number}: unexpected line before '@data': {line[:40]!r}; is this an .arff file?"
                )
            continue
        first_line = first_line or number
        values, label = (_arff_relational_case if relational else _arff_flat_case)(line, path, number, numeric)
        cases.append(values)
        labels.append(label)
    if not in_data or not cases:
        raise DataError(f"{path}: no cases after '@data'; the file is empty or truncated")
    channels = {len(c) for c in cases}
    if len(channels) != 1:
        bad = next(i for i, c in enumerate(cases) if len(c) != len(cases[0]))
        raise DataError(
            f"{path}:{first_line + bad}: {len(cases[bad])} channel(s) where the first case has {len(cases[0])}"
        )
    if class_names is not None:
        unknown = sorted(set(labels) - set(class_names))
        if unknown:
            line = first_line + labels.index(unknown[0])
            declared = ",".join(class_names)
            raise DataError(f"{path}:{line}: class {unknown[0]!r} is not among the declared {{{declared}}}")
    return ParsedSeries(
        values=_stack(cases),
        labels=labels,
        path=path,
        first_line=first_line,
        class_names=class_names,
        header={"relational": relational},
    )


def _arff_attribute_type(line: str) -> str:
    """The type part of an ``@attribute`` line: ``numeric``, ``relational`` or ``{a,b,...}``."""
    rest = line.split(None, 1)[1] if len(line.split(None, 1)) > 1 else ""
    if rest[:1] in "'\"":
        quote = rest[0]
        rest = rest[1:].split(quote, 1)[1] if quote in rest[1:] else ""
    else:
        rest = rest.split(None, 1)[1] if len(rest.split(None, 1)) > 1 else ""
    rest = rest.strip()
    return rest if rest.startswith("{") else rest.lower()


def _arff_flat_case(line: str, path: Path, number: int, numeric: int) -> tuple[list[np.ndarray], str]:
    tokens = [t.strip() for t in line.split(",")]
    if len(tokens) != numeric + 1:
        raise DataError(f"{path}:{number}: {len(tokens)} fields where the header declares {numeric} values and a class")
    return [_numbers(tokens[:-1], path, number)], tokens[-1].strip("'\"")


def _arff_relational_case(line: str, path: Path, number: int, numeric: int) -> tuple[list[np.ndarray], str]:
    quote = line[:1]
    end = line.rfind(quote) if quote in "'\"" else -1
    if end <= 0:
        raise DataError(
            f"{path}:{number}: expected a quoted relational value (channels separated by \\n), got {line[:40]!r}"
        )
    body, label = line[1:end], line[end + 1 :].lstrip(",").strip().strip("'\"")
    channels = [_numbers([t.strip() for t in part.split(",")], path, number) for part in body.split("\\n")]
    return channels, label


# --------------------------------------------------------------------------- .npy / .npz


def read_npy(path: str | Path) -> np.ndarray:
    """A user's array ``(N, C, T)`` or ``(N, T)`` as float32 ``(N, C, T)``."""
    path = Path(path)
    array = _load_array(path, lambda: np.load(path, allow_pickle=False))
    return _as_nct(array, path, "array")


def read_npz(path: str | Path) -> dict[str, np.ndarray | None]:
    """A user's ``.npz`` with ``x_train`` (and optionally ``y_train``, ``x_test``, ``y_test``).

    ``x_*`` are ``(N, C, T)`` or ``(N, T)``. tslearn's cached files, which name them ``X_train`` and
    store ``(N, T, C)``, are read too (the capitalised name tells the layout apart).
    """
    path = Path(path)
    archive = _load_array(path, lambda: dict(np.load(path, allow_pickle=False)))
    tslearn = "X_train" in archive and "x_train" not in archive
    if "x_train" not in archive and not tslearn:
        raise DataError(
            f"{path}: no 'x_train' array (found {', '.join(sorted(archive)) or 'none'}); "
            f"save it with np.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)"
        )
    out: dict[str, np.ndarray | None] = {}
    for split in ("train", "test"):
        x = archive.get(("X_" if tslearn else "x_") + split)
        if x is not None and tslearn:
            x = np.swapaxes(x, 1, 2) if x.ndim == 3 else x
        out["x_" + split] = None if x is None else _as_nct(x, path, "x_" + split)
        y = archive.get("y_" + split)
        if y is not None and (y.ndim != 1 or x is None or len(y) != len(x)):
            raise DataError(f"{path}: y_{split} must be one label per row of x_{split}, got shape {y.shape}")
        out["y_" + split] = y
    return out


def _load_array(path: Path, load):
    try:
        return load()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file; check the path") from None
    except (OSError, ValueError) as err:
        raise DataError(
            f"{path}: not a readable NumPy file ({str(err).splitlines()[0][:80]}); save arrays with np.save/np.savez"
        ) from None


def _as_nct(array: np.ndarray, path: Path, what: str) -> np.ndarray:
    if array.ndim == 2:
        array = array[:, None, :]
    if array.ndim != 3 or not np.issubdtype(array.dtype, np.number):
        raise DataError(f"{path}: {what} must be numbers shaped (N, C, T) or (N, T), got {array.dtype} {array.shape}")
    return np.ascontiguousarray(array, dtype=np.float32)
