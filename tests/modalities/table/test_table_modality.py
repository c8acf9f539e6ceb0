"""The table modality behind the seam: its sources, input spec, view recipes and view maker, the
raw-input baseline, and new rows encoded with a trained encoder's fit."""

from __future__ import annotations

import csv

import pytest
import torch

from selfsup.data.sources import describe_sources, load_dataset
from selfsup.errors import UsageError
from selfsup.methods import METHODS
from selfsup.modalities import MODALITIES, modality_of
from selfsup.modalities.base import ViewPlan
from selfsup.modalities.table import MODALITY, ViewConfig, io, ops, raw_onehot, sources
from selfsup.modalities.table.schema import column_layout


@pytest.fixture(scope="module")
def cancer():
    return load_dataset("breast-cancer")


def write_csv(path, raw: io.RawTable, rows) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(raw.names)
        for i in rows:
            w.writerow(["" if c[i] is None else str(c[i]) for c in raw.columns])


def test_the_modality_is_discovered_with_its_sources():
    assert MODALITIES["table"] is MODALITY
    assert modality_of("adult") is MODALITY and modality_of("table:/x.csv") is MODALITY
    listed = {e["name"] for e in describe_sources()}
    assert {"adult", "california", "letter", "breast-cancer", "table:PATH"} <= listed


def test_a_source_returns_a_table_dataset_with_its_fit(cancer):
    assert cancer.modality == "table" and cancer.task == "classification" and cancer.val is not None
    spec = MODALITY.input_spec(cancer)
    assert [c["name"] for c in spec["columns"]] == [c["name"] for c in cancer.meta["columns"]]
    assert all(c["kind"] == "numeric" and c["std"] > 0 for c in spec["columns"])
    assert spec["sha256"] == cancer.meta["sha256"] and spec["split"]["seed"] == 0
    assert "missing" not in spec["columns"][0]  # per-split counts are not part of the fit


def test_unknown_options_and_a_foreign_target_are_one_line_errors(tmp_path):
    with pytest.raises(UsageError, match="unknown data option"):
        load_dataset("breast-cancer", options={"colour": "red"})
    with pytest.raises(UsageError, match="its target and task are its own"):
        load_dataset("breast-cancer", options={"target": "mean radius"})
    assert load_dataset("breast-cancer", options={"target": "diagnosis"}).task == "classification"


@pytest.mark.parametrize("name", ["scarf", "simclr", "byol", "vicreg"])
def test_pairs_are_the_clean_row_and_its_scarf_corruption(name, cancer):
    cls = METHODS[name]
    views = MODALITY.default_views(cls.view_plan(cls.Args()), None)
    assert views == [ViewConfig(), ViewConfig("scarf", 0.6)]
    spec = MODALITY.input_spec(cancer)
    x = cancer.test[:64]
    clean, corrupted = MODALITY.views(views, spec, cancer)(x, torch.Generator().manual_seed(0))
    assert torch.equal(clean, x)
    changed_or_chosen = ops.corrupted_count(0.6, x.shape[1])
    assert ((corrupted != x).sum(1) <= changed_or_chosen).all() and (corrupted != x).sum() > 0.9 * 64 * 18
    # Every corrupted value is the same column's value in some training row (the bank).
    bank = cancer.train
    for j in range(x.shape[1]):
        moved = corrupted[:, j][corrupted[:, j] != x[:, j]]
        assert torch.isin(moved, bank[:, j]).all()


def test_vime_dae_subtab_and_masked_plans():
    assert MODALITY.default_views(ViewPlan("asymmetric_pair", "vime", options={"p_m": 0.25}), None)[1] == ViewConfig(
        "swap", 0.25
    )
    assert MODALITY.default_views(ViewPlan("asymmetric_pair", "dae"), None)[1] == ViewConfig("swap", 0.15)
    assert MODALITY.default_views(ViewPlan("masked", "tjepa"), None) == [ViewConfig()]
    subtab = MODALITY.default_views(ViewPlan("multicrop", "subtab", n_local=3, options={"noise": "zero"}), None)
    assert subtab == [ViewConfig()] + [ViewConfig("dropout", 0.3)] * 4
    # Multi-crop means SubTab's subsets: DINO and SwAV do not fit tables.
    assert not MODALITY.supports(ViewPlan("multicrop", "dino", n_local=8))
    with pytest.raises(UsageError, match="no multicrop views"):
        MODALITY.default_views(ViewPlan("multicrop", "swav", n_local=2), None)
    with pytest.raises(UsageError, match="corruption"):
        ViewConfig("blur")


def test_sharded_views_are_the_global_batchs_rows(cancer):
    spec = MODALITY.input_spec(cancer)
    maker = MODALITY.views([ViewConfig(), ViewConfig("scarf", 0.6), ViewConfig("swap", 0.3)], spec, cancer)
    x = cancer.train[:32]
    whole = maker(x, torch.Generator().manual_seed(3))
    for rank in (0, 1):
        part = maker(x[rank::2], torch.Generator().manual_seed(3), (rank, 2))
        for v, p in zip(whole, part):
            assert torch.equal(v[rank::2], p)


def test_raw_features_are_scaled_numbers_and_one_hot_categories(adult):
    spec = MODALITY.input_spec(adult)
    numeric, categorical, cards = column_layout(spec)
    raw = raw_onehot(adult.test[:100], spec)
    assert raw.shape == (100, len(numeric) + sum(cards))
    assert torch.equal(raw[:, : len(numeric)], adult.test[:100, numeric])
    assert torch.equal(raw[:, len(numeric) :].sum(1), torch.full((100,), float(len(categorical))))
    assert torch.equal(MODALITY.raw_features(adult.test[:100], spec), raw)


def test_new_rows_are_encoded_with_the_training_fit(tmp_path, cancer):
    """A file that is not the training table: every row, in file order, with the training scalers."""
    raw = sources.read_named(sources.TABLES["breast-cancer"], sources.find(sources.TABLES["breast-cancer"]))
    rows = [5, 1, 400, 2]
    write_csv(tmp_path / "new.csv", raw, rows)
    spec = MODALITY.input_spec(cancer)
    new = load_dataset(f"table:{tmp_path / 'new.csv'}", input_spec=spec)
    assert new.test is None and len(new.train) == 4 and new.train_labels is None
    col = spec["columns"][0]
    expected = (torch.tensor([float(raw.columns[0][i]) for i in rows]) - col["mean"]) / col["std"]
    assert torch.allclose(new.train[:, 0], expected.float())
    MODALITY.check_input(new, spec)
    # Without the spec the same four rows are fitted on themselves: other numbers.
    alone = load_dataset(f"table:{tmp_path / 'new.csv'}", options={"split": "all"})
    assert not torch.allclose(alone.train[:, 0], new.train[:, 0])


def test_the_training_file_gets_its_training_split_back(tmp_path):
    raw = sources.read_named(sources.TABLES["breast-cancer"], sources.find(sources.TABLES["breast-cancer"]))
    write_csv(tmp_path / "cancer.csv", raw, range(raw.n_rows))
    spec_path = f"table:{tmp_path / 'cancer.csv'}"
    trained = load_dataset(spec_path, options={"target": "diagnosis", "seed": 4})
    spec = MODALITY.input_spec(trained)
    again = load_dataset(spec_path, input_spec=spec)  # what eval and embed do: no options
    assert torch.equal(again.train, trained.train) and torch.equal(again.test, trained.test)
    assert torch.equal(again.test_labels, trained.test_labels)


def test_an_encoder_needs_its_own_columns(tmp_path, cancer):
    wine = load_dataset("wine")
    with pytest.raises(UsageError, match="lacks the column"):
        load_dataset("wine", input_spec=MODALITY.input_spec(cancer))
    with pytest.raises(UsageError, match="not encoded as the encoder's table"):
        MODALITY.check_input(wine, MODALITY.input_spec(cancer))
