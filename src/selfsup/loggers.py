"""Where a run's metrics go besides ``metrics.jsonl``: ``train.loggers: [jsonl, csv, tensorboard, mlflow]``.

Every metric a run produces already passes through :meth:`selfsup.runs.RunFolder.log` (one JSON
record a line in ``metrics.jsonl``, always written: ``jsonl`` in the list is accepted and implied).
The other loggers are *sinks* the run folder fans each record out to after writing it:
:meth:`~selfsup.runs.RunFolder.attach_loggers` opens them when a run starts (and logs the config as
hyper-parameters), :meth:`~selfsup.runs.RunFolder.close_loggers` closes them at its end. So the
training loop knows no logger, and a new logger is a new class here.

What a sink receives is the record as logged. The scalars are read from it by one rule
(:func:`scalars`): every number in the record (top level, and one level into a nested mapping)
except the x-axis keys, named ``<event>/<key>``: ``step/loss``, ``step/lr``, ``step/weight_decay``,
``step/tau``, ``step/images_per_second``, ``epoch/online_linear_top1``, ``epoch/knn_top1``,
``diagnostics/rankme``, ``eval/knn_top1`` ... at the record's global ``step`` (records without one, as
the final ``eval``, at the last step seen). Lists (the singular-value spectrum) and strings are left
to ``metrics.jsonl``.

* ``csv``: ``RUN/metrics.csv``, one row per scalar (``time, event, epoch, step, name, value``): a
  long table that new metrics never break (``pandas.read_csv(...).pivot_table(...)``);
* ``tensorboard`` (``pip install 'selfsup[tensorboard]'``): event files in ``RUN/tensorboard/``, the
  config as hyper-parameters and as text, and at the end the embedding projector of the run's probe
  batch (encoder features, labels, and thumbnails where the samples are pictures). A resumed run
  purges the events logged after its checkpoint;
* ``mlflow`` (``pip install 'selfsup[mlflow]'``): a run in the tracking store that MLflow's own
  settings name (``MLFLOW_TRACKING_URI``: a server ``http://host:5000``, ``sqlite:///mlflow.db``, or
  ``file:/path`` with ``MLFLOW_ALLOW_FILE_STORE=true``; the experiment ``MLFLOW_EXPERIMENT_NAME``,
  default ``selfsup``), the flattened config as parameters, the scalars as metrics; a resumed run
  continues the same MLflow run (its id is kept in ``RUN/loggers.json``) and is marked finished at the end.

Each sink writes through as records come (TensorBoard is flushed at every record, MLflow's client
writes synchronously), so a run that stops early (``train.stop_after``, a signal, an error) leaves
complete logs. A sink that fails while training is dropped with a warning; training goes on.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
import time
import warnings
from pathlib import Path

import torch

from .errors import UsageError, closest_first

LOGGERS = ("jsonl", "csv", "tensorboard", "mlflow")
PACKAGES = {
    "tensorboard": "tensorboard",
    "mlflow": "mlflow",
}  # logger -> the package it needs (its extra: the logger's name)
AXES = ("event", "time", "step", "epoch")  # record keys that are positions, not metrics
PROJECTOR_SIZE = 512  # probe samples shown in TensorBoard's projector (its sprite holds at most 8192)


def check_loggers(names) -> None:
    """``train.loggers`` checked: known names, and the optional packages they need installed (one line each)."""
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise UsageError(f"train.loggers must be a list of logger names ({', '.join(LOGGERS)}), got {names!r}")
    for name in names:
        if name not in LOGGERS:
            raise UsageError(
                f"unknown logger {name!r} in train.loggers; choose from: " + ", ".join(closest_first(name, LOGGERS))
            )
        if name in PACKAGES:
            _require(name)


def scalars(record: dict) -> dict[str, float]:
    """The record's numbers as ``{"<event>/<key>": value}`` (see the module docstring)."""
    event = record.get("event", "log")
    out = {}
    for key, value in record.items():
        if key in AXES:
            continue
        if isinstance(value, dict):
            for sub, v in value.items():
                if _number(v):
                    out[f"{event}/{key}/{sub}"] = float(v)
        elif _number(value):
            out[f"{event}/{key}"] = float(value)
    return out


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def flat_config(cfg) -> dict[str, str]:
    """The config as ``{"optim.lr": "0.5", ...}`` (lists and mappings below the second level as JSON)."""
    out = {}

    def walk(prefix: str, node) -> None:
        if isinstance(node, dict) and node and prefix.count(".") < 2:
            for k, v in node.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            out[prefix] = node if isinstance(node, str) else json.dumps(node)

    walk("", cfg.to_dict())
    return out


class Sink:
    """A logger: ``write(record)`` for each record, ``close(s)`` at the end of the run (``s``: the
    run's :class:`~selfsup.training.build.Setup`, or None when the run did not finish)."""

    name = "sink"

    def write(self, record: dict) -> None:
        raise NotImplementedError

    def close(self, s=None) -> None:
        pass


class CSVSink(Sink):
    name = "csv"
    COLUMNS = ("time", "event", "epoch", "step", "name", "value")

    def __init__(self, path: Path):
        self.path = path
        self.step = 0

    def write(self, record: dict) -> None:
        values = scalars(record)
        self.step = record.get("step", self.step)
        if not values:
            return
        new = not self.path.is_file()
        with open(self.path, "a", newline="") as f:
            out = csv.writer(f)
            if new:
                out.writerow(self.COLUMNS)
            for name, value in values.items():
                out.writerow([record.get("time"), record.get("event"), record.get("epoch", ""), self.step, name, value])


class TensorBoardSink(Sink):
    name = "tensorboard"

    def __init__(self, folder: Path, cfg):
        _require("tensorboard")
        self.folder, self.cfg, self.writer, self.step = folder, cfg, None, 0

    def _open(self, purge_step: int | None = None):
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        self.writer = SummaryWriter(str(self.folder), purge_step=purge_step)
        if purge_step is None:  # a new run: its config as hyper-parameters and as text
            params = flat_config(self.cfg)
            exp, ssi, sei = hparams({k: _hparam(v) for k, v in params.items()}, {"eval/knn_top1": math.nan})
            for summary in (exp, ssi, sei):
                self.writer.file_writer.add_summary(summary)
            self.writer.add_text("config", "\n".join(f"    {k}: {v}" for k, v in params.items()))
        return self.writer

    def write(self, record: dict) -> None:
        if self.writer is None:
            # A resumed run's first record says where it continues: the events after that step are purged.
            self._open(record["step"] + 1 if record.get("event") == "resume" and "step" in record else None)
        self.step = record.get("step", self.step)
        for name, value in scalars(record).items():
            self.writer.add_scalar(name, value, self.step, walltime=record.get("time"))
        self.writer.flush()

    def close(self, s=None) -> None:
        if self.writer is None:
            self._open()
        if s is not None:
            try:
                self._projector(s)
            except Exception as e:  # the projector is a picture: never lose the run over it
                warnings.warn(f"tensorboard: no embedding projector ({type(e).__name__}: {e})", stacklevel=2)
        self.writer.close()

    def _projector(self, s) -> None:
        """The encoder's features of the probe batch, with labels and thumbnails where there are."""
        from .evaluate.features import extract_features

        keep = probe_indices(s.cfg, len(s.data.train))[:PROJECTOR_SIZE]
        probe = s.data.rows("train")[keep] if hasattr(s.data, "rows") else s.data.train[keep]
        features = extract_features(s.method.encoder, probe, s.views.eval_transform, 256, s.device)
        labels = None
        if s.data.train_labels is not None:
            y, names = s.data.train_labels[keep], s.data.classes
            labels = [names[int(v)] if names and not y.is_floating_point() else f"{float(v):g}" for v in y]
        pictures = thumbnails(s.modality, probe)
        self.writer.add_embedding(
            features.float().cpu(), metadata=labels, label_img=pictures, global_step=self.step, tag="encoder"
        )


class MLflowSink(Sink):
    name = "mlflow"

    def __init__(self, run, cfg):
        _require("mlflow")
        from mlflow.tracking import MlflowClient

        state_path = run.path / "loggers.json"
        state = json.loads(state_path.read_text()) if state_path.is_file() else {}
        uri = os.environ.get("MLFLOW_TRACKING_URI") or None
        try:
            self.client = MlflowClient(tracking_uri=uri)
            known = state.get("mlflow") or {}
            if known.get("run_id") and known.get("tracking_uri") == self.client.tracking_uri:
                self.run_id = known["run_id"]  # a resumed run continues its MLflow run
                self.client.update_run(self.run_id, status="RUNNING")
            else:
                name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or "selfsup"
                experiment = self.client.get_experiment_by_name(name)
                experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(name)
                created = self.client.create_run(
                    experiment_id, run_name=run.path.name, tags={"selfsup.run_dir": str(run.path.resolve())}
                )
                self.run_id = created.info.run_id
                self._params(flat_config(cfg))
                state["mlflow"] = {"tracking_uri": self.client.tracking_uri, "run_id": self.run_id}
                state_path.write_text(json.dumps(state, indent=2) + "\n")
        except UsageError:
            raise
        except Exception as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            raise UsageError(
                f"the mlflow logger cannot open the tracking store {uri or '(MLflow default)'} ({first}); set "
                "MLFLOW_TRACKING_URI (http://HOST:PORT, sqlite:///mlflow.db, or file:/PATH with "
                "MLFLOW_ALLOW_FILE_STORE=true) or drop mlflow from train.loggers"
            ) from None
        self.step = 0

    def _params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 parameters a batch
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def write(self, record: dict) -> None:
        from mlflow.entities import Metric

        self.step = record.get("step", self.step)
        stamp = int(1000 * (record.get("time") or time.time()))
        metrics = [Metric(k, v, stamp, self.step) for k, v in scalars(record).items()]
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[i : i + 1000])

    def close(self, s=None) -> None:
        if s is not None:  # the run finished; an unfinished one stays RUNNING until it is resumed
            self.client.set_terminated(self.run_id, "FINISHED")


def _require(logger: str) -> None:
    package = PACKAGES[logger]
    try:
        found = importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):  # a package that failed to import, or was removed from sys.modules
        found = False
    if not found:
        raise UsageError(
            f"the {logger} logger needs the {package} package: pip install 'selfsup[{logger}]' "
            f"(or drop {logger} from train.loggers)"
        )


def _hparam(value: str):
    """A hyper-parameter value TensorBoard's HParams plugin takes (a number, a bool or a string)."""
    try:
        parsed = json.loads(value)
    except (TypeError, ValueError):
        return value
    return parsed if isinstance(parsed, (int, float, bool)) and parsed is not None else value


def open_loggers(run, cfg) -> list[Sink]:
    """The sinks ``cfg.train.loggers`` names for ``run`` (a :class:`~selfsup.runs.RunFolder`)."""
    names = list(getattr(cfg.train, "loggers", None) or [])
    check_loggers(names)
    sinks: list[Sink] = []
    for name in dict.fromkeys(names):
        if name == "csv":
            sinks.append(CSVSink(run.path / "metrics.csv"))
        elif name == "tensorboard":
            sinks.append(TensorBoardSink(run.path / "tensorboard", cfg))
        elif name == "mlflow":
            sinks.append(MLflowSink(run, cfg))
    return sinks


# ------------------------------------------------------- shared with the export check and the report


def probe_indices(cfg, n_train: int):
    """Which training samples form the run's probe batch: the seeded sample the diagnostics look at
    (the rule of :func:`selfsup.training.monitor.probe_batch`; a test holds the two together)."""
    n = min(cfg.eval.probe_size, n_train)
    return torch.randperm(n_train, generator=torch.Generator().manual_seed(cfg.seed))[:n]


def thumbnails(modality, samples):
    """Float pictures ``(N, C, H, W)`` in [0, 1] of raw samples, or None when they are not pictures:
    the modality's ``thumbnails(samples)`` where it has one, else uint8 ``(N, 1 or 3, H, W)`` samples
    (what the image sources give) scaled by 1/255."""
    hook = getattr(modality, "thumbnails", None)
    if callable(hook):
        return hook(samples)
    x = getattr(samples, "samples", samples)  # Rows carry their samples
    if isinstance(x, torch.Tensor) and x.dtype == torch.uint8 and x.ndim == 4 and x.shape[1] in (1, 3):
        return x.float().cpu() / 255
    return None
