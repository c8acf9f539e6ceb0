"""A first-in-first-out memory of embeddings (MoCo's queue of negatives, NNCLR's support set,
SwAV's feature queue), written once. It is a buffer, so checkpoints capture it."""

from __future__ import annotations

import torch
from torch import nn


class MemoryQueue(nn.Module):
    """``size`` rows of ``dim`` features; :meth:`push` overwrites the oldest rows.

    ``items`` returns the filled rows only (all of them once the queue has wrapped around), so a
    method never reads the zero-initialised part. Filling is tracked on the device: no host sync.
    """

    def __init__(self, size: int, dim: int):
        super().__init__()
        self.register_buffer("rows", torch.zeros(size, dim))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))

    @property
    def size(self) -> int:
        return self.rows.shape[0]

    @torch.no_grad()
    def push(self, x: torch.Tensor) -> None:
        x = x.detach().to(self.rows.dtype)
        n = x.shape[0]
        assert n <= self.size, "a push larger than the queue"
        idx = (self.ptr + torch.arange(n, device=x.device)) % self.size
        self.rows.index_copy_(0, idx, x)
        self.ptr.copy_((self.ptr + n) % self.size)
        self.filled.copy_(torch.clamp(self.filled + n, max=self.size))

    def items(self) -> torch.Tensor:
        """The filled rows (a host sync only until the queue is full, then none)."""
        if getattr(self, "_full", False):
            return self.rows
        filled = int(self.filled)
        self._full = filled == self.size
        return self.rows[:filled]
