"""From raw columns to model-ready tensors without leakage: typing, target, split, imputation, scaling.

The rules, in the order :func:`prepare` applies them:

* **Missing values.** ``None``, NaN, infinities and the strings in :data:`MISSING_TOKENS` (``""``,
  ``"?"`` as in UCI's Adult, ``"NA"``, ``"NaN"``, ...) are missing.
* **Column kinds.** A column is *numeric* when every non-missing value parses as a finite number,
  else *categorical*. A numeric column stays numeric however few distinct values it has (Adult's
  ``educational-num`` with 16 values is numeric, as in the T-JEPA repository); say
  ``types={"col": "categorical"}`` to treat it as categories. ``types={"col": "numeric"}`` on a
  column with text in it is a one-line DataError naming a value that does not parse.
* **Target.** Chosen by name, for evaluation only (never an input column). Its task is
  ``classification`` when its values are not all numbers, or are integers with at most
  :data:`MAX_INFERRED_CLASSES` distinct values; else ``regression``; ``task=`` overrides. Rows whose
  target is missing are dropped and counted.
* **Split.** When the file marks a test split it is kept and the validation rows come from the
  rest; otherwise a seeded train/validation/test split with ``fractions`` (default 70/10/20, as
  SCARF's paper, Bahri et al. 2022, arXiv:2106.15147, Sec. 4), stratified by class for
  classification (each class split in the same proportions, rounded half up, so every class with
  a row keeps one in train). Indices within a split keep the file's row order.
* **Fitted on the training split only.** Numeric columns: the training mean imputes missing values
  (counts reported per split), then ``scaling="standard"`` (train mean / population std; a constant
  column gets std 1) or ``"minmax"`` (train min / max, the T-JEPA repository's scaler, but fitted on
  train rather than on every row). Categorical columns: the vocabulary is the training values,
  sorted (numerically when all are numbers), then ``<missing>`` when training rows lack values,
  then ``<unknown>`` always last, for values that only validation or test rows hold (counted).
  Regression targets stay in their original units; their training mean and std are in ``meta`` so
  an RMSE can be reported in both units.

The output keeps the file's column order minus the target: float32 ``(N, F)``, categorical columns
holding their integer codes (exact in float32). ``meta`` is JSON-ready and is what backbones and view
ops read (:func:`column_layout`, :func:`numeric_columns`, :func:`neutral_values`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ...data.base import Dataset
from ...errors import DataError, UsageError
from .io import RawTable

KINDS = ("numeric", "categorical")
TASKS = ("classification", "regression")
SCALINGS = ("standard", "minmax")
MISSING_TOKENS = frozenset({"", "?", "NA", "N/A", "NaN", "nan", "NAN", "null", "NULL", "None", "none"})
MISSING = "<missing>"
UNKNOWN = "<unknown>"
MAX_INFERRED_CLASSES = 32
DEFAULT_FRACTIONS = (0.7, 0.1, 0.2)
SPLITS = ("train", "val", "test")


@dataclass(repr=False)
class TableSplits(Dataset):
    """A :class:`selfsup.data.base.Dataset` of a table (``modality="table"``), as its sources build it."""

    modality: str = "table"

    def __repr__(self) -> str:
        sizes = ", ".join(
            f"{s} {len(t)}" for s, t in (("train", self.train), ("val", self.val), ("test", self.test)) if t is not None
        )
        task = (self.meta.get("target") or {}).get("task", "no target")
        return f"TableSplits({self.name!r}: {sizes}, {self.train.shape[1]} features, {task})"


# ---------------------------------------------------------------------------------- values and kinds
def missing_mask(column: np.ndarray, tokens: frozenset[str] = MISSING_TOKENS) -> np.ndarray:
    """True where a raw value is missing (None, NaN, +-inf, or one of ``tokens``)."""
    if column.dtype.kind == "f":
        return ~np.isfinite(column)
    return np.fromiter(
        (v is None or v in tokens or (isinstance(v, float) and not math.isfinite(v)) for v in column),
        dtype=bool,
        count=len(column),
    )


def as_numbers(column: np.ndarray, missing: np.ndarray) -> np.ndarray | None:
    """float64 values (NaN where missing), or None when a non-missing value is not a finite number."""
    if column.dtype.kind == "f":
        return np.where(missing, np.nan, column)
    filled = column.copy()
    filled[missing] = "nan"
    try:
        values = filled.astype(np.float64)
    except (ValueError, TypeError):
        return None
    if not np.isfinite(values[~missing]).all():
        return None
    return values


def first_non_number(column: np.ndarray, missing: np.ndarray) -> str:
    """A value of ``column`` that does not parse as a finite number (for error messages)."""
    for v, m in zip(column, missing):
        if m:
            continue
        try:
            if math.isfinite(float(v)):
                continue
        except (ValueError, TypeError):
            pass
        return str(v)
    return "?"


def category_text(values: np.ndarray) -> np.ndarray:
    """Raw values as category strings: numbers without a trailing ``.0`` (3.0 -> "3"), text as is."""
    if values.dtype.kind == "f":
        return np.array([str(int(v)) if float(v).is_integer() else repr(float(v)) for v in values], dtype=object)
    return values


def sorted_categories(values) -> list[str]:
    """Distinct category strings, in numeric order when they are all numbers, else in text order."""
    distinct = set(values)
    try:
        return sorted(distinct, key=float)
    except ValueError:
        return sorted(distinct)


# ------------------------------------------------------------------------------------------- split
def check_fractions(fractions) -> tuple[float, float, float]:
    f = tuple(float(v) for v in fractions)
    if len(f) != 3 or min(f) < 0 or f[0] <= 0 or abs(sum(f) - 1) > 1e-6:
        raise UsageError(
            f"split fractions {fractions} must be three numbers train, val, test >= 0 summing "
            "to 1 with train > 0, e.g. 0.7,0.1,0.2"
        )
    return f


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def split_rows(
    n: int,
    seed: int,
    fractions=DEFAULT_FRACTIONS,
    strata: np.ndarray | None = None,
    test_rows: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices (train, val, test), each ascending. ``strata`` (one label per row) splits every
    stratum in the same proportions; ``test_rows`` (bool) fixes the test split, and the validation
    rows then come from the others at ``val / (train + val)``. Reproducible for a given seed."""
    f_train, f_val, f_test = check_fractions(fractions)
    rng = np.random.default_rng(seed)
    rows = np.arange(n)
    if test_rows is not None:
        test = rows[test_rows]
        pool = rows[~test_rows]
        f_val, f_test = f_val / (f_train + f_val), 0.0
    else:
        test, pool = rows[:0], rows
    groups = [pool] if strata is None else [pool[strata[pool] == s] for s in sorted_categories(strata[pool])]
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": [test]}
    for group in groups:
        order = rng.permutation(group)
        n_test = _round_half_up(len(order) * f_test)
        n_val = min(_round_half_up(len(order) * f_val), max(len(order) - n_test - 1, 0))
        parts["test"].append(order[:n_test])
        parts["val"].append(order[n_test : n_test + n_val])
        parts["train"].append(order[n_test + n_val :])
    return tuple(np.sort(np.concatenate(parts[s])).astype(np.int64) for s in SPLITS)


# --------------------------------------------------------------------------------------- prepare
def _column_kinds(
    raw: RawTable,
    features: list[int],
    missing: dict[int, np.ndarray],
    numbers: dict[int, np.ndarray],
    types: dict[str, str],
) -> dict[int, str]:
    kinds = {}
    for j in features:
        name = raw.names[j]
        asked = types.get(name)
        if asked == "numeric" and numbers.get(j) is None:
            raise DataError(
                f"{raw.path}: column {name!r} cannot be numeric: it holds "
                f"{first_non_number(raw.columns[j], missing[j])!r}; type it categorical or fix the value"
            )
        kinds[j] = asked or ("numeric" if numbers.get(j) is not None else "categorical")
    return kinds


def _check_request(raw: RawTable, target: str | None, types: dict, task: str | None, scaling: str) -> None:
    if raw.n_rows == 0 or not raw.names:
        raise DataError(f"{raw.path} has no rows; a table needs a header and at least one row")
    if target is not None and target not in raw.names:
        shown = ", ".join(raw.names[:20]) + (", ..." if len(raw.names) > 20 else "")
        raise DataError(f"{raw.path} has no column {target!r} to use as the target; its columns are: {shown}")
    for name, kind in types.items():
        if name not in raw.names:
            raise DataError(f"{raw.path} has no column {name!r} to type as {kind}; check the name in types")
        if kind not in KINDS:
            raise UsageError(f"column type {kind!r} for {name!r} is not one of: {', '.join(KINDS)}")
        if name == target:
            raise UsageError(f"{name!r} is the target; its kind follows from task= (classification or regression)")
    if task is not None and task not in TASKS:
        raise UsageError(f"task {task!r} is not one of: {', '.join(TASKS)}")
    if scaling not in SCALINGS:
        raise UsageError(f"scaling {scaling!r} is not one of: {', '.join(SCALINGS)}")
    if len(raw.names) < 2 and target is not None:
        raise DataError(f"{raw.path} has only the target column {target!r}; a table needs at least one feature")


def _target(raw: RawTable, target: str, task: str | None, tokens) -> tuple[str, np.ndarray, np.ndarray | None]:
    """(task, keep mask, numeric values or None) of the target column."""
    column = raw.column(target)
    missing = missing_mask(column, tokens)
    numbers = as_numbers(column, missing)
    if task is None:
        if numbers is None:
            task = "classification"
        else:
            present = numbers[~missing]
            integral = bool(np.all(present == np.round(present)))
            task = "classification" if integral and len(np.unique(present)) <= MAX_INFERRED_CLASSES else "regression"
    if task == "regression" and numbers is None:
        raise DataError(
            f"{raw.path}: target {target!r} cannot be a regression target: it holds "
            f"{first_non_number(column, missing)!r}; use task=classification"
        )
    if not (~missing).any():
        raise DataError(f"{raw.path}: target column {target!r} has no values")
    return task, ~missing, numbers


def prepare(
    raw: RawTable,
    target: str | None = None,
    types: dict[str, str] | None = None,
    task: str | None = None,
    seed: int = 0,
    fractions=DEFAULT_FRACTIONS,
    scaling: str = "standard",
    name: str | None = None,
    missing_values: frozenset[str] = MISSING_TOKENS,
    test_rows: np.ndarray | None = None,
    split_method: str | None = None,
    fitted: dict | None = None,
) -> TableSplits:
    """Type, split, impute, scale and encode ``raw`` (rules in the module docstring).

    ``test_rows`` (bool per row) overrides the file's own test split (a named source's original
    split); ``split_method`` names how the test rows were chosen, for ``meta``. ``fitted`` (a
    table's ``meta`` or an encoder's input spec: ``columns``, ``scaling``, ``target``) encodes
    with that fit instead of fitting on this table's training split: its columns in its order
    (others ignored), its kinds, statistics, vocabularies and classes, so that new rows reach a
    trained encoder exactly as its training rows did.
    """
    types = dict(types or {})
    if fitted is not None:
        scaling = fitted.get("scaling", scaling)
    _check_request(raw, target, types, task, scaling)
    fractions = check_fractions(fractions)
    keep = np.ones(raw.n_rows, dtype=bool)
    y_numbers = None
    if target is not None:
        task, keep, y_numbers = _target(raw, target, task, missing_values)
    rows = np.flatnonzero(keep)
    features = [j for j, n in enumerate(raw.names) if n != target]
    if fitted is not None:
        features = _fitted_features(raw, fitted, target)
        types = {c["name"]: c["kind"] for c in fitted["columns"]}
    missing = {j: missing_mask(raw.columns[j], missing_values)[rows] for j in features}
    numbers = {j: as_numbers(raw.columns[j][rows], missing[j]) for j in features}
    kinds = _column_kinds(raw, features, missing, numbers, types)

    given = raw.test_rows if test_rows is None else test_rows
    strata = None
    y_text = None
    if target is not None and task == "classification":
        y_col = raw.column(target)[rows]
        y_text = category_text(y_numbers[rows] if y_numbers is not None else y_col)
        strata = y_text
    split = split_rows(len(rows), seed, fractions, strata, None if given is None else np.asarray(given, bool)[rows])
    if len(split[0]) == 0:
        raise DataError(f"{raw.path}: {len(rows)} usable rows leave none for training; add rows")

    encoded = {s: np.empty((len(idx), len(features)), dtype=np.float32) for s, idx in zip(SPLITS, split)}
    columns_meta = []
    for out_j, j in enumerate(features):
        given_fit = fitted["columns"][out_j] if fitted is not None else None
        if kinds[j] == "numeric":
            info, cols = _numeric(numbers[j], missing[j], split, scaling, given_fit)
        else:
            info, cols = _categorical(category_text(raw.columns[j][rows]), missing[j], split, given_fit)
        for s in SPLITS:
            encoded[s][:, out_j] = cols[s]
        columns_meta.append({"name": raw.names[j], "kind": kinds[j], **info})

    fitted_target = (fitted or {}).get("target") or {}
    fit = fitted_target if fitted_target.get("name") == target and fitted_target.get("task") == task else None
    labels, target_meta, classes = _labels(raw, target, task, y_text, y_numbers, rows, split, fit)
    method = split_method or ("file" if given is not None else "seeded")
    meta = {
        "name": name or raw.path,
        "modality": "table",
        "file": raw.path,
        "sha256": raw.sha256,
        "rows": int(raw.n_rows),
        "dropped_rows": {"missing_target": int(raw.n_rows - len(rows))},
        "n_features": len(features),
        "columns": columns_meta,
        "target": target_meta,
        "scaling": scaling,
        "missing_values": sorted(missing_values),
        "split": {
            "method": method,
            "seed": int(seed),
            "fractions": list(fractions),
            "stratified": strata is not None,
            "sizes": {s: int(len(i)) for s, i in zip(SPLITS, split)},
        },
        "fit": "training split" if fitted is None else "given (a trained encoder's input spec)",
    }
    ignored = [n for j, n in enumerate(raw.names) if n != target and j not in features]
    if ignored:
        meta["ignored_columns"] = ignored
    tensors = {s: (torch.from_numpy(encoded[s]) if len(idx) else None) for s, idx in zip(SPLITS, split)}
    return TableSplits(
        name=name or raw.path,
        train=tensors["train"],
        train_labels=labels["train"],
        test=tensors["test"],
        test_labels=labels["test"] if tensors["test"] is not None else None,
        classes=classes,
        location=raw.path,
        meta=meta,
        val=tensors["val"],
        val_labels=labels["val"] if tensors["val"] is not None else None,
    )


def _per_split(mask: np.ndarray, split) -> dict[str, int]:
    return {s: int(mask[idx].sum()) for s, idx in zip(SPLITS, split)}


def _fitted_features(raw: RawTable, fitted: dict, target: str | None) -> list[int]:
    """Indices of ``fitted``'s columns in ``raw``, in the fitted order (a one-line error for a missing one)."""
    names = [c["name"] for c in fitted["columns"]]
    absent = [n for n in names if n not in raw.names or n == target]
    if absent:
        raise DataError(
            f"{raw.path} lacks the column(s) {absent[:5]} that the encoder was trained on; "
            f"it needs every one of: {', '.join(names[:20])}"
        )
    return [raw.names.index(n) for n in names]


def _numeric(
    values: np.ndarray, missing: np.ndarray, split, scaling: str, fit: dict | None = None
) -> tuple[dict, dict]:
    """Impute with the training mean and scale with training statistics only (or with ``fit``'s)."""
    train = values[split[0]][~missing[split[0]]]
    mean = float(train.mean()) if len(train) else 0.0
    if fit is not None:
        mean = fit["mean"]
    info = {"mean": mean}
    filled = np.where(missing, mean, values)
    if scaling == "standard":
        std = float(train.std()) if len(train) else 0.0
        scale = std if std > 0 else 1.0
        if fit is not None:
            scale = fit["std"]
        info["std"] = scale
        shift = mean
    else:
        lo, hi = (float(train.min()), float(train.max())) if len(train) else (0.0, 1.0)
        if fit is not None:
            lo, hi = fit["min"], fit["max"]
        scale = hi - lo if hi > lo else 1.0
        info.update({"min": lo, "max": hi})
        shift = lo
    info["missing"] = _per_split(missing, split)
    scaled = ((filled - shift) / scale).astype(np.float32)
    return info, {s: scaled[idx] for s, idx in zip(SPLITS, split)}


def _categorical(values: np.ndarray, missing: np.ndarray, split, fit: dict | None = None) -> tuple[dict, dict]:
    """Codes from the training vocabulary (or ``fit``'s); values only validation or test rows hold
    become ``<unknown>``, and so do missing values when the vocabulary has no ``<missing>``."""
    train_idx = split[0]
    if fit is not None:
        categories = list(fit["categories"])
    else:
        train_present = values[train_idx][~missing[train_idx]]
        categories = sorted_categories(train_present.tolist())
        if missing[train_idx].any():
            categories.append(MISSING)
        categories.append(UNKNOWN)
    code_of = {c: i for i, c in enumerate(categories)}
    unknown = code_of[UNKNOWN]
    missing_code = code_of.get(MISSING, unknown)
    codes = np.fromiter(
        (missing_code if m else code_of.get(v, unknown) for v, m in zip(values, missing)),
        dtype=np.int64,
        count=len(values),
    )
    unseen = (codes == unknown) & ~missing
    counted = SPLITS if fit is not None else SPLITS[1:]  # with a given fit, training rows can be unseen too
    info = {
        "categories": categories,
        "missing": _per_split(missing, split),
        "unknown": {s: int(unseen[idx].sum()) for s, idx in zip(SPLITS, split) if s in counted},
    }
    return info, {s: codes[idx].astype(np.float32) for s, idx in zip(SPLITS, split)}


def _labels(
    raw: RawTable, target: str | None, task: str | None, y_text, y_numbers, rows, split, fit: dict | None = None
):
    """Labels per split and the target's meta; ``fit`` (a fitted target's meta) gives the class
    list or the regression target's mean and std instead of the training split."""
    empty = {s: None for s in SPLITS}
    if target is None:
        return empty, None, None
    if task == "classification":
        given = fit is not None
        classes = list(fit["classes"]) if given else sorted_categories(y_text[split[0]].tolist())
        index = {c: i for i, c in enumerate(classes)}
        for s, idx in zip(SPLITS if given else SPLITS[1:], split if given else split[1:]):
            unseen = sorted(set(y_text[idx].tolist()) - set(classes))
            if unseen:
                if given:
                    raise DataError(
                        f"{raw.path}: the {s} split has class(es) {unseen[:5]} that the encoder's "
                        f"training table did not have (its classes: {classes[:10]})"
                    )
                raise DataError(
                    f"{raw.path}: the {s} split has class(es) {unseen[:5]} that no training row has; "
                    "use a seeded split or add training rows of that class"
                )
        labels = {s: torch.tensor([index[v] for v in y_text[idx]], dtype=torch.int64) for s, idx in zip(SPLITS, split)}
        return labels, {"name": target, "task": task, "classes": classes}, classes
    y = y_numbers[rows]
    train = y[split[0]]
    meta = {"name": target, "task": task, "mean": float(train.mean()), "std": float(train.std())}
    if fit is not None:
        meta.update(mean=fit["mean"], std=fit["std"])
    labels = {s: torch.from_numpy(y[idx].astype(np.float32)) for s, idx in zip(SPLITS, split)}
    return labels, meta, None


# ------------------------------------------------------------------------------------ reading meta
def column_layout(meta: dict) -> tuple[list[int], list[int], list[int]]:
    """(numeric column indices, categorical column indices, their cardinalities) of an encoded table."""
    numeric, categorical, cards = [], [], []
    for j, col in enumerate(meta["columns"]):
        if col["kind"] == "numeric":
            numeric.append(j)
        else:
            categorical.append(j)
            cards.append(len(col["categories"]))
    return numeric, categorical, cards


def numeric_columns(meta: dict) -> torch.Tensor:
    """(F,) bool: True for numeric columns (those Gaussian noise may touch)."""
    return torch.tensor([c["kind"] == "numeric" for c in meta["columns"]], dtype=torch.bool)


def neutral_values(meta: dict) -> torch.Tensor:
    """(F,) float32: the value that carries no information in each column, used to drop a feature:
    the scaled training mean for numeric columns (0 under standard scaling), ``<unknown>``'s code for
    categorical ones (so a dropped categorical feature still holds a code of its own column)."""
    values = []
    for col in meta["columns"]:
        if col["kind"] == "categorical":
            values.append(float(col["categories"].index(UNKNOWN)))
        elif "std" in col:
            values.append(0.0)
        else:
            span = col["max"] - col["min"]
            values.append((col["mean"] - col["min"]) / (span if span > 0 else 1.0))
    return torch.tensor(values, dtype=torch.float32)


def subset_meta(meta: dict, columns) -> dict:
    """``meta`` restricted to the given column indices (for an encoder that sees a column subset)."""
    return {**meta, "columns": [meta["columns"][int(j)] for j in columns], "n_features": len(columns)}


def decode(meta: dict, column: str | int, codes) -> list[str]:
    """Category names of a categorical column's codes (the inverse of the encoding)."""
    col = (
        meta["columns"][column]
        if isinstance(column, int)
        else next((c for c in meta["columns"] if c["name"] == column), None)
    )
    if col is None:
        raise UsageError(f"no column {column!r} in this table")
    if col["kind"] != "categorical":
        raise UsageError(f"column {col['name']!r} is numeric; only categorical columns have codes")
    categories = col["categories"]
    return [categories[int(c)] for c in torch.as_tensor(codes).reshape(-1).tolist()]
