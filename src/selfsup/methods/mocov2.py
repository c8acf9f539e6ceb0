"""MoCo v2: Improved Baselines with Momentum Contrastive Learning (Chen, Fan, Girshick & He 2020,
arXiv:2003.04297), on MoCo (He, Fan, Wu, Xie & Girshick 2020, CVPR, arXiv:1911.05722).

A query encoder (backbone + fc-ReLU-fc head) picks the key of its image, encoded by a momentum copy
of itself (MoCo Eq. 2), out of a queue of keys of earlier batches (MoCo Sec. 3.2), with InfoNCE
(MoCo Eq. 1). Keys are enqueued after the step; ``bn_splits`` emulates Shuffling BN on one device.

Notes on defaults and deviations: docs/methods/mocov2.md
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..distributed import gather_nograd
from ..errors import UsageError
from ..losses import infonce
from ..modalities.base import ViewPlan
from .base import Method
from .parts.queue import MemoryQueue
from .parts.teacher import MomentumTeacher


def _grouped_bn(bn: nn.BatchNorm2d, groups: int, x: torch.Tensor) -> torch.Tensor:
    """``bn`` in training mode with statistics per group of ``len(x) / groups`` consecutive
    samples, computed in float32 (or the input's wider type); the running statistics move by the
    groups' mean update, as the SplitBatchNorm of the MoCo authors' CIFAR demo."""
    if not bn.training or groups <= 1:
        return nn.BatchNorm2d.forward(bn, x)
    n, c, h, w = x.shape
    if n % groups:
        raise UsageError(f"method_args.bn_splits={groups} must divide the batch of {n} images on this process")
    xg = x.view(groups, n // groups, c, h, w)  # a view, in the input's memory format
    xg = xg.to(torch.promote_types(xg.dtype, torch.float32))  # statistics in float32 at least
    var, mean = torch.var_mean(xg, dim=(1, 3, 4), unbiased=False, keepdim=True)  # (groups, 1, c, 1, 1)
    scale = torch.rsqrt(var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.to(xg.dtype).view(1, 1, c, 1, 1)
    shift = -mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias.to(xg.dtype).view(1, 1, c, 1, 1)
    y = torch.addcmul(shift, xg, scale).to(x.dtype).reshape(n, c, h, w)
    if bn.track_running_stats:
        with torch.no_grad():
            bn.num_batches_tracked.add_(1)
            # momentum None: BatchNorm's cumulative average, kept on the device (no host sync)
            momentum = bn.momentum if bn.momentum is not None else 1.0 / bn.num_batches_tracked.to(var.dtype)
            count = (n // groups) * h * w
            bn.running_mean.lerp_(mean.mean(0).flatten().to(bn.running_mean.dtype), momentum)
            unbiased = var * (count / max(count - 1, 1))
            bn.running_var.lerp_(unbiased.mean(0).flatten().to(bn.running_var.dtype), momentum)
    return y  # the elementwise ops keep the input's layout, so channels_last stays channels_last


@contextlib.contextmanager
def grouped_batchnorm(net: nn.Module, groups: int):
    """Within the block, every BatchNorm2d of ``net`` in training mode normalises ``groups``
    groups of consecutive samples with their own statistics (MoCo's shuffling BN on one device)."""
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)] if groups > 1 else []
    for bn in bns:
        bn.forward = functools.partial(_grouped_bn, bn, groups)
    try:
        yield
    finally:
        for bn in bns:
            del bn.forward


def _in_groups(net: nn.Module, head: nn.Module, x: torch.Tensor, splits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``net(x)`` and ``head(net(x))`` with BatchNorm statistics per group of ``splits`` consecutive
    chunks: one grouped pass, or a pass per chunk where ``splits`` does not divide the batch (uneven
    chunks). The head has no BatchNorm2d (MoCo v2's fc-ReLU-fc)."""
    if splits > 1 and len(x) % splits:
        parts = [(h, head(h)) for h in (net(c) for c in x.chunk(splits))]
        return torch.cat([h for h, _ in parts]), torch.cat([out for _, out in parts])
    with grouped_batchnorm(net, splits):
        h = net(x)
    return h, head(h)


class MoCoV2(Method):
    name = "mocov2"
    paper = "Chen et al. 2020, Improved Baselines with Momentum Contrastive Learning (arXiv:2003.04297)"

    sync_bn = False  # the paper shuffles BatchNorm across GPUs instead; per-process BN here

    @dataclass
    class Args:
        proj_hidden: int = 2048  # MoCo v2: fc(2048)-ReLU-fc(128)
        proj_dim: int = 128
        temperature: float = 0.2  # MoCo v2 Table 1
        queue_size: int = 4096  # K; the paper's 65536 is for ImageNet's 1.28M images
        momentum: float = 0.99  # m; the paper's 0.999 is for ImageNet's long runs
        momentum_schedule: str = "constant"  # constant (the paper) | cosine (m -> 1, BYOL)
        symmetric: bool = False  # the paper's loss is asymmetric
        bn_splits: int = 1  # > 1: emulate Shuffling BN with this many BatchNorm groups

    def __init__(self, backbone: nn.Module, args: MoCoV2.Args):
        super().__init__(backbone, args)
        if args.momentum_schedule not in ("constant", "cosine"):
            raise UsageError(
                f"method_args.momentum_schedule must be constant or cosine, got {args.momentum_schedule!r}"
            )
        if args.bn_splits < 1:
            raise UsageError(f"method_args.bn_splits must be at least 1, got {args.bn_splits}")
        self.projector = nn.Sequential(
            nn.Linear(backbone.feature_dim, args.proj_hidden),
            nn.ReLU(inplace=True),
            nn.Linear(args.proj_hidden, args.proj_dim),
        )
        schedule = "cosine" if args.momentum_schedule == "cosine" else "constant"
        self.key_encoder = MomentumTeacher(self._online(), args.momentum, schedule, log_name="momentum")
        self.queue = MemoryQueue(args.queue_size, args.proj_dim)
        self.queue.push(F.normalize(torch.randn(args.queue_size, args.proj_dim), dim=1))
        self._pending: torch.Tensor | None = None

    def _online(self) -> nn.Sequential:
        return nn.Sequential(self.backbone, self.projector)

    @staticmethod
    def view_plan(args) -> ViewPlan:
        return ViewPlan("pair", "mocov2")

    def _query(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The normalised queries of ``x`` and the backbone features they come from."""
        h, q = _in_groups(self.backbone, self.projector, x, self.args.bn_splits)
        return F.normalize(q, dim=1), h

    @torch.no_grad()
    def _key(self, x: torch.Tensor) -> torch.Tensor:
        splits = self.args.bn_splits
        if splits <= 1:
            return F.normalize(self.key_encoder(x), dim=1)
        perm = torch.randperm(x.shape[0], device=x.device)  # MoCo's batch shuffle, on one device
        backbone, projector = self.key_encoder.net
        k = _in_groups(backbone, projector, x[perm], splits)[1]
        return F.normalize(k[torch.argsort(perm)], dim=1)

    def forward(self, views):
        v1, v2 = views
        negatives = self.queue.items()
        t = self.args.temperature
        k2 = self._key(v2)
        q1, h1 = self._query(v1)
        loss = infonce(q1, k2, t, negatives=negatives)
        keys = k2
        if self.args.symmetric:
            k1 = self._key(v1)
            loss = (loss + infonce(self._query(v2)[0], k1, t, negatives=negatives)) / 2
            keys = torch.cat([k2, k1])
        if self.training:
            self._pending = gather_nograd(
                keys.detach()
            )  # every rank's keys, enqueued after the step: never a negative of its own batch
        return {"loss": loss, "features": h1.detach()}

    def momentum_pairs(self):
        return [(self.key_encoder, self._online())]

    def after_step(self, step, total_steps):
        logs = super().after_step(step, total_steps)
        if self._pending is not None:
            self.queue.push(self._pending)
            self._pending = None
        return logs
