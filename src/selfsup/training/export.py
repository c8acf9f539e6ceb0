"""The run's encoder files: the backbone's weights (``encoder.safetensors``) and the record of what
rebuilds and feeds it (``encoder.json``); the format is :mod:`selfsup.export`'s."""

from __future__ import annotations

from pathlib import Path

from ..export import encoder_record, write_run_encoder
from ..runs import RunFolder


def export_encoder(s, where: RunFolder | str | Path) -> None:
    """Write ``s.method.encoder`` into the run folder ``where`` (or the folder of the path ``where``,
    as ``run.encoder``): its weights, its architecture (``spec``), its feature dimension, the modality
    and its input spec (what the encoder must be fed), the method and the dataset. An older run's
    ``encoder.pt`` that is there is left as it is; the new files are read first."""
    run = where if isinstance(where, RunFolder) else RunFolder(Path(where).parent)
    backbone = s.method.encoder
    record = encoder_record(
        s.modality.name, backbone.spec, backbone.feature_dim, s.input_spec, s.cfg.method, s.cfg.data.name
    )
    write_run_encoder(run, backbone, record)
