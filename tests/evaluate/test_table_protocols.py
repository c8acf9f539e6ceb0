"""The table-minded protocols on real rows: ridge regression with RMSE in two units, T-JEPA's
downstream MLP (validation taken from the training split, several seeds), HistGradientBoosting,
and the classification protocols (kNN, linear, low-shot) on a table's features."""

from __future__ import annotations

import math
import os

import pytest
import torch

from selfsup.config import build_config
from selfsup.data.sources import load_dataset
from selfsup.errors import UsageError
from selfsup.evaluate.protocols import PROTOCOLS, EvalContext, result_rows
from selfsup.evaluate.protocols._heldout import held_out
from selfsup.evaluate.protocols.mlp import SEARCH_GRID, MLPSettings, mlp_protocol
from selfsup.evaluate.protocols.ridge import fit_ridge, ridge_probe
from selfsup.modalities.table import MODALITY


def table(name):
    try:
        return load_dataset(name)
    except UsageError as e:  # Parquet needs pyarrow and the wheel's file (docs/data/tables.md)
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(str(e))


def context(data, features, protocols_settings=None):
    spec = MODALITY.input_spec(data)
    raw = {s: MODALITY.raw_features(getattr(data, s), spec) for s in ("train", "test")}
    labels = {"train": data.train_labels, "test": data.test_labels}
    cfg = build_config("scarf-breast-cancer")
    return EvalContext(features, raw, labels, data.num_classes, 0, cfg, protocols_settings or {})


def test_ridge_matches_the_normal_equations_and_reports_both_units():
    data = table("diabetes")  # 442 rows, regression, bundled with scikit-learn
    spec = MODALITY.input_spec(data)
    x = {s: MODALITY.raw_features(getattr(data, s), spec) for s in ("train", "test")}
    res = ridge_probe(x["train"], data.train_labels, x["test"], data.test_labels)
    std = data.train_labels.double().std(unbiased=False)
    assert math.isclose(res["rmse_scaled"], res["rmse"] / float(std), rel_tol=1e-9)
    assert res["rmse_scaled"] < 0.85  # ten features explain part of the progression
    # The closed form: (X^T X + alpha I) w = X^T (y - mean y) on standardised features.
    mean, sd = x["train"].mean(0), x["train"].std(0, unbiased=False)
    xs = ((x["train"] - mean) / sd).double()
    w, b = fit_ridge(xs, data.train_labels, res["alpha"])
    grad = xs.T @ (xs @ w + b - data.train_labels.double()) + res["alpha"] * w
    assert grad.abs().max() < 1e-6
    pred = ((x["test"] - mean) / sd).double() @ w + b
    assert math.isclose(res["rmse"], float((pred - data.test_labels.double()).pow(2).mean().sqrt()), rel_tol=1e-6)


@pytest.mark.slow
def test_the_mlp_stops_on_a_validation_split_of_the_training_rows():
    data = table("breast-cancer")
    fit, val = held_out(data.train_labels, seed=3)
    assert len(set(fit.tolist()) & set(val.tolist())) == 0 and len(fit) + len(val) == len(data.train)
    assert abs(len(val) - 0.1 * len(data.train)) <= 2
    spec = MODALITY.input_spec(data)
    x = {s: MODALITY.raw_features(getattr(data, s), spec) for s in ("train", "test")}
    settings = MLPSettings(hidden=32, depth=2, epochs=40, patience=10, seeds=2, batch_size=64, lr=1e-3)
    res = mlp_protocol(x["train"], data.train_labels, x["test"], data.test_labels, 2, settings)
    assert len(res["scores"]) == 2 and res["mean"] > 0.9
    assert all(1 <= r["best_epoch"] <= r["epochs_run"] <= 40 for r in res["runs"])
    assert res["std"] == pytest.approx(float(torch.tensor(res["scores"]).std(unbiased=False)))


@pytest.mark.slow
def test_the_mlp_search_picks_per_input_on_the_validation_split_and_never_reads_the_test_split():
    data = table("breast-cancer")
    spec = MODALITY.input_spec(data)
    x = {s: MODALITY.raw_features(getattr(data, s), spec) for s in ("train", "test")}
    settings = MLPSettings(depth=2, epochs=15, patience=5, seeds=2, batch_size=64, search=True)
    res = mlp_protocol(x["train"], data.train_labels, x["test"], data.test_labels, 2, settings)
    grid = [(t["lr"], t["dropout"], t["hidden"]) for t in res["search"]]
    assert len(grid) == len(set(grid)) == math.prod(len(v) for v in SEARCH_GRID.values())
    best = max(res["search"], key=lambda t: (t["val_score"], t["val_tiebreak"]))
    assert res["chosen"] == {k: best[k] for k in SEARCH_GRID}
    # The seeds then train with the chosen settings, exactly as if they had been given.
    fixed = MLPSettings(depth=2, epochs=15, patience=5, seeds=2, batch_size=64, **res["chosen"])
    assert mlp_protocol(x["train"], data.train_labels, x["test"], data.test_labels, 2, fixed)["scores"] == res["scores"]
    # Test labels turned upside down change the test scores, never the search or the choice.
    flipped = mlp_protocol(x["train"], data.train_labels, x["test"], 1 - data.test_labels, 2, settings)
    assert flipped["search"] == res["search"] and flipped["chosen"] == res["chosen"]
    assert flipped["scores"] == pytest.approx([1 - s for s in res["scores"]])


@pytest.mark.slow
def test_classification_protocols_run_on_a_tables_features():
    data = table("breast-cancer")
    spec = MODALITY.input_spec(data)
    # Features of a table encoder stand-in: a fixed random projection of the raw rows (the protocols
    # read features; a trained encoder is the end-to-end tests' business).
    proj = torch.randn(30, 16, generator=torch.Generator().manual_seed(0))
    feats = {s: MODALITY.raw_features(getattr(data, s), spec) @ proj for s in ("train", "test")}
    ctx = context(
        data,
        feats,
        {
            "knn_k": 10,
            "lowshot_fractions": (0.1,),
            "lowshot_seeds": (0, 1),
            "mlp": {"hidden": 16, "depth": 2, "epochs": 30, "seeds": 2, "batch_size": 64, "lr": 1e-3},
        },
    )
    result = {}
    for name in ("knn", "linear", "lowshot", "mlp", "hgb"):
        assert data.task in PROTOCOLS[name].tasks
        result.update(PROTOCOLS[name].run(ctx))
    for key in ("knn_top1", "linear_top1", "lowshot_10pct_top1", "mlp_top1", "hgb_top1"):
        assert 0.8 < result[key] <= 1 and 0.8 < result[f"{key}_raw"] <= 1, key
    shown = {r.protocol for r in result_rows(result)}
    assert {"HistGradientBoosting", "MLP (T-JEPA's protocol), 2 seeds", "low-shot 10%: 40 labels"} <= shown


@pytest.mark.slow
def test_regression_protocols_report_rmse_beside_raw():
    data = table("diabetes")
    spec = MODALITY.input_spec(data)
    feats = {s: MODALITY.raw_features(getattr(data, s), spec) for s in ("train", "test")}
    ctx = context(data, feats, {"mlp": {"hidden": 16, "depth": 2, "epochs": 20, "seeds": 2, "batch_size": 64}})
    result = {}
    for name in ("ridge", "mlp", "hgb"):
        assert "regression" in PROTOCOLS[name].tasks
        result.update(PROTOCOLS[name].run(ctx))
    # The same features as the raw input: the same numbers beside each other.
    assert result["ridge_rmse"] == result["ridge_rmse_raw"] and result["hgb_rmse"] == result["hgb_rmse_raw"]
    assert result["mlp_rmse_scaled"] == pytest.approx(result["mlp_rmse"] / float(data.train_labels.std(unbiased=False)))
    assert all(0.4 < result[k] < 1.2 for k in ("ridge_rmse_scaled", "mlp_rmse_scaled", "hgb_rmse_scaled"))
    measures = {(r.protocol, r.measure) for r in result_rows(result)}
    assert ("ridge regression", "test RMSE / target std") in measures
    assert not {"knn", "linear", "lowshot"} & {n for n, p in PROTOCOLS.items() if "regression" in p.tasks}
