"""The training loop on real data (the bundled digits), small enough for the CPU."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import selfsup
from selfsup.config import build_config
from selfsup.errors import TrainingError, UsageError

pytestmark = pytest.mark.slow  # end-to-end training runs

FAST = [
    "augment.size=8",
    "method_args.proj_hidden=64",
    "method_args.pred_hidden=64",
    "method_args.proj_dim=32",
    "train.batch_size=128",
    "train.log_every=2",
    "train.checkpoint_every=1",
    "optim.warmup_epochs=1",
]


def fast_config(epochs=2, extra=()):
    return build_config("byol-digits", FAST + list(extra), epochs=epochs)


def test_run_folder_has_config_metrics_checkpoint_encoder_and_summary(tmp_path):
    summary = selfsup.train(fast_config(2), out=tmp_path / "run")
    run = tmp_path / "run"
    for name in (
        "config.yaml",
        "metrics.jsonl",
        "checkpoints/last.pt",
        "encoder.json",
        "encoder.safetensors",
        "summary.json",
    ):
        assert (run / name).is_file(), name
    for key in ("method", "dataset", "epochs", "knn_top1", "train_seconds", "images_per_second"):
        assert key in summary
    assert json.loads((run / "summary.json").read_text()) == summary
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    events = [r["event"] for r in records]
    assert events.count("epoch") == 2 and "step" in events and events[-1] == "eval"
    # The online probes report on the training batches every epoch.
    for epoch in (r for r in records if r["event"] == "epoch"):
        assert 0.0 <= epoch["online_linear_top1"] <= 1.0 and 0.0 <= epoch["online_knn_top1"] <= 1.0
    encoder = selfsup.load_encoder(run)
    assert isinstance(encoder, torch.nn.Module) and not encoder.training
    assert encoder(torch.randn(4, 1, 8, 8)).shape == (4, encoder.feature_dim)
    emb = selfsup.embed(run, "digits", split="test", out=tmp_path / "emb.npy")
    assert emb.shape == (360, 128) and np.array_equal(np.load(tmp_path / "emb.npy"), emb)
    assert 0.0 < summary["knn_top1"] <= 1.0


def _state(run_dir):
    ckpt = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)
    return ckpt["method"], ckpt["optimizer"]["state"], ckpt["global_step"]


def _assert_same_state(a, b):
    (ma, oa, sa), (mb, ob, sb) = a, b
    assert sa == sb
    assert ma.keys() == mb.keys()
    for k in ma:
        assert torch.equal(ma[k], mb[k]), k
    for i in oa:
        for k in oa[i]:
            assert torch.equal(oa[i][k], ob[i][k])


def test_two_epochs_plus_resume_equals_four_epochs_bit_for_bit(tmp_path):
    selfsup.train(fast_config(4), out=tmp_path / "straight")
    part = selfsup.train(fast_config(4, ["train.stop_after=2"]), out=tmp_path / "split")
    assert part["finished"] is False and part["epochs_done"] == 2
    assert not (tmp_path / "split" / "encoder.json").exists()
    resumed = selfsup.train(resume=tmp_path / "split")
    assert resumed["finished"] is True
    _assert_same_state(_state(tmp_path / "straight"), _state(tmp_path / "split"))
    straight = json.loads((tmp_path / "straight" / "summary.json").read_text())
    assert resumed["knn_top1"] == straight["knn_top1"]


def test_sigint_mid_epoch_saves_a_checkpoint_and_resume_matches_an_uninterrupted_run(tmp_path):
    sets = FAST + ["train.log_every=1"]
    cmd = [sys.executable, "-m", "selfsup", "train", "byol-digits", "--epochs", "3", "--out", str(tmp_path / "int")]
    for s in sets:
        cmd += ["--set", s]
    # The same number of threads as this process (the reference run): float sums depend on it.
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    metrics = tmp_path / "int" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.exists() and metrics.read_text().count('"step"') >= 3):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "continue with: selfsup train --resume" in err
    ckpt = torch.load(tmp_path / "int" / "checkpoints" / "last.pt", weights_only=False)
    assert ckpt["global_step"] > 0
    selfsup.train(resume=tmp_path / "int")
    selfsup.train(build_config("byol-digits", sets, epochs=3), out=tmp_path / "ref")
    _assert_same_state(_state(tmp_path / "int"), _state(tmp_path / "ref"))


def test_nonfinite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    run = tmp_path / "run"
    selfsup.train(fast_config(3, ["train.stop_after=1"]), out=run)
    good = (run / "checkpoints" / "last.pt").read_bytes()
    # The user edits the run's config to a learning rate that blows up, then resumes.
    config = (run / "config.yaml").read_text().replace("lr: 1.0", "lr: .inf")
    (run / "config.yaml").write_text(config)
    with pytest.raises(TrainingError, match=r"the loss became nan .* last good checkpoint is kept"):
        selfsup.train(resume=run)
    assert (run / "checkpoints" / "last.pt").read_bytes() == good
    assert '"nonfinite"' in (run / "metrics.jsonl").read_text()


def test_training_into_an_existing_run_folder_is_refused(tmp_path):
    selfsup.train(fast_config(1), out=tmp_path / "run")
    with pytest.raises(UsageError, match="already holds a run"):
        selfsup.train(fast_config(1), out=tmp_path / "run")


def test_batch_larger_than_the_dataset_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="fewer than one batch"):
        selfsup.train(fast_config(1, ["train.batch_size=4096"]), out=tmp_path / "run")


def test_online_probes_never_change_the_training(tmp_path):
    # The online linear probe and kNN see detached features with their own optimiser: a run with
    # them is bit-identical to one without, and its checkpoint carries their state.
    selfsup.train(fast_config(1), out=tmp_path / "with")
    selfsup.train(fast_config(1, ["eval.online=false"]), out=tmp_path / "without")
    _assert_same_state(_state(tmp_path / "with"), _state(tmp_path / "without"))
    ckpt = torch.load(tmp_path / "with" / "checkpoints" / "last.pt", weights_only=False)
    assert ckpt["online"]["probe.linear.weight"].abs().sum() > 0 and ckpt["online"]["knn._extra_state"]["filled"] > 0
