"""Series from the command line: every series method trains, evaluates, embeds and reports end to end on
ItalyPowerDemand (slow), and a user's broken files are one-line errors with exit status 2 (fast)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from _series_archives import package_file, require

from cli_helpers import run_cli

ARGS = {  # each method with the backbone it needs, and narrow heads
    "ts2vec": [],
    "tstcc": ["--set", "model.backbone=tstcc-cnn"],
    "tfc": ["--set", "model.backbone=tstcc-cnn", "--set", "method_args.proj_hidden=32"],
    "frameproj": ["--set", "model.backbone=resnet1d"],
    "simclr": ["--set", "method_args.proj_hidden=64"],
    "byol": ["--set", "method_args.proj_hidden=64", "--set", "method_args.pred_hidden=64"],
    "vicreg": ["--set", "method_args.proj_hidden=64", "--set", "method_args.proj_dim=64"],
}


def one_line_error(capsys, *argv) -> str:
    code, _, err = run_cli(capsys, *argv)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.slow
@pytest.mark.parametrize("method", list(ARGS))
def test_every_series_method_end_to_end_from_the_cli(capsys, tmp_path, method):
    require("aeon")
    run = tmp_path / method
    code, out, err = run_cli(capsys, "train", "series-smoke", "--method", method, *ARGS[method], "--out", run)
    assert code == 0, err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["finished"] and summary["modality"] == "series" and summary["knn_top1"] is not None
    diagnostics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any(r["event"] == "diagnostics" and "rankme" in r for r in diagnostics)  # RankMe on series runs
    code, out, err = run_cli(capsys, "eval", run, "--protocol", "knn,linear,lowshot,svm,nn", "--json")
    assert code == 0, err
    result = json.loads(out)
    for key in ("svm_top1", "svm_top1_raw", "nn_top1", "nn_top1_raw", "nn_dtw_top1_raw", "lowshot_10pct_top1"):
        assert 0.0 <= result[key] <= 1.0, key
    code, _, err = run_cli(
        capsys, "embed", run, "--data", "ucr:ItalyPowerDemand", "--split", "test", "--out", run / "e.npy"
    )
    assert code == 0, err
    embedding = np.load(run / "e.npy")
    assert embedding.shape[0] == 1029 and np.isfinite(embedding).all()
    if method == "ts2vec":
        code, _, err = run_cli(capsys, "report", run, "--out", run / "report.html")
        assert code == 0, err
        page = (run / "report.html").read_text()
        assert "alt='views'" in page and "alt='map'" in page  # the series drawn as lines, the embedding map
        err = one_line_error(capsys, "eval", run, "--data", "ucr:BasicMotions")
        assert "6-channel series but the encoder takes 1 channels" in err


def test_eval_reads_a_tstcc_encoder_out_by_another_pool(capsys, tmp_path):
    import torch

    from selfsup.encoder import load_encoder
    from selfsup.modalities.series.sources import load_ucr

    require("aeon")
    run, plain = tmp_path / "tstcc", tmp_path / "ts2vec"
    one_epoch = ["--epochs", "1", "--set", "eval.diagnose_every=0"]
    code, _, err = run_cli(
        capsys,
        "train",
        "series-smoke",
        "--method",
        "tstcc",
        *ARGS["tstcc"],
        "--set",
        "model.pool=flatten",
        *one_epoch,
        "--out",
        run,
    )
    assert code == 0, err
    results = {}
    for pool in (None, "max", "mean"):
        code, out, err = run_cli(
            capsys, "eval", run, "--protocol", "knn", "--json", *(["--pool", pool] if pool else [])
        )
        assert code == 0, err
        results[pool] = json.loads(out)
    encoder = load_encoder(run)
    assert results[None]["data"]["feature_dim"] == encoder.feature_dim == 128 * encoder.features_len
    assert results["max"]["data"]["feature_dim"] == results["mean"]["data"]["feature_dim"] == 128
    assert results["max"]["pool"] == "max" and "pool" not in results[None]
    # each readout is kept apart in the summary; the trained one is not overwritten
    kept = json.loads((run / "summary.json").read_text())["eval"]
    assert {"ucr:ItalyPowerDemand", "ucr:ItalyPowerDemand (pool=max)", "ucr:ItalyPowerDemand (pool=mean)"} <= set(kept)
    assert kept["ucr:ItalyPowerDemand"]["knn_top1"] == results[None]["knn_top1"]
    # the same feature map, max-pooled over time: the weights are the trained ones
    x = load_ucr("ItalyPowerDemand").test[:8]
    h, _ = encoder.feature_map(x)
    encoder.set_pool("max")
    torch.testing.assert_close(encoder(x), h.amax(dim=-1))
    code, _, err = run_cli(capsys, "train", "series-smoke", *one_epoch, "--out", plain)
    assert code == 0, err
    err = one_line_error(capsys, "eval", plain, "--pool", "max")
    assert "--pool applies to encoders with a pooling choice" in err and "ts2vec-encoder" in err


def _ts_file(tmp_path, name: str, edit) -> str:
    require("aeon")
    text = package_file("aeon", "datasets/data/GunPoint/GunPoint_TRAIN.ts").read_text()
    path = tmp_path / f"{name}_TRAIN.ts"
    path.write_text(edit(text))
    return f"ts:{path}"


def test_a_malformed_ts_file_is_a_one_line_error(capsys, tmp_path):
    spec = _ts_file(tmp_path, "broken", lambda t: t.replace("@data", "@dta", 1))
    err = one_line_error(capsys, "train", "--method", "ts2vec", "--data", spec, "--epochs", "1")
    assert "broken_TRAIN.ts" in err


def test_a_missing_value_where_the_header_forbids_them_is_a_one_line_error(capsys, tmp_path):
    spec = _ts_file(tmp_path, "gap", lambda t: t.replace("-0.6478854,", "?,", 1))  # GunPoint: '@missing false'
    err = one_line_error(capsys, "train", "--method", "ts2vec", "--data", spec, "--epochs", "1")
    assert "missing value" in err and "@missing false" in err


def test_mismatched_train_and_test_channels_are_a_one_line_error(capsys, tmp_path):
    require("aeon")
    shutil.copy(package_file("aeon", "datasets/data/GunPoint/GunPoint_TRAIN.ts"), tmp_path / "mixed_TRAIN.ts")
    shutil.copy(package_file("aeon", "datasets/data/BasicMotions/BasicMotions_TEST.ts"), tmp_path / "mixed_TEST.ts")
    err = one_line_error(capsys, "train", "--method", "ts2vec", "--data", f"ts:{tmp_path / 'mixed_TRAIN.ts'}")
    assert "6 channel(s) where the train split" in err
