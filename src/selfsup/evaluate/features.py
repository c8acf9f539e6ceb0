"""Frozen features over a whole split, computed once, in chunks, on the device: a backbone's,
and the raw-input baseline's.

Only one chunk of samples is read at a time, so a memory-mapped split (a prepared store) is
streamed: memory holds the features and one chunk, never the split. ``samples`` may be a tensor or
:class:`~selfsup.data.base.Rows` (samples with per-sample extras), which the transforms accept.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import torch
from torch import nn

from ..data.base import Rows

CHUNK_VALUES = 1 << 22  # sample values the raw baseline converts at a time (16 MiB of float32)


@torch.no_grad()
def extract_features(
    encoder: nn.Module,
    samples: torch.Tensor | Rows,
    transform: Callable[[torch.Tensor | Rows], torch.Tensor],
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


def raw_features(modality, samples: torch.Tensor | Rows, chunk_values: int = CHUNK_VALUES) -> torch.Tensor:
    """The modality's raw-input baseline features of every sample, computed chunk by chunk (about
    ``chunk_values`` sample values at a time, whatever the sample size)."""
    chunk = max(1, chunk_values // max(1, math.prod(samples.shape[1:])))
    return torch.cat([modality.raw_features(samples[i : i + chunk]) for i in range(0, len(samples), chunk)])
