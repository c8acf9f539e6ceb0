"""VIME's self-supervised stage (Yoon, Zhang, Jordon & van der Schaar 2020, "VIME: Extending the
Success of Self- and Semi-supervised Learning to Tabular Domain", NeurIPS).

Each row is corrupted by mask-and-replace (a mask m ~ Bernoulli(p_m) per entry, masked entries
drawn from their column's marginal: the table modality's ``swap`` view, Sec. 4.1); from the
encoder's representation of the corrupted row, a mask estimator predicts which entries changed
and a feature estimator reconstructs the clean row, trained on ``l_m + alpha * l_r`` (Sec. 4.1,
Eq. 3; the authors' ``vime_self.py``).

Notes on defaults and deviations: docs/methods/vime.md
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import UsageError
from ..losses.tabular import vime_terms
from ..modalities.base import ViewPlan
from .base import Method
from .parts.rows import RowDecoder


class VIME(Method):
    name = "vime"
    paper = (
        "Yoon et al. 2020, VIME: Extending the Success of Self- and Semi-supervised Learning to Tabular Domain "
        "(NeurIPS 2020)"
    )
    modalities = ("table",)
    sync_bn = False

    @dataclass
    class Args:
        p_m: float = 0.3  # the authors' main.py default
        alpha: float = 2.0  # the authors' main.py default (loss weight of the feature estimator)

    def __init__(self, backbone: nn.Module, args: VIME.Args):
        super().__init__(backbone, args)
        if not 0 < args.p_m < 1 or args.alpha < 0:
            raise UsageError("vime: p_m must be in (0, 1) and alpha >= 0")
        meta = getattr(backbone, "meta", None)
        if meta is None:
            raise UsageError("vime needs a table backbone (mlp or ft-transformer)")
        self.mask_head = nn.Linear(backbone.feature_dim, len(meta["columns"]))
        self.feature_head = RowDecoder(meta, backbone.feature_dim)

    @staticmethod
    def view_plan(args) -> ViewPlan:
        return ViewPlan("asymmetric_pair", "vime", options={"p_m": args.p_m})

    def forward(self, views):
        clean, corrupted = views
        h = self.backbone(corrupted)
        mask = (corrupted != clean).float()  # the code's m_new = 1 * (x != x_tilde)
        num, logits = self.feature_head(h)
        d = self.feature_head
        mask_loss, recon_loss = vime_terms(
            self.mask_head(h),
            mask,
            num if len(d.numeric_idx) else None,
            clean.index_select(1, d.numeric_idx),
            logits,
            clean.index_select(1, d.categorical_idx),
        )
        with torch.no_grad():  # the representation of clean rows, for the online probes
            features = self.backbone(clean)
        return {
            "loss": mask_loss + self.args.alpha * recon_loss,
            "mask_loss": mask_loss.detach(),
            "recon_loss": recon_loss.detach(),
            "features": features,
        }
