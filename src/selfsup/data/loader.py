"""Batches of uint8 images for the training loop, with nothing on the host inside a step.

The whole dataset is one uint8 tensor. When it fits (``placement="device"``, or ``"auto"`` and it
takes less than a quarter of the free device memory) it lives on the training device and a batch
is one indexing kernel. Otherwise (``"host"``) it stays in pinned host memory and each batch is
gathered there and copied asynchronously, one batch ahead of the step that uses it.

Each epoch's order is one permutation drawn from ``(seed, epoch)`` alone, so an epoch can be
replayed from any step (exact resume) and every rank of a distributed run agrees on it; rank ``r``
of ``w`` takes every ``w``-th index of the permutation.
"""
from __future__ import annotations

from typing import Iterator

import torch

from ..errors import UsageError


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


class BatchLoader:
    def __init__(self, images: torch.Tensor, batch_size: int, device: torch.device, placement: str = "auto",
                 seed: int = 0, rank: int = 0, world_size: int = 1):
        assert images.dtype == torch.uint8 and images.ndim == 4
        self.batch_size, self.device, self.seed = batch_size, device, seed
        self.rank, self.world_size = rank, world_size
        self.n = len(images)
        global_batch = batch_size * world_size
        if self.n < global_batch:
            raise UsageError(f"the training split has {self.n} images, fewer than one batch of {global_batch}; "
                             "lower train.batch_size")
        self.steps_per_epoch = self.n // global_batch  # drop the last, incomplete batch
        self.placement = self._choose_placement(images, placement)
        if self.placement == "device":
            self.images = images.to(device)
        else:
            self.images = images.pin_memory() if device.type == "cuda" else images

    def _choose_placement(self, images: torch.Tensor, placement: str) -> str:
        if self.device.type != "cuda" or placement == "device":
            return "device"
        if placement == "host":
            return "host"
        free, _ = torch.cuda.mem_get_info(self.device)
        return "device" if images.numel() < free // 4 else "host"

    def indices(self, epoch: int) -> torch.Tensor:
        """This rank's indices for ``epoch``, ``steps_per_epoch * batch_size`` of them."""
        perm = epoch_permutation(self.n, self.seed, epoch)
        used = self.steps_per_epoch * self.batch_size * self.world_size
        return perm[:used][self.rank::self.world_size]

    def batches(self, epoch: int, start_step: int = 0) -> Iterator[torch.Tensor]:
        idx = self.indices(epoch)
        if self.placement == "device":
            idx = idx.to(self.device)
            for step in range(start_step, self.steps_per_epoch):
                yield self.images[idx[step * self.batch_size:(step + 1) * self.batch_size]]
            return
        pending = None
        for step in range(start_step, self.steps_per_epoch):
            host = self.images[idx[step * self.batch_size:(step + 1) * self.batch_size]]
            if self.device.type == "cuda":
                host = host.pin_memory()
            ready = host.to(self.device, non_blocking=True)  # overlaps with the step on `pending`
            if pending is not None:
                yield pending
            pending = ready
        if pending is not None:
            yield pending
