"""The run's encoder file: the backbone's weights and what rebuilds and feeds it."""

from __future__ import annotations

from pathlib import Path

import torch

from ..runs import ENCODER_FORMAT, atomic_torch_save


def export_encoder(s, path: Path) -> None:
    """Write ``s.method.encoder`` with its architecture (``spec``), the modality and its input spec
    (what the encoder must be fed), the method and the dataset."""
    backbone = s.method.encoder
    state = {k: v.detach().to("cpu", memory_format=torch.contiguous_format) for k, v in backbone.state_dict().items()}
    atomic_torch_save(
        {
            "format": ENCODER_FORMAT,
            "modality": s.modality.name,
            "backbone": backbone.spec,
            "feature_dim": backbone.feature_dim,
            "state_dict": state,
            "input": s.input_spec,
            "method": s.cfg.method,
            "dataset": s.cfg.data.name,
        },
        path,
    )
