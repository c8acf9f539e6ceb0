"""train.loggers: every record of the run folder fanned out to CSV, TensorBoard and MLflow, read back
with their own readers (TensorBoard's EventAccumulator; MLflow's client on a local file store)."""

from __future__ import annotations

import csv
import json
import sys

import pytest

import selfsup
from selfsup.config import build_config
from selfsup.errors import UsageError
from selfsup.loggers import check_loggers, scalars
from selfsup.runs import RunFolder

FAST = [
    "augment.size=8",
    "data.subset=256",
    "method_args.proj_hidden=64",
    "method_args.pred_hidden=64",
    "method_args.proj_dim=32",
    "train.batch_size=64",
    "train.log_every=1",
    "optim.warmup_epochs=0",
    "eval.probe_size=64",
]


def test_scalars_are_every_number_of_a_record_named_by_its_event():
    record = {
        "event": "diagnostics",
        "time": 1.5,
        "epoch": 2,
        "step": 40,
        "rankme": 12.5,
        "collapsed": False,
        "spectrum": [3.0, 2.0],
        "thresholds": {"rankme_fraction": 0.02},
        "note": "text",
    }
    assert scalars(record) == {"diagnostics/rankme": 12.5, "diagnostics/thresholds/rankme_fraction": 0.02}


def test_the_csv_logger_writes_one_row_per_scalar_at_the_records_step(tmp_path):
    cfg = build_config("byol-digits", ["train.loggers=[jsonl, csv]"])
    run = RunFolder(tmp_path / "run").create()
    run.attach_loggers(cfg)
    run.log("step", epoch=0, step=1, loss=2.5, lr=0.1)
    run.log("step", epoch=0, step=2, loss=2.25, lr=0.2, tau=0.99)
    run.log("eval", protocol="knn", knn_top1=0.9)  # no step: at the last one seen
    run.close_loggers()
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    got = [(r["event"], r["step"], r["name"], float(r["value"])) for r in rows]
    assert got == [
        ("step", "1", "step/loss", 2.5),
        ("step", "1", "step/lr", 0.1),
        ("step", "2", "step/loss", 2.25),
        ("step", "2", "step/lr", 0.2),
        ("step", "2", "step/tau", 0.99),
        ("eval", "2", "eval/knn_top1", 0.9),
    ]
    assert len(run.read_metrics()) == 3  # metrics.jsonl is written as before


@pytest.mark.parametrize(
    "loggers, match",
    [
        ("[jsonl, tensorbord]", "unknown logger 'tensorbord' in train.loggers; choose from: tensorboard"),
        ("csv", "config key train.loggers expects list"),
    ],
)
def test_logger_mistakes_are_one_line_errors(loggers, match):
    with pytest.raises(UsageError, match=match) as e:
        build_config("byol-digits", [f"train.loggers={loggers}"])
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("logger", ["tensorboard", "mlflow"])
def test_a_missing_logger_package_is_a_one_line_error_naming_the_extra(logger, monkeypatch):
    monkeypatch.setitem(sys.modules, logger, None)  # as if it were not installed
    with pytest.raises(UsageError, match=rf"pip install 'selfsup\[{logger}\]'") as e:
        check_loggers(["jsonl", logger])
    assert "\n" not in str(e.value)


@pytest.mark.slow
def test_a_short_run_logs_its_loss_curve_to_tensorboard_and_mlflow(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    store = f"file:{tmp_path / 'mlruns'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "selfsup-test")
    cfg = build_config(
        "byol-digits", FAST + ["train.loggers=[jsonl, csv, tensorboard, mlflow]", "train.stop_after=1"], epochs=2
    )
    out = tmp_path / "run"
    first = selfsup.train(cfg, out=out)
    assert first["finished"] is False
    summary = selfsup.train(resume=out)  # the second epoch: the same MLflow run, TensorBoard appends
    assert summary["finished"]
    run = RunFolder(out)
    steps = [m for m in run.read_metrics() if m["event"] == "step"]
    curve = [(m["step"], m["loss"]) for m in steps]
    assert [s for s, _ in curve] == list(range(1, 9))  # 4 steps an epoch, both sessions

    tb = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    tb.Reload()
    assert [(e.step, pytest.approx(e.value)) for e in tb.Scalars("step/loss")] == curve
    assert {"step/lr", "step/tau", "epoch/online_knn_top1", "diagnostics/rankme", "eval/knn_top1"} <= set(
        tb.Tags()["scalars"]
    )
    projector = (out / "tensorboard" / "projector_config.pbtxt").read_text()
    assert "encoder" in projector and "sprite" in projector
    tensor_files = list((out / "tensorboard").rglob("tensors.tsv"))
    assert len(tensor_files) == 1 and len(tensor_files[0].read_text().splitlines()) == 64

    state = json.loads((out / "loggers.json").read_text())["mlflow"]
    client = MlflowClient(store)
    ml_run = client.get_run(state["run_id"])
    assert ml_run.info.status == "FINISHED" and ml_run.info.run_name == "run"
    history = sorted((m.step, m.value) for m in client.get_metric_history(state["run_id"], "step/loss"))
    assert history == [(s, pytest.approx(v)) for s, v in curve]
    assert ml_run.data.params["optim.name"] == cfg.optim.name and ml_run.data.params["method"] == "byol"
    assert client.get_experiment(ml_run.info.experiment_id).name == "selfsup-test"
    assert len(client.search_runs([ml_run.info.experiment_id])) == 1  # resuming did not start another

    rows = [r for r in csv.DictReader(open(out / "metrics.csv")) if r["name"] == "step/loss"]
    assert [(int(r["step"]), pytest.approx(float(r["value"]))) for r in rows] == curve
