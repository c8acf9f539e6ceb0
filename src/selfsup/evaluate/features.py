"""Frozen features of a backbone over a whole split, computed once, in batches, on the device."""
from __future__ import annotations

import contextlib
from typing import Callable

import torch
from torch import nn


@torch.no_grad()
def extract_features(encoder: nn.Module, images: torch.Tensor, transform: Callable[[torch.Tensor], torch.Tensor],
                     batch_size: int = 1024, device: torch.device | str | None = None,
                     amp_dtype: torch.dtype | None = None, channels_last: bool = False) -> torch.Tensor:
    """Backbone features (float32, on ``device``) of uint8 ``images`` (N, C, H, W).

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
        for start in range(0, len(images), batch_size):
            x = transform(images[start:start + batch_size].to(device, non_blocking=True)).to(dtype)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with amp:
                out.append(encoder(x).float())
    finally:
        encoder.train(was_training)
    return torch.cat(out)


def raw_pixel_features(images: torch.Tensor) -> torch.Tensor:
    """The raw-pixel baseline: each uint8 image flattened to a float vector."""
    return images.reshape(len(images), -1).float()
