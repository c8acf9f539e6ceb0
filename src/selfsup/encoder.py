"""Taking a trained encoder out of a run folder: as an ``nn.Module``, or as embeddings on disk."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from .augment.views import ViewConfig, ViewRecipe
from .backbones import build_backbone
from .errors import UsageError
from .runs import ENCODER_FORMAT, RunFolder


def load_encoder(run_dir: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """The pretrained backbone of a finished run, in eval mode.

    ``encoder(x)`` maps normalised float images (N, C, S, S) to features (N, D); the input it was
    trained on is described by ``encoder.input_spec`` (size, channels, mean, std) and
    :func:`preprocess` applies it to uint8 images; ``encoder.backbone_spec`` holds the arguments of
    :func:`~selfsup.backbones.build_backbone` that rebuild its architecture.
    """
    path = RunFolder(run_dir).require("encoder")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file
        raise UsageError(f"{path} is not a readable selfsup encoder ({type(e).__name__}); re-export it by "
                         "finishing the run") from None
    if not isinstance(blob, dict) or blob.get("format") != ENCODER_FORMAT:
        raise UsageError(f"{path} is not a selfsup encoder file (expected format {ENCODER_FORMAT})")
    spec = blob["backbone"]
    encoder = build_backbone(**spec)
    encoder.load_state_dict(blob["state_dict"])
    encoder.input_spec = blob["input"]
    encoder.backbone_spec = spec  # what build_backbone needs for a fresh copy of the architecture
    return encoder.to(device).eval()


def preprocess_fn(input_spec: dict):
    """The deterministic evaluation transform for uint8 batches (resize, channels, normalise)."""
    recipe = ViewRecipe([ViewConfig(size=input_spec["size"])], input_spec["channels"],
                        input_spec["mean"], input_spec["std"])
    return recipe.eval_transform


def check_input(images: torch.Tensor, input_spec: dict, what: str) -> None:
    channels, wanted = images.shape[1], input_spec["channels"]
    if not (channels == wanted or (channels == 1 and wanted == 3)):  # grayscale is replicated to 3
        raise UsageError(f"{what} has {channels}-channel images but the encoder takes {wanted} "
                         "channels; use data with the same channels as the training data")


def embed(run_dir: str | Path, data: str, split: str = "test", out: str | Path | None = None,
          data_dir: str | None = None, device: str = "cpu", batch_size: int = 1024) -> np.ndarray:
    """Backbone features of one split of ``data`` (float32, (N, D)); saved as .npy when ``out`` is given."""
    from .data import load_dataset
    from .evaluate import extract_features
    if split not in ("train", "test"):
        raise UsageError(f"unknown split {split!r}; choose train or test")
    encoder = load_encoder(run_dir, device)
    dataset = load_dataset(data, data_dir=data_dir)
    images = dataset.train if split == "train" else dataset.test
    if images is None:
        raise UsageError(f"{dataset.name} has no {split} split; use --split train")
    check_input(images, encoder.input_spec, dataset.name)
    features = extract_features(encoder, images, preprocess_fn(encoder.input_spec), batch_size, device)
    array = features.cpu().numpy()
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        np.save(out, array)
    return array
