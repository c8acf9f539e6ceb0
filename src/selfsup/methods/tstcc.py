"""TS-TCC: Time-Series Representation Learning via Temporal and Contextual Contrasting (Eldele, Ragab,
Chen, Wu, Kwoh, Li & Guan 2021, IJCAI, arXiv:2106.14112).

A weak (scaling) and a strong (permutation + jitter) view of each series go through the CNN encoder
(Sec. 4.1). Temporal contrasting (Sec. 4.2): a transformer summarises one view's feature map up
to a random time step into a context ``c_t``, and ``W_k c_t`` must pick out the *other* view's feature
at step ``t + k`` among the batch's, for k = 1..K, both ways round. Contextual contrasting (Sec. 4.3):
NT-Xent (temperature 0.2, cosine) between the two views' projected contexts. The loss is
``lambda1 (L_TC^s + L_TC^w) + lambda2 L_CC`` with lambda1 = 1, lambda2 = 0.7 (Sec. 4.4; trainer.py).

Notes on defaults and deviations: docs/methods/tstcc.md
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..distributed import gather
from ..errors import UsageError
from ..losses.series import tstcc_contextual_contrast, tstcc_temporal_contrast
from ..modalities.base import ViewPlan
from .base import Method


class _Attention(nn.Module):
    """Multi-head self-attention as TS-TCC's ``attention.py``: scores scaled by the model width's
    ``dim ** -0.5`` (not the head width's), dropout after the output projection."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.scale = heads, dim**-0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Sequential(nn.Linear(dim, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q @ k.transpose(-2, -1) * self.scale + bias).softmax(dim=-1)
        return self.out((attn @ v).transpose(1, 2).reshape(b, n, d))


class SeqTransformer(nn.Module):
    """TS-TCC's ``Seq_Transformer``: a linear embedding of each time step, a learned context token first,
    ``depth`` pre-norm blocks (attention, ReLU feed-forward, residuals), the context token's output."""

    def __init__(self, in_dim: int, dim: int = 100, depth: int = 4, heads: int = 4, mlp_dim: int = 64, dropout=0.1):
        super().__init__()
        self.embed = nn.Linear(in_dim, dim)
        self.c_token = nn.Parameter(torch.randn(1, 1, dim))
        self.blocks = nn.ModuleList(
            nn.ModuleList(
                [
                    nn.LayerNorm(dim),
                    _Attention(dim, heads, dropout),
                    nn.LayerNorm(dim),
                    nn.Sequential(
                        nn.Linear(dim, mlp_dim),
                        nn.ReLU(),
                        nn.Dropout(dropout),
                        nn.Linear(mlp_dim, dim),
                        nn.Dropout(dropout),
                    ),
                ]
            )
            for _ in range(depth)
        )

    def forward(self, seq: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """The context token's output after attending to the steps of ``seq`` (B, T', C) where ``keep``
        (B, T') is True: the code's ``Seq_Transformer(z[:, :t + 1])`` without a shape that depends on t."""
        x = self.embed(seq)
        x = torch.cat([self.c_token.expand(len(x), -1, -1).to(x.dtype), x], dim=1)
        visible = torch.cat([keep.new_ones((len(keep), 1)), keep], dim=1)  # the context token always
        bias = torch.zeros(visible.shape, dtype=x.dtype, device=x.device).masked_fill(~visible, float("-inf"))
        bias = bias[:, None, None, :]  # (B, heads, queries, keys)
        for norm1, attn, norm2, ff in self.blocks:
            x = x + attn(norm1(x), bias)
            x = x + ff(norm2(x))
        return x[:, 0]


class TSTCC(Method):
    name = "tstcc"
    paper = (
        "Eldele et al. 2021, Time-Series Representation Learning via Temporal and Contextual Contrasting "
        "(arXiv:2106.14112)"
    )
    modalities = ("series",)
    sync_bn = False  # trained on one GPU

    @dataclass
    class Args:
        timesteps: int = 6  # K future steps predicted (HAR config; Epilepsy: 10)
        hidden_dim: int = 100  # the transformer's width (configs' TC.hidden_dim)
        depth: int = 4
        heads: int = 4
        mlp_dim: int = 64
        temperature: float = 0.2  # contextual contrasting (every config)
        lambda1: float = 1.0  # temporal contrasting weight (trainer.py)
        lambda2: float = 0.7  # contextual contrasting weight

    def __init__(self, backbone: nn.Module, args: TSTCC.Args):
        super().__init__(backbone, args)
        if not hasattr(backbone, "feature_map"):
            raise UsageError("tstcc needs its CNN encoder's feature map: use model.backbone=tstcc-cnn")
        channels = backbone.out_channels
        self.transformer = SeqTransformer(channels, args.hidden_dim, args.depth, args.heads, args.mlp_dim)
        self.predictors = nn.ModuleList(nn.Linear(args.hidden_dim, channels) for _ in range(args.timesteps))
        # The code's projection head on the context (TC.py): Linear - BN - ReLU - Linear, C/2 and C/4 wide.
        self.context_head = nn.Sequential(
            nn.Linear(args.hidden_dim, channels // 2),
            nn.BatchNorm1d(channels // 2),
            nn.ReLU(),
            nn.Linear(channels // 2, channels // 4),
        )

    @staticmethod
    def view_plan(args) -> ViewPlan:
        return ViewPlan("asymmetric_pair", "tstcc")

    def temporal_contrast(self, own: torch.Tensor, other: torch.Tensor, n: torch.Tensor, t: torch.Tensor, k: int):
        """TS-TCC's ``TC.forward``: the context of ``own`` (B, T', C) up to step ``t`` predicts ``other`` at
        ``t + 1 .. t + k``. Returns the loss and the context ``(B, hidden)``. ``t`` is a 0-d tensor: the
        steps after it are masked out of the transformer, so no shape depends on it. ``n`` (B,): each
        series' valid length in the feature map; steps at or after it are neither read nor predicted."""
        steps = torch.arange(own.shape[1], device=own.device)
        ahead = t + 1 + torch.arange(k, device=own.device)
        targets = other.index_select(1, ahead).transpose(0, 1)  # (K, B, C)
        context = self.transformer(own, (steps[None, :] <= t) & (steps[None, :] < n[:, None]))
        predictions = torch.stack([w(context) for w in self.predictors[:k]])  # (K, B, C)
        valid = ahead[:, None] < n[None, :]  # (K, B): a target inside each series
        return tstcc_temporal_contrast(targets, predictions, valid), context

    def forward(self, views):
        weak, strong = views
        (h_weak, n_weak), (h_strong, n_strong) = self.backbone.feature_map(weak), self.backbone.feature_map(strong)
        f_weak = F.normalize(h_weak, dim=1).transpose(1, 2)  # (B, T', C), unit norm per step (trainer.py)
        f_strong = F.normalize(h_strong, dim=1).transpose(1, 2)
        steps = h_weak.shape[-1]
        if steps < 2:
            raise UsageError(f"tstcc: the encoder leaves {steps} time step of these series; use longer series")
        k = min(self.args.timesteps, steps - 1)  # short series: fewer future steps than K (see the docs)
        # One random step per batch (TC.py), drawn on the device: t in [0, T' - k).
        t = (torch.rand((), device=h_weak.device) * (steps - k)).long().clamp(max=steps - k - 1)
        n = torch.minimum(n_weak, n_strong)
        loss_w, c_weak = self.temporal_contrast(f_weak, f_strong, n, t, k)
        loss_s, c_strong = self.temporal_contrast(f_strong, f_weak, n, t, k)
        z_weak, z_strong = self.context_head(c_weak), self.context_head(c_strong)
        contextual = tstcc_contextual_contrast(gather(z_weak), gather(z_strong), self.args.temperature)
        loss = self.args.lambda1 * (loss_w + loss_s) + self.args.lambda2 * contextual
        features = self.backbone.pool_map(h_weak.detach(), n_weak)
        return {
            "loss": loss,
            "features": features,
            "temporal": (loss_w + loss_s).detach(),
            "contextual": contextual.detach(),
        }
