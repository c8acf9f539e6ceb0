"""Taking a trained encoder out of a run folder: as an ``nn.Module``, or as embeddings on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from .data.sources import load_dataset
from .device import resolve_device
from .errors import UsageError
from .evaluate.features import extract_features
from .export import read_encoder
from .modalities import get_modality


def load_encoder(
    run_dir: str | Path, device: str | torch.device = "cpu", backbone: nn.Module | None = None
) -> nn.Module:
    """The pretrained backbone of a finished run, in eval mode.

    ``run_dir``: a run folder (``encoder.json`` + ``encoder.safetensors``, or an older run's
    ``encoder.pt``), or a ``.safetensors`` file written by ``selfsup export --format safetensors``.
    ``encoder(x)`` maps the modality's model input (for images: normalised float images
    (N, C, S, S)) to features (N, D). ``encoder.modality`` names the kind of data,
    ``encoder.input_spec`` describes the input it was trained on (for images: size, channels,
    mean, std) and :func:`preprocess_fn` turns raw samples into that input; ``encoder.backbone_spec``
    holds what rebuilds its architecture (:func:`selfsup.backbones.rebuild`).
    ``backbone``: a fresh instance of the architecture, for an encoder whose backbone was given
    from Python (``selfsup.train(cfg, backbone=module)``): its weights are loaded into it.
    """
    return read_encoder(run_dir, backbone).to(device).eval()


def preprocess_fn(encoder: nn.Module):
    """The deterministic evaluation transform that turns raw samples into ``encoder``'s input."""
    return get_modality(encoder.modality).eval_transform(encoder.input_spec)


def embed(
    run_dir: str | Path,
    data: str,
    split: str = "test",
    out: str | Path | None = None,
    data_dir: str | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 1024,
) -> np.ndarray:
    """Backbone features of one split of ``data`` (float32, (N, D)); saved as .npy when ``out`` is given."""
    if split not in ("train", "test"):
        raise UsageError(f"unknown split {split!r}; choose train or test")
    device = resolve_device(device)
    encoder = load_encoder(run_dir, device)
    dataset = load_dataset(data, data_dir=data_dir, input_spec=encoder.input_spec)
    samples = dataset.train if split == "train" else dataset.test
    if samples is None:
        raise UsageError(f"{dataset.name} has no {split} split; use --split train")
    modality = get_modality(encoder.modality)
    if dataset.modality != modality.name:
        raise UsageError(f"{dataset.name} holds {dataset.modality} data but the encoder takes {modality.name} data")
    modality.check_input(dataset, encoder.input_spec)
    features = extract_features(encoder, samples, preprocess_fn(encoder), batch_size, device)
    array = features.cpu().numpy()
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        np.save(out, array)
    return array
