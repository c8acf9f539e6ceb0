"""Batches of samples for the training loop, with nothing on the host inside a step.

The training split is one tensor of any dtype and shape (uint8 images, float table rows, series),
one sample per row. When it fits (``placement="device"``, or ``"auto"`` and it
takes less than a quarter of the free device memory) it lives on the training device and a batch
is one indexing kernel. Otherwise (``"host"``) it stays in host memory; each batch is gathered into one of two pinned
buffers and copied on a side stream, one batch ahead of the step that uses it.

Each epoch's order is one permutation drawn from ``(seed, epoch)`` alone, so an epoch can be
replayed from any step (exact resume) and every rank of a distributed run agrees on it; rank ``r``
of ``w`` takes every ``w``-th index of the permutation.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from ..errors import UsageError


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


class BatchLoader:
    def __init__(
        self,
        samples: torch.Tensor,
        batch_size: int,
        device: torch.device,
        placement: str = "auto",
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        assert samples.ndim >= 2, "one sample per row"
        self.batch_size, self.device, self.seed = batch_size, device, seed
        self.rank, self.world_size = rank, world_size
        self.n = len(samples)
        global_batch = batch_size * world_size
        if self.n < global_batch:
            raise UsageError(
                f"the training split has {self.n} samples, fewer than one batch of {global_batch}; "
                "lower train.batch_size"
            )
        self.steps_per_epoch = self.n // global_batch  # drop the last, incomplete batch
        self.placement = self._choose_placement(samples, placement)
        # Host placement keeps the dataset in pageable memory (pinning all of it can exhaust the
        # host); batches are gathered into two small pinned buffers instead.
        self.samples = samples.to(device) if self.placement == "device" else samples

    def _choose_placement(self, samples: torch.Tensor, placement: str) -> str:
        if self.device.type != "cuda" or placement == "device":
            return "device"
        if placement == "host":
            return "host"
        free, _ = torch.cuda.mem_get_info(self.device)
        return "device" if samples.numel() * samples.element_size() < free // 4 else "host"

    def indices(self, epoch: int) -> torch.Tensor:
        """This rank's indices for ``epoch``, ``steps_per_epoch * batch_size`` of them."""
        perm = epoch_permutation(self.n, self.seed, epoch)
        used = self.steps_per_epoch * self.batch_size * self.world_size
        return perm[:used][self.rank :: self.world_size]

    def batches(self, epoch: int, start_step: int = 0, with_indices: bool = False) -> Iterator:
        """This rank's batches of ``epoch`` from step ``start_step`` on; with ``with_indices``,
        ``(indices, batch)`` pairs, the indices on the training device (for labels)."""
        idx = self.indices(epoch)
        if self.placement == "host" and self.device.type == "cuda":
            batches = self._prefetched(idx, start_step)
        else:
            idx = idx.to(self.samples.device)
            batches = (
                self.samples[idx[step * self.batch_size : (step + 1) * self.batch_size]]
                for step in range(start_step, self.steps_per_epoch)
            )
        if not with_indices:
            yield from batches
            return
        idx = idx.to(self.device, non_blocking=True)
        for step, batch in zip(range(start_step, self.steps_per_epoch), batches):
            yield idx[step * self.batch_size : (step + 1) * self.batch_size], batch

    def _prefetched(self, idx: torch.Tensor, start_step: int) -> Iterator[torch.Tensor]:
        """Double buffering from pinned host memory: batch k+1 is gathered into one of two pinned
        buffers and copied on a side stream while the training step runs on batch k."""
        shape = (self.batch_size,) + tuple(self.samples.shape[1:])
        if not hasattr(self, "_buffers"):
            self._buffers = [torch.empty(shape, dtype=self.samples.dtype).pin_memory() for _ in range(2)]
            self._copy_stream = torch.cuda.Stream(self.device)
        copied: list[torch.cuda.Event | None] = [None, None]

        def start(step: int, slot: int):
            if copied[slot] is not None:
                copied[slot].synchronize()  # the last copy out of this buffer has finished
            torch.index_select(
                self.samples, 0, idx[step * self.batch_size : (step + 1) * self.batch_size], out=self._buffers[slot]
            )
            with torch.cuda.stream(self._copy_stream):
                batch = self._buffers[slot].to(self.device, non_blocking=True)
                copied[slot] = torch.cuda.Event()
                copied[slot].record(self._copy_stream)
            return batch, copied[slot]

        steps = range(start_step, self.steps_per_epoch)
        pending = start(steps[0], 0) if len(steps) else None
        for k, _step in enumerate(steps):
            batch, event = pending
            if k + 1 < len(steps):
                pending = start(steps[k + 1], (k + 1) % 2)
            compute = torch.cuda.current_stream(self.device)
            compute.wait_event(event)
            batch.record_stream(compute)  # its memory is used on the compute stream from here on
            yield batch
