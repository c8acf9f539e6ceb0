"""Continual pretraining: a new run starts from a finished run's weights (--init-from), with the
infinite learning-rate schedule; mistakes are one line."""

from __future__ import annotations

import json

import pytest
import torch

import selfsup
from selfsup.cli import main
from selfsup.config import build_config

pytestmark = pytest.mark.slow  # end-to-end training runs

SMALL = ["data.subset=256", "train.batch_size=64", "eval.diagnose_every=0", "train.log_every=1"]


def _params(run) -> dict:
    return dict(selfsup.load_encoder(run).named_parameters())


def test_init_from_starts_from_the_finished_runs_weights_with_the_infinite_schedule(tmp_path, capsys):
    first = tmp_path / "first"
    selfsup.train(build_config("byol-digits", SMALL, epochs=2), out=first)
    # lr 0 throughout: the weights cannot move, so the second run's encoder is the first one's.
    sets = [*SMALL, "optim.lr=0", "optim.schedule=infinite", "optim.warmup_epochs=0"]
    args = ["train", "byol-digits", "--epochs", "1", "--init-from", str(first), "--out", str(tmp_path / "second")]
    assert main([*args, *[x for s in sets for x in ("--set", s)]]) == 0
    mine, theirs = _params(tmp_path / "second"), _params(first)
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs)
    events = [json.loads(line) for line in (tmp_path / "second" / "metrics.jsonl").read_text().splitlines()]
    init = next(e for e in events if e["event"] == "init_from")
    assert init["taken"] == init["of"] and init["method"] == "byol"  # the same method: heads and teacher too

    # Another method takes the encoder only; its heads start fresh.
    selfsup.train(build_config("simclr-digits", SMALL, epochs=1, init_from=str(first)), out=tmp_path / "simclr")
    events = [json.loads(line) for line in (tmp_path / "simclr" / "metrics.jsonl").read_text().splitlines()]
    init = next(e for e in events if e["event"] == "init_from")
    assert 0 < init["taken"] < init["of"]


def test_init_from_mistakes_are_one_line(tmp_path, capsys):
    first = tmp_path / "first"
    selfsup.train(build_config("byol-digits", [*SMALL, "train.stop_after=1"], epochs=2), out=first)  # unfinished
    assert main(["train", "byol-digits", "--init-from", str(first), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "is missing: the run has not finished" in err, err
    assert not (tmp_path / "x").exists()  # nothing written
    assert main(["train", "--resume", str(first), "--init-from", str(first)]) == 2
    assert "drop --init-from" in capsys.readouterr().err
