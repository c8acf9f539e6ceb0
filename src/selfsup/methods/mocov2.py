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
  CIFAR demo's split BatchNorm: queries go through the backbone in ``bn_splits`` chunks and keys in
  ``bn_splits`` chunks of a random permutation of the batch, so a query and its key are not
  normalised with the statistics of the same images.
* ``momentum_schedule``: ``constant`` (MoCo's) or ``cosine`` (BYOL's increase of m to 1).
"""
from __future__ import annotations

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


def _in_chunks(net: nn.Module, x: torch.Tensor, splits: int) -> torch.Tensor:
    """``net`` on ``splits`` chunks of ``x`` (BatchNorm statistics per chunk), concatenated."""
    if splits <= 1:
        return net(x)
    return torch.cat([net(c) for c in x.chunk(splits)])


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
        return F.normalize(_in_chunks(self._online(), x, self.args.bn_splits), dim=1)

    @torch.no_grad()
    def _key(self, x: torch.Tensor) -> torch.Tensor:
        splits = self.args.bn_splits
        if splits <= 1:
            return F.normalize(self.key_encoder(x), dim=1)
        perm = torch.randperm(x.shape[0], device=x.device)  # MoCo's batch shuffle, on one device
        k = _in_chunks(self.key_encoder, x[perm], splits)
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
