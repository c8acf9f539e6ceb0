"""The run folder: the unit of exchange between train, eval, embed, report and resume.

```
RUN/
  config.yaml            the full resolved config
  metrics.jsonl          one JSON object a line: {"event": "step" | "epoch" | "eval" | ..., ...}
  checkpoints/last.pt    everything needed to continue bit for bit (written atomically)
  checkpoints/previous.pt  the checkpoint before it, kept as a fallback
  encoder.safetensors    the backbone's weights (safetensors; its header holds encoder.json's record too)
  encoder.json           what rebuilds and feeds it: modality, backbone spec, feature dim, input spec
                         (runs written before format 3 hold encoder.pt instead: read as well)
  summary.json           the headline results
  metrics.csv, tensorboard/   what the optional loggers write (train.loggers, :mod:`selfsup.loggers`)
```
Files that must never be seen half-written are written to a temporary file in the same folder,
flushed to disk and renamed over the old one, so a crash leaves either the old or the new file.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from .errors import UsageError

# /3: encoder.json + encoder.safetensors (selfsup.export). The torch files encoder.pt of /2 (modality and
# backbone options recorded) and /1 (images only) are read too.
ENCODER_FORMAT = "selfsup-encoder/3"
LEGACY_ENCODER_FORMATS = ("selfsup-encoder/1", "selfsup-encoder/2")
ENCODER_FORMATS = (*LEGACY_ENCODER_FORMATS, ENCODER_FORMAT)


class RunFolder:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.sinks: list = []  # loggers every record is fanned out to (selfsup.loggers)

    config = property(lambda self: self.path / "config.yaml")
    metrics = property(lambda self: self.path / "metrics.jsonl")
    checkpoint = property(lambda self: self.path / "checkpoints" / "last.pt")
    previous_checkpoint = property(lambda self: self.path / "checkpoints" / "previous.pt")
    summary = property(lambda self: self.path / "summary.json")
    encoder_record = property(lambda self: self.path / "encoder.json")
    encoder_weights = property(lambda self: self.path / "encoder.safetensors")
    legacy_encoder = property(lambda self: self.path / "encoder.pt")

    @property
    def encoder(self) -> Path:
        """The encoder's descriptor: ``encoder.json`` (beside ``encoder.safetensors``), or an older
        run's ``encoder.pt``; ``encoder.json`` when there is neither (where the run will write it)."""
        if not self.encoder_record.is_file() and self.legacy_encoder.is_file():
            return self.legacy_encoder
        return self.encoder_record

    def create(self) -> RunFolder:
        (self.path / "checkpoints").mkdir(parents=True, exist_ok=True)
        return self

    def require(self, what: str) -> Path:
        """The file ``what`` (an attribute name), or a one-line error naming what is missing."""
        if not self.path.is_dir():
            raise UsageError(f"run folder {self.path} does not exist")
        target = getattr(self, what)
        if not target.is_file():
            hint = {
                "encoder": f"the run has not finished; continue it with: selfsup train --resume {self.path}",
                "checkpoint": "nothing to resume from: the run wrote no checkpoint yet",
                "config": "this is not a selfsup run folder",
            }[what]
            raise UsageError(f"{target} is missing: {hint}")
        if what == "encoder" and target == self.encoder_record and not self.encoder_weights.is_file():
            raise UsageError(f"{self.encoder_weights} is missing: {target.name} names it; finish or re-export the run")
        return target

    def read_summary(self) -> dict:
        """The summary, with the keys of older versions under their current names."""
        return upgrade_keys(json.loads(self.summary.read_text())) if self.summary.is_file() else {}

    def update_summary(self, **values: Any) -> dict:
        summary = {**self.read_summary(), **values}
        atomic_write_bytes(self.summary, (json.dumps(summary, indent=2) + "\n").encode())
        return summary

    def log(self, event: str, **values: Any) -> None:
        record = {"event": event, "time": round(time.time(), 3), **values}
        with open(self.metrics, "a") as f:
            f.write(json.dumps(record) + "\n")
        for sink in list(self.sinks):
            try:
                sink.write(record)
            except Exception as e:  # a logger's failure (a tracking server gone) does not stop training
                self.sinks.remove(sink)
                warnings.warn(f"the {sink.name} logger failed and is dropped: {type(e).__name__}: {e}", stacklevel=2)

    def attach_loggers(self, cfg) -> None:
        """Open the loggers ``cfg.train.loggers`` names (:mod:`selfsup.loggers`; metrics.jsonl is
        always written): from now on each record also goes to them; the config is logged first."""
        from .loggers import open_loggers

        self.sinks = open_loggers(self, cfg)

    def close_loggers(self, setup=None) -> None:
        """Close the loggers; ``setup`` (the run's parts, at the end of a finished run) lets them add
        their end-of-run records (TensorBoard's embedding projector of the probe batch)."""
        sinks, self.sinks = self.sinks, []
        for sink in sinks:
            sink.close(setup)

    def read_metrics(self) -> list[dict]:
        if not self.metrics.is_file():
            return []
        return [json.loads(line) for line in self.metrics.read_text().splitlines() if line.strip()]


# Renamed keys: summaries written before the modality seam named the raw-input baseline after pixels.
_RENAMED_SUFFIXES = (("_raw_pixels", "_raw"),)
_RENAMED_KEYS = {"raw_pixels": "raw"}


def upgrade_keys(tree):
    """``tree`` (a summary or a part of one) with old key names replaced by the current ones."""
    if isinstance(tree, list):
        return [upgrade_keys(v) for v in tree]
    if not isinstance(tree, dict):
        return tree
    out = {}
    for key, value in tree.items():
        for old, new in _RENAMED_SUFFIXES:
            if key.endswith(old):
                key = key[: -len(old)] + new
        out[_RENAMED_KEYS.get(key, key)] = upgrade_keys(value)
    return out


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_torch_save(obj: Any, path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def default_run_name(method: str, data: str) -> str:
    data = data.replace(":", "-").replace("/", "_").strip("_-")[-40:]
    return f"{method}-{data}-{time.strftime('%Y%m%d-%H%M%S')}"
