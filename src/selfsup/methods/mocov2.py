"""MoCo v2: Improved Baselines with Momentum Contrastive Learning (Chen, Fan, Girshick & He 2020,
arXiv:2003.04297), on MoCo (He, Fan, Wu, Xie & Girshick 2020, CVPR, arXiv:1911.05722).

A query encoder (backbone + 2-layer MLP head fc-ReLU-fc, MoCo v2 Sec. 2, no BatchNorm in the head)
is trained to pick the key of its image, encoded by a momentum copy of itself (MoCo Eq. 2,
``theta_k <- m theta_k + (1 - m) theta_q``, m constant), out of a queue of K keys of earlier
batches (MoCo Sec. 3.2, Algorithm 1), with InfoNCE at temperature 0.2 (MoCo Eq. 1, MoCo v2 Table 1).

Queue: the keys of a step are pushed in :meth:`MoCoV2.after_step`, after the loss, so the loss
only ever contrasts against keys of previous steps; like the authors' code, the queue starts full of
random unit vectors. Views: MoCo v2's "aug+" (:func:`mocov2_views`).

Decisions the paper leaves to the setting:

* ``symmetric`` (default False, the paper's asymmetric loss on view 1 -> key of view 2): True
  averages the loss over both view orders and pushes both views' keys (the "MoCo v2+" of
  solo-learn and of MoCo v3's Sec. 4, which reports that symmetrisation helps).
* ``bn_splits`` (default 1: off): Shuffling BN (MoCo Sec. 3.3) on one device, as in the authors'
  CIFAR demo's split BatchNorm: every BatchNorm2d normalises the queries in ``bn_splits`` groups
  of consecutive samples and the keys in ``bn_splits`` groups of a random permutation of the batch,
  so a query and its key are not normalised with the statistics of the same images. It is one pass
  over the whole batch with statistics per group (:func:`grouped_batchnorm`), the arithmetic of
  running the network on each chunk, at the kernel count of one pass; the running statistics
  follow the demo's SplitBatchNorm (each group's update, averaged over the groups).
* ``momentum_schedule``: ``constant`` (MoCo's) or ``cosine`` (BYOL's increase of m to 1).
"""
from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..augment.views import ViewConfig
from ..errors import UsageError
from ..losses import infonce
from ..distributed import gather_nograd
from .base import Method, views_of_size
from .queue import MemoryQueue
from .teacher import MomentumTeacher, cosine_tau


def mocov2_views(size: int = 32) -> list[ViewConfig]:
    """MoCo v2's "aug+" (Chen et al. 2020, Sec. 2 and the authors' code), the same for both views:
    random resized crop (scale 0.2-1) with flip, colour jitter (0.4, 0.4, 0.4, 0.1) with probability
    0.8, grayscale with probability 0.2 and Gaussian blur (sigma 0.1-2) with probability 0.5.
    SimSiam uses the same augmentation."""
    view = dict(size=size, crop_scale=(0.2, 1.0), flip_p=0.5, jitter_p=0.8, brightness=0.4, contrast=0.4,
                saturation=0.4, hue=0.1, grayscale_p=0.2, blur_p=0.5, solarize_p=0.0)
    return [ViewConfig(**view), ViewConfig(**view)]


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


def _in_groups(net: nn.Module, x: torch.Tensor, splits: int) -> torch.Tensor:
    """``net`` on ``x`` with BatchNorm statistics per group of ``splits`` consecutive chunks: one
    grouped pass, or a pass per chunk where ``splits`` does not divide the batch (uneven chunks)."""
    if splits > 1 and len(x) % splits:
        return torch.cat([net(c) for c in x.chunk(splits)])
    with grouped_batchnorm(net, splits):
        return net(x)


class MoCoV2(Method):
    name = "mocov2"
    paper = "Chen et al. 2020, Improved Baselines with Momentum Contrastive Learning (arXiv:2003.04297)"

    sync_bn = False  # the paper shuffles BatchNorm across GPUs instead; per-process BN here

    @dataclass
    class Args:
        proj_hidden: int = 2048       # MoCo v2: fc(2048)-ReLU-fc(128)
        proj_dim: int = 128
        temperature: float = 0.2      # MoCo v2 Table 1
        queue_size: int = 4096        # K; the paper's 65536 is for ImageNet's 1.28M images
        momentum: float = 0.99        # m; the paper's 0.999 is for ImageNet's long runs
        momentum_schedule: str = "constant"  # constant (the paper) | cosine (m -> 1, BYOL)
        symmetric: bool = False       # the paper's loss is asymmetric
        bn_splits: int = 1            # > 1: emulate Shuffling BN with this many BatchNorm groups

    def __init__(self, backbone: nn.Module, args: "MoCoV2.Args"):
        super().__init__(backbone, args)
        if args.momentum_schedule not in ("constant", "cosine"):
            raise UsageError(f"method_args.momentum_schedule must be constant or cosine, got {args.momentum_schedule!r}")
        if args.bn_splits < 1:
            raise UsageError(f"method_args.bn_splits must be at least 1, got {args.bn_splits}")
        self.projector = nn.Sequential(nn.Linear(backbone.feature_dim, args.proj_hidden), nn.ReLU(inplace=True),
                                       nn.Linear(args.proj_hidden, args.proj_dim))
        self.key_encoder = MomentumTeacher(self._online())
        self.queue = MemoryQueue(args.queue_size, args.proj_dim)
        self.queue.push(F.normalize(torch.randn(args.queue_size, args.proj_dim), dim=1))
        self._pending: torch.Tensor | None = None
        self._m = args.momentum

    def _online(self) -> nn.Sequential:
        return nn.Sequential(self.backbone, self.projector)

    default_views = views_of_size(mocov2_views)

    def _query(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(_in_groups(self._online(), x, self.args.bn_splits), dim=1)

    @torch.no_grad()
    def _key(self, x: torch.Tensor) -> torch.Tensor:
        splits = self.args.bn_splits
        if splits <= 1:
            return F.normalize(self.key_encoder(x), dim=1)
        perm = torch.randperm(x.shape[0], device=x.device)  # MoCo's batch shuffle, on one device
        k = _in_groups(self.key_encoder, x[perm], splits)
        return F.normalize(k[torch.argsort(perm)], dim=1)

    def forward(self, views):
        v1, v2 = views
        negatives = self.queue.items()
        t = self.args.temperature
        k2 = self._key(v2)
        loss = infonce(self._query(v1), k2, t, negatives=negatives)
        keys = k2
        if self.args.symmetric:
            k1 = self._key(v1)
            loss = (loss + infonce(self._query(v2), k1, t, negatives=negatives)) / 2
            keys = torch.cat([k2, k1])
        if self.training:
            self._pending = gather_nograd(keys.detach())  # every rank's keys  # enqueued after the step: never a negative of its own batch
        return {"loss": loss}

    def after_step(self, step, total_steps):
        if self.args.momentum_schedule == "cosine":
            self._m = cosine_tau(step - 1, total_steps, self.args.momentum)
        self.key_encoder.update(self._online(), self._m)
        if self._pending is not None:
            self.queue.push(self._pending)
            self._pending = None
        return {"momentum": self._m}
