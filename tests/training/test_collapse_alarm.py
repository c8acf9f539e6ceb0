"""The collapse alarm in real training runs on digits: it rings for a collapsing method and stays
quiet for a healthy one."""

import json

import pytest

import selfsup
from selfsup.config import build_config
from selfsup.errors import TrainingError

pytestmark = pytest.mark.slow  # end-to-end training runs


def _events(run, kind):
    return [
        json.loads(line)
        for line in (run / "metrics.jsonl").read_text().splitlines()
        if json.loads(line)["event"] == kind
    ]


def test_byol_without_predictor_or_ema_collapses_and_the_alarm_stops_it(tmp_path):
    # BYOL's Table 5 ablation: no predictor and a target equal to the online network collapses.
    cfg = build_config(
        "byol-digits",
        [
            "method_args.predictor=false",
            "method_args.tau_base=0.0",
            "eval.stop_on_collapse=true",
            "train.checkpoint_every=100",
        ],
        epochs=100,
    )
    with pytest.raises(TrainingError, match="collapsed at epoch"):
        selfsup.train(cfg, out=tmp_path / "run")
    alarms = _events(tmp_path / "run", "collapse")
    assert alarms and alarms[0]["epoch"] <= 6
    assert "projector" in " ".join(alarms[0]["reasons"])
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()  # kept for inspection
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["collapsed"] is True


def test_a_healthy_byol_run_logs_diagnostics_and_raises_no_alarm(tmp_path):
    selfsup.train(build_config("byol-digits", ["train.checkpoint_every=100"], epochs=12), out=tmp_path / "run")
    diags = _events(tmp_path / "run", "diagnostics")
    assert [d["epoch"] for d in diags] == list(range(1, 13))
    assert not _events(tmp_path / "run", "collapse")
    last = diags[-1]
    for key in ("rankme", "proj_rankme", "norm_std_ratio", "alignment", "uniformity", "spectrum"):
        assert key in last
    assert abs(sum(last["spectrum"]) - 1) < 1e-6
