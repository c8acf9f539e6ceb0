"""TS2Vec: Towards Universal Representation of Time Series (Yue, Wang, Duan, Yang, Huang, Tong & Xu
2022, AAAI, arXiv:2106.10466).

Two overlapping random crops of each series (Sec. 3.2, "contextual consistency") go through the
dilated-convolution encoder under a random timestamp mask the method draws; on the timestamps the
crops share, the hierarchical contrastive loss (Sec. 3.3, Algorithm 1) contrasts each timestamp against the other series
of the batch (instance-wise) and against the other timestamps of its series (temporal), at every level
of max-pooling by 2, with weight alpha = 0.5. Representations come from a running average of the
encoder's weights (the code's ``torch.optim.swa_utils.AveragedModel``), max-pooled over time.

Notes on defaults and deviations: docs/methods/ts2vec.md
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import UsageError
from ..losses.series import hierarchical_contrastive_loss
from ..modalities.base import ViewPlan
from ..modalities.series.ops import span_mask, timestamp_mask, ts2vec_crops
from .base import Method


class TS2Vec(Method):
    name = "ts2vec"
    paper = "Yue et al. 2022, TS2Vec: Towards Universal Representation of Time Series (arXiv:2106.10466)"
    modalities = ("series",)
    sync_bn = False  # the paper trains on one GPU; its encoder has no BatchNorm

    @dataclass
    class Args:
        alpha: float = 0.5  # weight of the instance-wise term (Sec. 3.3; code default)
        temporal_unit: int = 0  # first pooling level with a temporal term; crops span >= 2**(unit+1) steps
        max_train_length: int = 3000  # longer series: one random window of this length per batch

    def __init__(self, backbone: nn.Module, args: TS2Vec.Args):
        super().__init__(backbone, args)
        if not getattr(backbone, "timestep_features", False):
            raise UsageError(
                "ts2vec needs a backbone with an output per timestamp: ts2vec-encoder, fcn or resnet1d "
                "(set model.backbone)"
            )
        if not 0.0 <= args.alpha <= 1.0:
            raise UsageError(f"ts2vec: alpha must be in [0, 1], got {args.alpha}")
        # The averaged network the representations come from (AveragedModel: the mean of the weights
        # after every step, the initial ones included); a copy, never trained by gradients.
        self.averaged = copy.deepcopy(backbone).requires_grad_(False)
        self.register_buffer("n_averaged", torch.ones((), dtype=torch.long))

    @staticmethod
    def view_plan(args) -> ViewPlan:
        return ViewPlan("single", "ts2vec", options={"max_length": args.max_train_length})

    @property
    def encoder(self) -> nn.Module:
        return self.averaged

    def forward(self, views):
        (x,) = views
        if x.shape[-1] < 2 ** (self.args.temporal_unit + 1):
            raise UsageError(
                f"ts2vec: series of {x.shape[-1]} steps are shorter than the shortest crop "
                f"(2 ** (temporal_unit + 1) = {2 ** (self.args.temporal_unit + 1)}); lower method_args.temporal_unit"
            )
        # Crop lengths and positions: the batch-wide integers from the CPU's default generator (they set
        # shapes; no device sync), the per-series offsets from the device's (Sec. 3.2, ts2vec.py fit).
        crops = ts2vec_crops(x, None, None, self.args.temporal_unit)
        out1 = self._encode(crops.view1)
        out2 = self._encode(crops.view2)
        z1, z2 = crops.overlapping(out1, out2)
        valid = torch.stack(crops.overlapping(span_mask(crops.view1)[..., None], span_mask(crops.view2)[..., None]))
        mask = valid.all(dim=0)[..., 0]  # data in both crops (a shorter series' padding is not)
        loss = hierarchical_contrastive_loss(z1, z2, self.args.alpha, self.args.temporal_unit, mask)
        pooled = out1.masked_fill(~span_mask(crops.view1)[..., None], float("-inf")).amax(dim=1)
        return {"loss": loss, "features": torch.nan_to_num(pooled, neginf=0.0).detach()}

    def _encode(self, view: torch.Tensor) -> torch.Tensor:
        """The backbone's per-timestamp output under TS2Vec's random timestamp mask (Sec. 3.2, the code's
        ``generate_binomial_mask``, keep probability ``model.mask_p``) from the device's default
        generator, for the encoders that take one (``ts2vec-encoder``); FCN and ResNet1D get none. Each
        crop's mask is drawn just before its pass, so the random stream is the one the encoder drew from
        when it masked itself."""
        p = getattr(self.backbone, "mask_p", None)
        if p is None:
            return self.backbone.encode(view)
        return self.backbone.encode(view, timestamp_mask(view.shape[0], view.shape[2], None, p, device=view.device))

    @torch.no_grad()
    def after_step(self, step: int, total_steps: int) -> dict:
        """``AveragedModel.update_parameters``: avg += (w - avg) / (n + 1); buffers follow the online net."""
        self.n_averaged += 1
        weight = 1.0 / self.n_averaged.to(torch.float32)
        for avg, online in zip(self.averaged.parameters(), self.backbone.parameters()):
            avg.lerp_(online.detach(), weight.to(avg.dtype))
        for avg, online in zip(self.averaged.buffers(), self.backbone.buffers()):
            avg.copy_(online)
        return {}
