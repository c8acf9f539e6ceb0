"""Training on several processes with PyTorch's own stack: ``torch.distributed`` and DDP, launched
by ``torchrun`` (one process per GPU, or per CPU "rank" with the gloo backend).

selfsup reads torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``...)
and never launches processes itself. The conventions every part of the library follows:

* ``train.batch_size`` is the *global* batch. Each of ``w`` ranks trains on ``batch_size / w``
  images; the learning rate scales with the global batch, so a recipe means the same experiment
  on any number of processes, and a checkpoint resumes on another number of processes.
* Rank ``r`` takes every ``w``-th image of the global batch (positions ``r, r + w, ...``; see
  :class:`~selfsup.data.loader.BatchLoader`), draws the augmentation parameters of the *whole*
  global batch from the shared seed and keeps its rows, and :func:`gather` puts gathered rows back
  in global-batch order. A run on ``w`` processes therefore computes what one process computes on
  the global batch, up to floating-point summation order (the tests check this).
* Batch-wide losses see the global batch: methods gather their embeddings with :func:`gather`,
  whose backward returns to every rank the gradient of its own rows (``all_gather`` with autograd),
  and compute the loss of the global batch. DDP averages gradients over ranks, which makes the
  update exactly the single-process update.
* Rank 0 alone writes files; every rank holds the same model, optimiser and queue state.

Collectives time out after ``train.dist_timeout`` seconds, so a rank that dies or hangs ends the
job with an error instead of a hang; ``torchrun`` also stops the other ranks when one exits with an
error, and shows which one.
"""

from __future__ import annotations

import atexit
import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from .errors import UsageError


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched() -> bool:
    """True inside a process that torchrun started for a job of more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(timeout_s: float) -> Context:
    """Join the process group torchrun described, a no-op for a single process; returns this
    process's place in the job. Backends: gloo for CPU tensors, and NCCL for CUDA tensors where
    CUDA is available (PyTorch picks per tensor)."""
    if not launched():
        return Context()
    if not dist.is_initialized():
        backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
        atexit.register(cleanup)  # once, at exit: re-creating the group in one process is fragile
    return context()


def context() -> Context:
    if not (dist.is_available() and dist.is_initialized()):
        return Context()
    return Context(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def cleanup() -> None:
    global _GROUP
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _GROUP = None


def _interleave(parts: list[torch.Tensor]) -> torch.Tensor:
    """Rows of rank r's part are global positions r, r + w, ...: put them back in global order."""
    return torch.stack(parts, dim=1).flatten(0, 1)


def gather(x: torch.Tensor) -> torch.Tensor:
    """The global batch's rows of ``x`` (in global-batch order) with gradients flowing back to each
    rank's own rows; ``x`` itself in a single process. Every rank must pass the same shape."""
    if world_size() == 1:
        return x
    return _interleave(list(_AllGather.apply(x.contiguous())))


_GROUP = None


def _group():
    """A process group of its own for the collectives inside forward and backward (gathers,
    global BatchNorm), so they never queue behind or interleave with DDP's gradient buckets."""
    global _GROUP
    if _GROUP is None:
        _GROUP = dist.new_group()
    return _GROUP


class _AllGather(torch.autograd.Function):
    """all_gather whose backward hands each rank the summed gradient of its own rows."""

    @staticmethod
    def forward(ctx, x):
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x, group=_group())
        return tuple(parts)

    @staticmethod
    def backward(ctx, *grads):
        grad = torch.stack(grads)
        dist.all_reduce(grad, dist.ReduceOp.SUM, group=_group())  # every rank's loss uses every rank's rows
        return grad[dist.get_rank()]


class _AllReduceSum(torch.autograd.Function):
    """all_reduce (sum) whose backward is the all-reduced gradient (every rank's output is the sum)."""

    @staticmethod
    def forward(ctx, x):
        x = x.clone()
        dist.all_reduce(x, dist.ReduceOp.SUM, group=_group())
        return x

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        dist.all_reduce(grad, dist.ReduceOp.SUM, group=_group())
        return grad


@torch.no_grad()
def gather_nograd(x: torch.Tensor) -> torch.Tensor:
    """:func:`gather` without gradients (keys, labels, features for evaluation)."""
    if world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.contiguous())
    return _interleave(parts)


def all_reduce_(x: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """In-place all-reduce (``sum``, ``mean`` or ``max``), no gradients; ``x`` unchanged alone."""
    if world_size() == 1:
        return x
    if op == "mean":
        dist.all_reduce(x, dist.ReduceOp.SUM)
        return x.div_(world_size())
    dist.all_reduce(x, {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}[op])
    return x


def broadcast_object(obj, src: int = 0):
    """Rank ``src``'s ``obj`` on every rank (a pickled object: checkpoints, errors, flags)."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_objects(obj) -> list:
    if world_size() == 1:
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def shard_rows(n: int, ctx: Context) -> torch.Tensor:
    """The row indices of ``n`` that rank ``ctx.rank`` handles in a sharded pass (evaluation):
    every ``w``-th row, padded by repeating the last row so every rank has the same count."""
    per = -(-n // ctx.world_size)
    idx = torch.arange(ctx.rank, per * ctx.world_size, ctx.world_size)
    return idx.clamp(max=n - 1)


def unshard_rows(local: torch.Tensor, n: int) -> torch.Tensor:
    """The inverse of :func:`shard_rows` after a gather: the ``n`` rows in order, padding dropped."""
    return gather_nograd(local)[:n]


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch normalisation with statistics over the global batch, for ranks on the CPU.

    PyTorch's ``SyncBatchNorm`` accepts GPU tensors only; this module does the same computation
    with autograd-aware all-reduces (gloo), so CPU jobs and the tests can keep BatchNorm
    identical to one process on the global batch. Two passes (mean, then the centred second
    moment) for the same accuracy as ``F.batch_norm``. The parameters and buffers are a
    ``BatchNorm``'s, so checkpoints move freely between one and several processes.
    """

    def _check_input_dim(self, input):
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {input.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or world_size() == 1:
            return nn.functional.batch_norm(
                x,
                self.running_mean,
                self.running_var,
                self.weight,
                self.bias,
                self.training or self.running_mean is None,
                self.momentum or 0.0,
                self.eps,
            )
        dims = [0] + list(range(2, x.dim()))
        shape = [1, -1] + [1] * (x.dim() - 2)
        xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x  # float32 at least
        count = xf.numel() // xf.shape[1] * world_size()
        mean = _AllReduceSum.apply(xf.sum(dims)) / count
        centred = xf - mean.view(shape)
        var = _AllReduceSum.apply((centred * centred).sum(dims)) / count
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * count / max(count - 1, 1), alpha=m)
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def convert_batchnorm(module: nn.Module, device_type: str) -> nn.Module:
    """Every BatchNorm of ``module`` with global-batch statistics: ``nn.SyncBatchNorm`` on GPUs,
    :class:`GlobalBatchNorm` on the CPU. Parameters and buffers are kept, and a BatchNorm reachable
    under two names (a ResNet block's ``bn2`` is also its ``last_bn``) stays one module."""
    cls = nn.SyncBatchNorm if device_type == "cuda" else GlobalBatchNorm
    return _convert(module, cls, {})


def _convert(module: nn.Module, cls: type, memo: dict) -> nn.Module:
    if id(module) in memo:
        return memo[id(module)]
    out = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, cls):
        out = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        if module.affine:
            out.weight, out.bias = module.weight, module.bias
        out.running_mean, out.running_var = module.running_mean, module.running_var
        out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
    memo[id(module)] = out
    for name, child in list(module._modules.items()):  # not named_children(): it skips aliases
        if child is not None:
            out.add_module(name, _convert(child, cls, memo))
    return out


def check_batch(batch_size: int, ctx: Context) -> int:
    """The per-rank batch of a global ``batch_size``."""
    if batch_size % ctx.world_size:
        raise UsageError(
            f"train.batch_size ({batch_size}) is the global batch and must divide evenly over "
            f"{ctx.world_size} processes; choose a multiple of {ctx.world_size}"
        )
    return batch_size // ctx.world_size
