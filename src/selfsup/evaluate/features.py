"""Frozen features over a whole split, computed once, in chunks, on the device: a backbone's,
and the raw-input baseline's."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import nn


@torch.no_grad()
def extract_features(
    encoder: nn.Module,
    samples: torch.Tensor,
    transform: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int = 1024,
    device: torch.device | str | None = None,
    amp_dtype: torch.dtype | None = None,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> torch.Tensor:
    """Backbone features (float32, on ``device``) of ``samples`` (any modality), each chunk passed
    through ``transform`` (the modality's evaluation transform) first.

    The encoder runs in eval mode (BatchNorm running statistics) and is returned to the mode it
    was in, so this is safe to call in the middle of training.
    """
    device = torch.device(device) if device is not None else next(encoder.parameters()).device
    was_training = encoder.training
    encoder.eval()
    amp = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()
    dtype = next(encoder.parameters()).dtype  # float64 for a model trained in fp64
    dtype = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    out = []
    try:
        for start in range(0, len(samples), batch_size):
            x = transform(samples[start : start + batch_size].to(device, non_blocking=True)).to(dtype)
            x = x.contiguous(memory_format=memory_format)
            with amp:
                out.append(encoder(x).float())
    finally:
        encoder.train(was_training)
    return torch.cat(out)


def raw_features(modality, samples: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """The modality's raw-input baseline features of every sample, computed chunk by chunk."""
    return torch.cat([modality.raw_features(samples[i : i + chunk]) for i in range(0, len(samples), chunk)])
