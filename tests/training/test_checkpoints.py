"""Checkpoints for long epochs and damaged files: on the clock mid-epoch, the previous one kept as a
fallback, and files that are not plain data refused, each mistake one line."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import selfsup
from selfsup.cli import main
from selfsup.config import build_config
from selfsup.errors import UsageError
from selfsup.training import checkpoint

FAST = [
    "augment.size=8",
    "method_args.proj_hidden=64",
    "method_args.pred_hidden=64",
    "method_args.proj_dim=32",
    "train.batch_size=128",
    "train.log_every=1",
    "optim.warmup_epochs=1",
    "eval.diagnose_every=0",
]


def _config(epochs, extra=()):
    return build_config("byol-digits", FAST + list(extra), epochs=epochs)


def _encoder_state(run: Path) -> dict:
    return selfsup.load_encoder(run).state_dict()


def _events(run: Path, kind: str) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines() if (run / "metrics.jsonl").exists() else []
    return [e for e in (json.loads(line) for line in lines if line.strip()) if e["event"] == kind]


@pytest.mark.slow
def test_checkpoints_on_the_clock_come_mid_epoch_and_a_killed_run_resumes_bit_for_bit(tmp_path):
    sets = FAST + ["train.checkpoint_minutes=0.000001", "train.checkpoint_every=100"]  # every step
    run = tmp_path / "killed"
    cmd = [sys.executable, "-m", "selfsup", "train", "byol-digits", "--epochs", "2", "--out", str(run)]
    for s in sets:
        cmd += ["--set", s]
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 180
    # Kill -9 (no chance to write anything) once a mid-epoch checkpoint of the second epoch is on disk.
    while time.time() < deadline and not any(
        e["epoch"] == 1 and e["step_in_epoch"] >= 3 for e in _events(run, "checkpoint")
    ):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    mid = [e for e in _events(run, "checkpoint") if e["epoch"] == 1]
    assert mid and all(0 < e["step_in_epoch"] < 11 for e in mid)  # 11 steps an epoch: strictly inside
    assert (run / "checkpoints" / "previous.pt").is_file()  # the one before is kept
    ckpt = checkpoint.load(run / "checkpoints" / "last.pt")
    assert ckpt["epoch"] == 1 and 0 < ckpt["step_in_epoch"] < 11

    assert main(["train", "--resume", str(run)]) == 0
    selfsup.train(build_config("byol-digits", sets, epochs=2), out=tmp_path / "straight")
    mine, ref = _encoder_state(run), _encoder_state(tmp_path / "straight")
    assert all(torch.equal(mine[k], ref[k]) for k in ref)


@pytest.mark.slow
def test_a_truncated_last_checkpoint_falls_back_to_the_previous_with_a_warning(tmp_path, capsys):
    run = tmp_path / "run"
    selfsup.train(_config(3, ["train.stop_after=2", "train.checkpoint_every=1"]), out=run)
    last, previous = run / "checkpoints" / "last.pt", run / "checkpoints" / "previous.pt"
    assert checkpoint.load(previous)["epoch"] == 1 and checkpoint.load(last)["epoch"] == 2
    last.write_bytes(last.read_bytes()[:1000])  # a disk that filled up mid-write, say

    assert main(["train", "--resume", str(run)]) == 0
    err = capsys.readouterr().err
    assert "last.pt is not a readable selfsup checkpoint" in err and "resuming from the previous checkpoint" in err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["finished"] and summary["epochs_done"] == 3
    assert _events(run, "checkpoint_fallback") and (run / "checkpoints" / "last.unreadable.pt").is_file()


@pytest.mark.slow
def test_a_truncated_checkpoint_with_no_previous_is_one_line_and_exit_status_2(tmp_path, capsys):
    run = tmp_path / "run"
    selfsup.train(_config(2, ["train.stop_after=1"]), out=run)
    last = run / "checkpoints" / "last.pt"
    assert not (run / "checkpoints" / "previous.pt").exists()
    last.write_bytes(last.read_bytes()[:1000])
    assert main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert "not a readable selfsup checkpoint" in err and "no readable checkpoint to resume from" in err


class _Payload:  # any class: unpickling it would import and run code from the file's author
    def __reduce__(self):
        return (os.getcwd, ())


@pytest.mark.slow
def test_a_checkpoint_carrying_a_pickled_object_is_refused_with_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    selfsup.train(_config(2, ["train.stop_after=1"]), out=run)
    last = run / "checkpoints" / "last.pt"
    ckpt = checkpoint.load(last)
    ckpt["extra"] = _Payload()
    buffer = io.BytesIO()
    torch.save(ckpt, buffer)
    last.write_bytes(buffer.getvalue())
    with pytest.raises(UsageError, match="pickled objects that are not tensors or plain data"):
        checkpoint.load(last)
    assert main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "does not unpickle them" in err


@pytest.mark.slow
def test_each_checkpoint_keeps_the_one_before_it(tmp_path):
    run = tmp_path / "run"
    selfsup.train(_config(2, ["train.checkpoint_every=1"]), out=run)
    assert checkpoint.load(run / "checkpoints" / "previous.pt")["epoch"] == 1
    assert checkpoint.load(run / "checkpoints" / "last.pt")["epoch"] == 2
