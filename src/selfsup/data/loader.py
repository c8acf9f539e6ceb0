"""Batches of samples for the training loop, with nothing on the host inside a step.

The training split is one tensor of any dtype and shape (uint8 images, float table rows, series),
one sample per row, or :class:`~selfsup.data.base.Rows`: the samples with per-sample extras (a
prepared image's size in its file), gathered with each batch and handed on as ``Rows``. Where the
split lives is ``placement``:

* ``device``: all of it on the training device, and a batch is one indexing kernel. On a GPU it is
  copied there once; on the CPU it is the process's own memory (a memory-mapped split is read in).
* ``host``: it stays where it is, in host memory or memory-mapped from a file (a prepared store, a
  large ``.npy``). A background thread gathers each batch's rows, ``AHEAD`` batches ahead of the
  step, into a fresh tensor (CPU) or a pinned one that is copied to the GPU on a side stream. The
  resident memory is then a few batches beside the pages of the file the OS keeps mapped.
* ``auto``: on a GPU, ``device`` when the split takes less than a quarter of its free memory, else
  ``host``. On the CPU, ``host`` for a memory-mapped split (reading it in would hold it twice, in
  the page cache and in a copy, for no faster batches once the pages are cached) and ``device``
  for one already in memory. ``device`` asked for on the CPU for a mapped split larger than a
  quarter of the available memory is ``host``, with a warning.

Each epoch's order is one permutation drawn from ``(seed, epoch)`` alone, so an epoch can be
replayed from any step (exact resume) and every rank of a distributed run agrees on it; rank ``r``
of ``w`` takes every ``w``-th index of the permutation. Placement changes where rows are read
from, never which rows a step gets.
"""

from __future__ import annotations

import os
import queue
import threading
import warnings
from collections.abc import Iterator

import numpy as np
import torch

from ..errors import UsageError
from .base import Rows, unpack
from .grouping import grouped_permutation

AHEAD = 2  # batches the background thread gathers ahead of the step
SHARE = 4  # a split is put on a device (or read into memory) when it takes under 1/SHARE of what is free


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


def is_mapped(samples: torch.Tensor) -> bool:
    """Whether ``samples`` is memory-mapped from a file (or shared memory) rather than the process's own
    memory: torch marks the storages of :func:`torch.from_file` (the stores, large ``.npy`` files) shared."""
    return samples.device.type == "cpu" and samples.is_shared()


def available_memory() -> int:
    """Bytes of memory available to new allocations without swapping (MemAvailable on Linux)."""
    try:
        with open("/proc/meminfo") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


class BatchLoader:
    def __init__(
        self,
        samples: torch.Tensor | Rows,
        batch_size: int,
        device: torch.device,
        placement: str = "auto",
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        samples, extras = unpack(samples)
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
        if self.placement == "device":
            # On the CPU a mapped split is read into this process's memory (clone); one already
            # there stays as it is. Host placement keeps it in place: pinning all of a large split
            # can exhaust the host, so only each batch is pinned.
            on_cpu = device.type == "cpu"
            samples = samples.clone() if on_cpu and is_mapped(samples) else samples.to(device)
            extras = {k: v.to(device) for k, v in extras.items()}
        self.samples, self.extras = samples, extras
        self.groups: torch.Tensor | None = None  # set_groups: keep these groups apart within a batch
        self._copy_stream = torch.cuda.Stream(device) if device.type == "cuda" and self.placement == "host" else None

    def _choose_placement(self, samples: torch.Tensor, placement: str) -> str:
        size = samples.numel() * samples.element_size()
        if self.device.type == "cuda":
            if placement != "auto":
                return placement
            free, _ = torch.cuda.mem_get_info(self.device)
            return "device" if size < free // SHARE else "host"
        if not is_mapped(samples):
            return "device" if placement == "auto" else placement
        if placement == "device" and size >= available_memory() // SHARE:
            warnings.warn(
                f"data.placement=device: the training split ({size / 2**30:.1f} GiB, memory-mapped) is more "
                f"than 1/{SHARE} of the available memory; reading batches from the map instead (host)",
                stacklevel=3,
            )
            return "host"
        return "host" if placement == "auto" else placement

    def set_groups(self, groups: torch.Tensor | None) -> None:
        """Order each epoch so that consecutive samples come from different groups
        (:func:`selfsup.data.grouping.grouped_permutation`, G-SimCLR's batches); None: a plain shuffle.
        Like the plain order, a function of ``(seed, epoch)`` alone."""
        if groups is not None and len(groups) != self.n:
            raise ValueError(f"{len(groups)} group labels for {self.n} training samples")
        self.groups = None if groups is None else groups.detach().long().cpu()

    def indices(self, epoch: int) -> torch.Tensor:
        """This rank's indices for ``epoch``, ``steps_per_epoch * batch_size`` of them."""
        if self.groups is None:
            perm = epoch_permutation(self.n, self.seed, epoch)
        else:
            perm = grouped_permutation(self.groups, self.seed, epoch)
        used = self.steps_per_epoch * self.batch_size * self.world_size
        return perm[:used][self.rank :: self.world_size]

    def batches(self, epoch: int, start_step: int = 0, with_indices: bool = False) -> Iterator:
        """This rank's batches of ``epoch`` from step ``start_step`` on (tensors, or :class:`Rows` when
        the split has extras); with ``with_indices``, ``(indices, batch)`` pairs, the indices on the
        training device (for labels)."""
        idx = self.indices(epoch)
        steps = range(start_step, self.steps_per_epoch)
        if self.placement == "host":
            batches = self._prefetched(idx, steps)
        else:
            idx = idx.to(self.samples.device)
            batches = (self._gather(self._rows(idx, step)) for step in steps)
        if not with_indices:
            yield from batches
            return
        idx = idx.to(self.device, non_blocking=True)
        for step, batch in zip(steps, batches):
            yield self._rows(idx, step), batch

    def _rows(self, idx: torch.Tensor, step: int) -> torch.Tensor:
        return idx[step * self.batch_size : (step + 1) * self.batch_size]

    def _gather(self, rows: torch.Tensor, pin: bool = False) -> torch.Tensor | Rows:
        """The samples (and extras) of ``rows``, from where they live; into pinned memory with ``pin``."""
        batch = _take(self.samples, rows, pin)
        if not self.extras:
            return batch
        return Rows(batch, {k: _take(v, rows.to(v.device), pin) for k, v in self.extras.items()})

    def _prefetched(self, idx: torch.Tensor, steps: range) -> Iterator[torch.Tensor | Rows]:
        """Host placement: a background thread gathers the batches of ``steps``, ``AHEAD`` ahead of the
        consumer (the gather and its page faults run outside the GIL, beside the step); on a GPU each
        is pinned and copied on a side stream that the step's stream waits for."""
        ready: queue.Queue = queue.Queue(maxsize=AHEAD)
        stop = threading.Event()
        pin = self.device.type == "cuda"

        def put(item) -> bool:
            while not stop.is_set():
                try:
                    ready.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def gather_ahead() -> None:
            try:
                for step in steps:
                    if not put(self._gather(self._rows(idx, step), pin)):
                        return
            except BaseException as e:  # handed to the consumer, which raises it in the training thread
                put(_Failed(e))

        thread = threading.Thread(target=gather_ahead, name="selfsup-batch-prefetch", daemon=True)
        thread.start()
        try:
            for _ in steps:
                item = ready.get()
                if isinstance(item, _Failed):
                    raise item.error
                yield self._to_device(item) if pin else item
        finally:  # the consumer stopped (end, break, error): let the thread finish and go
            stop.set()
            thread.join()

    def _to_device(self, batch: torch.Tensor | Rows) -> torch.Tensor | Rows:
        with torch.cuda.stream(self._copy_stream):
            moved = batch.to(self.device, non_blocking=True)
            copied = torch.cuda.Event()
            copied.record(self._copy_stream)
        compute = torch.cuda.current_stream(self.device)
        compute.wait_event(copied)
        samples, extras = unpack(moved)
        for t in (samples, *extras.values()):
            t.record_stream(compute)  # their memory is used on the compute stream from here on
        return moved


def _take(samples: torch.Tensor, rows: torch.Tensor, pin: bool = False) -> torch.Tensor:
    """``samples[rows]`` into a new tensor (pinned with ``pin``). On the CPU with numpy's ``take``: one
    thread, outside the GIL, and it copies whole rows, where torch's gathers (``index_select``,
    indexing) parallelise over a few rows with OpenMP and slow down many times over when the
    step's own threads hold the cores, and indexing copies uint8 element by element."""
    out = torch.empty((len(rows), *samples.shape[1:]), dtype=samples.dtype, device=samples.device, pin_memory=pin)
    if samples.device.type == "cpu" and samples.dtype in _NUMPY:
        np.take(samples.numpy(), rows.numpy(), axis=0, out=out.numpy(), mode="clip")  # "clip": no buffering
    else:
        torch.index_select(samples, 0, rows, out=out)
    return out


_NUMPY = {torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.float16, torch.float32, torch.float64}


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error
