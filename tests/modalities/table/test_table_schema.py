"""Typing, splitting, imputing and scaling real tables, fitted on the training split only."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from selfsup.modalities.table import io, schema, sources
from selfsup.modalities.table.schema import MISSING, UNKNOWN, decode, prepare, split_rows


def rows_of(data, raw, split: str) -> np.ndarray:
    """The raw row indices of a split, recovered by re-running the split (prepare sorts them)."""
    sizes = data.meta["split"]
    strata = (
        schema.category_text(raw.column(data.meta["target"]["name"]))
        if data.meta["target"]["task"] == "classification"
        else None
    )
    idx = split_rows(raw.n_rows, sizes["seed"], sizes["fractions"], strata)
    return idx[schema.SPLITS.index(split)]


@pytest.mark.slow
def test_split_is_seeded_stratified_and_70_10_20(adult, adult_raw):
    sizes = adult.meta["split"]["sizes"]
    assert sum(sizes.values()) == 48842
    assert [round(sizes[s] / 48842, 2) for s in schema.SPLITS] == [0.7, 0.1, 0.2]
    rich = (adult.train_labels == 1).float().mean()
    for labels in (adult.val_labels, adult.test_labels):
        assert abs((labels == 1).float().mean() - rich) < 0.002  # stratified: same share of >50K
    again = prepare(adult_raw, "income", seed=0)
    other = prepare(adult_raw, "income", seed=1)
    assert torch.equal(again.train, adult.train) and not torch.equal(other.train, adult.train)


@pytest.mark.slow
def test_original_adult_split_is_uci_train_and_test(load_named):
    data = load_named("adult", split="original")
    sizes = data.meta["split"]["sizes"]
    assert sizes["test"] == 16281 and sizes["train"] + sizes["val"] == 32561
    assert data.meta["split"]["method"] == "original"
    assert data.test[0, 0] * data.meta["columns"][0]["std"] + data.meta["columns"][0]["mean"] == pytest.approx(25)


def test_scalers_never_see_validation_or_test_rows(california, california_raw):
    train_rows = rows_of(california, california_raw, "train")
    medinc = california_raw.column("MedInc")
    col = california.meta["columns"][0]
    assert col["mean"] == pytest.approx(medinc[train_rows].mean(), rel=1e-12)
    assert col["std"] == pytest.approx(medinc[train_rows].std(), rel=1e-12)
    assert abs(col["mean"] - medinc.mean()) > 1e-4  # a scaler fitted on every row would give another number
    # Blow up every validation and test value: nothing about the training side may move.
    held_out = np.ones(california_raw.n_rows, bool)
    held_out[train_rows] = False
    poisoned = copy.copy(california_raw)
    poisoned.columns = [np.where(held_out, c * 1000 + 7, c) for c in california_raw.columns[:-1]] + [
        california_raw.columns[-1]
    ]
    again = prepare(poisoned, "MedHouseVal", seed=0)
    assert torch.equal(again.train, california.train)
    assert [c["mean"] for c in again.meta["columns"]] == [c["mean"] for c in california.meta["columns"]]
    assert again.meta["target"] == california.meta["target"]
    assert not torch.allclose(again.test, california.test)


def test_vocabularies_never_see_validation_or_test_rows(adult, adult_raw):
    test_rows = rows_of(adult, adult_raw, "test")
    country = adult_raw.column("native-country").copy()
    renamed = test_rows[:37]
    country[renamed] = "Atlantis"  # a country only test rows hold
    raw = copy.copy(adult_raw)
    raw.columns = [country if n == "native-country" else c for n, c in zip(adult_raw.names, adult_raw.columns)]
    data = prepare(raw, "income", seed=0)
    j = adult_raw.names.index("native-country")
    col = data.meta["columns"][j]
    assert col["categories"] == adult.meta["columns"][j]["categories"] and "Atlantis" not in col["categories"]
    assert col["unknown"] == {"val": 0, "test": 37}
    assert (data.test[:, j] == col["categories"].index(UNKNOWN)).sum() == 37
    assert torch.equal(data.train, adult.train)


def test_categorical_codes_round_trip_to_categories(adult, adult_raw):
    train_rows = rows_of(adult, adult_raw, "train")
    for j, col in enumerate(adult.meta["columns"]):
        if col["kind"] != "categorical":
            continue
        raw = adult_raw.column(col["name"])[train_rows]
        expected = [MISSING if v == "?" else v for v in raw]
        assert decode(adult.meta, col["name"], adult.train[:, j]) == expected
        codes = adult.train[:, j]
        assert codes.max() < len(col["categories"]) and torch.equal(codes, codes.round())


def test_missing_values_are_imputed_and_reported(mlbench):
    path = mlbench("PimaIndiansDiabetes2.rda")
    raw = io.read_table(path)
    data = sources.load_table(f"table:{path}", target="diabetes")
    train_rows = rows_of(data, raw, "train")
    for j, col in enumerate(data.meta["columns"]):
        values = raw.column(col["name"])
        missing = np.isnan(values)
        assert sum(col["missing"].values()) == missing.sum()
        assert col["missing"]["train"] == missing[train_rows].sum()
        assert col["mean"] == pytest.approx(np.nanmean(values[train_rows]))
        imputed = data.train[torch.from_numpy(missing[train_rows]), j]
        assert torch.all(imputed.abs() < 1e-6)  # the training mean, standardised, is 0
    assert data.meta["columns"][4]["name"] == "insulin" and sum(data.meta["columns"][4]["missing"].values()) == 374
    assert torch.isfinite(data.train).all() and torch.isfinite(data.test).all()


def test_adult_question_marks_become_a_missing_category(adult):
    col = next(c for c in adult.meta["columns"] if c["name"] == "workclass")
    assert col["categories"][-2:] == [MISSING, UNKNOWN] and sum(col["missing"].values()) == 2799


def test_regression_targets_stay_in_original_units(california, california_raw):
    train_rows = rows_of(california, california_raw, "train")
    y = california_raw.column("MedHouseVal")
    np.testing.assert_array_equal(california.train_labels.numpy(), y[train_rows].astype(np.float32))
    assert california.meta["target"]["mean"] == pytest.approx(y[train_rows].mean())
    assert california.meta["target"]["std"] == pytest.approx(y[train_rows].std())
    assert california.classes is None and california.train_labels.dtype == torch.float32


@pytest.mark.slow
def test_type_override_and_minmax_scaling(adult_raw):
    data = prepare(adult_raw, "income", types={"educational-num": "categorical"}, scaling="minmax")
    j = adult_raw.names.index("educational-num")
    assert data.meta["columns"][j]["categories"] == [str(k) for k in range(1, 17)] + [UNKNOWN]
    age = data.meta["columns"][0]
    assert data.train[:, 0].min() == 0 and data.train[:, 0].max() == 1 and "min" in age
    assert schema.neutral_values(data.meta)[0] == pytest.approx((age["mean"] - age["min"]) / (age["max"] - age["min"]))


def test_encoded_output_and_meta(adult):
    import json

    assert adult.train.dtype == torch.float32 and adult.train.shape[1] == 14
    assert adult.meta["n_features"] == 14 and [c["name"] for c in adult.meta["columns"]][0] == "age"
    assert "income" not in [c["name"] for c in adult.meta["columns"]]
    assert adult.meta["sha256"] == sources.TABLES["adult"].files[0][1]
    json.dumps(adult.meta)  # JSON-ready
    fields = adult.fields()
    assert (
        set(fields)
        >= {
            "name",
            "train",
            "train_labels",
            "test",
            "test_labels",
            "classes",
            "location",
            "skipped",
            "modality",
            "meta",
            "val",
            "val_labels",
        }
        and fields["modality"] == "table"
    )
    numeric, categorical, cards = schema.column_layout(adult.meta)
    assert len(numeric) == 6 and len(categorical) == 8 and cards[0] == 10


@pytest.mark.slow
def test_task_is_inferred_from_the_target(adult_raw, california_raw):
    assert prepare(adult_raw, "income").meta["target"]["task"] == "classification"
    assert prepare(california_raw, "MedHouseVal").meta["target"]["task"] == "regression"
    # A numeric column with few integer values is a class label: Adult's educational-num as target.
    data = prepare(adult_raw, "educational-num")
    assert data.meta["target"]["task"] == "classification" and data.classes[:3] == ["1", "2", "3"]
