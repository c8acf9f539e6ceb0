"""The command line: user errors are one line with exit status 2; the demo runs end to end."""

import json
import subprocess
import sys

import numpy as np
import pytest

from cli_helpers import run_cli


@pytest.mark.parametrize(
    "argv, match",
    [
        (["trian"], "unknown command 'trian'; choose one of: train"),
        (["train", "--method", "byl"], "unknown method 'byl'; choose one of: byol"),
        (["train", "--data", "fashion-mnst"], "unknown dataset 'fashion-mnst'; choose one of: fashion-mnist"),
        (["train", "--epoch", "3"], "unknown option --epoch; valid options for selfsup train: --epochs"),
        (["train", "byol-digits", "--set", "optim.lrr=2"], "unknown config key 'optim.lrr'; valid keys in optim: lr"),
        (["train", "byol-digit"], "unknown recipe 'byol-digit'; choose one of: byol-digits"),
        (["train", "--data", "npz:/no/such/file.npz"], "/no/such/file.npz"),
        (["train", "--device", "cuda:0"], "CUDA is not available"),
        (["train", "--resume", "/no/such/run"], "/no/such/run does not exist"),
        (["train", "--resume", "/no/such/run", "--epochs", "3"], "drop --epochs"),
        (["eval", "/no/such/run"], "/no/such/run does not exist"),
        (["embed", "/no/such/run", "--data", "digits", "--out", "x.npy"], "/no/such/run does not exist"),
    ],
)
def test_user_errors_are_one_line_with_status_2(capsys, argv, match):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert match in err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err


def test_empty_image_folder_is_a_usage_error(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(capsys, "train", "--data", f"folder:{tmp_path / 'empty'}")
    assert code == 2 and ("empty" in err.lower() or "no images" in err.lower())


@pytest.mark.slow
def test_eval_of_a_run_without_encoder_says_what_is_missing(capsys, tmp_path):
    run = tmp_path / "run"
    code, _, _ = run_cli(
        capsys,
        "train",
        "byol-digits",
        "--epochs",
        "2",
        "--out",
        str(run),
        "--set",
        "train.stop_after=1",
        "--set",
        "augment.size=8",
    )
    assert code == 0
    code, _, err = run_cli(capsys, "eval", str(run))
    assert code == 2 and "encoder.json is missing" in err and "--resume" in err


def test_listings(capsys):
    code, out, _ = run_cli(capsys, "methods")
    assert code == 0 and "byol" in out and "Grill" in out
    code, out, _ = run_cli(capsys, "recipes")
    assert "byol-fashion-mnist" in out.split()
    code, out, _ = run_cli(capsys, "data")
    assert code == 0 and out.startswith("digits") and "fashion-mnist" in out


@pytest.mark.slow
def test_demo_end_to_end_in_a_real_process_then_eval_and_embed(tmp_path):
    run = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "selfsup", "demo", "--epochs", "3", "--out", str(run)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "BYOL encoder" in proc.stdout and "raw pixels" in proc.stdout
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs"] == 3 and summary["finished"]

    proc = subprocess.run(
        [sys.executable, "-m", "selfsup", "eval", str(run), "--json"], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["knn_top1"] == pytest.approx(summary["knn_top1"], abs=1e-6)
    assert result["knn_top1_raw"] == pytest.approx(summary["knn_top1_raw"])

    out = tmp_path / "emb.npy"
    proc = subprocess.run(
        [sys.executable, "-m", "selfsup", "embed", str(run), "--data", "digits", "--split", "train", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert np.load(out).shape[0] == 1437


@pytest.mark.slow
def test_a_user_error_in_a_real_process_has_no_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "selfsup", "train", "--method", "simclrr"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: unknown method 'simclrr'")
    assert "Traceback" not in proc.stderr
