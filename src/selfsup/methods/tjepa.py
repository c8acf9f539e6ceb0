"""T-JEPA: Augmentation-Free Self-Supervised Learning for Tabular Data (Thimonier, De Melo Costa,
Popineau, Rimmel & Doan 2025, ICLR, arXiv:2410.05016).

The feature tokens of a row are split into one context set and four target sets disjoint from it
(the authors' ``MaskCollator``); a context encoder (an FT-Transformer, with [REG] tokens) encodes
the context tokens only, an EMA copy of it (momentum 0.996 -> 1) encodes the full row, and a
separate Transformer predictor predicts the target tokens' representations from the context's,
with a mean squared error (Sec. 3; github.com/jose-melo/t-jepa, ``src/train.py``,
``src/predictors.py``). The target encoder is exported; its representation is every output token
side by side (``model.pool: flatten``), what the authors' downstream models read.

Notes on defaults and deviations: docs/methods/tjepa.md
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones.ft_transformer import FTTransformer
from ..errors import UsageError
from ..modalities.base import ViewPlan
from .base import Method
from .parts.teacher import MomentumTeacher


def sincos_1d(length: int, dim: int) -> torch.Tensor:
    """(length, dim) fixed sin-cos position embeddings (the code's ``get_1d_sincos_pos_embed``)."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0))
    out = torch.arange(length, dtype=torch.float64)[:, None] * omega[None]
    return torch.cat([out.sin(), out.cos()], dim=1).float()


def mask_sizes(
    n_features: int,
    ctx_share: tuple[float, float],
    trgt_share: tuple[float, float],
    generator: torch.Generator | None = None,
) -> tuple[int, int]:
    """The batch's context and target sizes, as the code's ``MaskCollator``: each drawn as
    ``min + round((max - min) * U)`` between ``round(F * share)`` bounds, redrawn until
    ``context + target <= F``. Drawn on the host (torch's CPU generator by default: they are
    shapes, and the checkpoint keeps that generator's state)."""
    lo_c, hi_c = round(n_features * ctx_share[0]), round(n_features * ctx_share[1])
    lo_t, hi_t = round(n_features * trgt_share[0]), round(n_features * trgt_share[1])
    while True:
        u = torch.rand(2, generator=generator).tolist()  # a CPU tensor: no device sync
        n_ctx, n_trgt = lo_c + round((hi_c - lo_c) * u[0]), lo_t + round((hi_t - lo_t) * u[1])
        if n_ctx + n_trgt <= n_features:
            return n_ctx, n_trgt


def feature_masks(
    n: int, n_features: int, n_ctx: int, n_trgt: int, num_targets: int, device, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: ``context`` (n, n_ctx) uniformly random feature indices, and ``targets``
    (n, num_targets, n_trgt), each target a uniformly random set among the features not in the
    context (targets may overlap each other, never the context), as the code's ``create_masks``."""
    order = torch.rand(n, n_features, device=device, generator=generator).argsort(dim=1)
    context, rest = order[:, :n_ctx], order[:, n_ctx:]
    pick = torch.rand(n, num_targets, n_features - n_ctx, device=device, generator=generator).argsort(dim=2)
    targets = torch.gather(rest[:, None].expand(-1, num_targets, -1), 2, pick[:, :, :n_trgt])
    return context, targets


class Predictor(nn.Module):
    """The authors' ``TransformerPredictor``: context outputs mapped to ``dim`` plus their position
    embeddings, one mask token (shared, plus its position embedding) per target position, a
    post-norm Transformer (``TabularEncoder``: layers, then LayerNorm, Linear, LayerNorm), a final
    LayerNorm and a map back to the encoder width; the targets are predicted in independent
    passes, batched."""

    def __init__(self, n_positions: int, embed_dim: int, dim: int, depth: int, heads: int, ffn: int, dropout: float):
        super().__init__()
        self.embed = nn.Linear(embed_dim, dim)
        self.register_buffer("pos_embed", sincos_1d(n_positions, dim), persistent=False)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        layer = nn.TransformerEncoderLayer(dim, heads, ffn, dropout, batch_first=True)
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.tail = nn.Sequential(
            nn.Dropout(dropout),
            nn.LayerNorm(dim),
            nn.Linear(dim, dim),
            nn.Dropout(dropout),
            nn.LayerNorm(dim),
            nn.LayerNorm(dim),
        )
        self.proj = nn.Linear(dim, embed_dim)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    def forward(self, context: torch.Tensor, context_pos: torch.Tensor, target_pos: torch.Tensor) -> torch.Tensor:
        """``context`` (N, C, E) at positions ``context_pos`` (N, C); ``target_pos`` (N, M, T).
        Returns predictions (N, M, T, E)."""
        n, m, t = target_pos.shape
        x = self.embed(context) + self.pos_embed[context_pos]
        queries = self.mask_token + self.pos_embed[target_pos]  # (N, M, T, dim)
        x = torch.cat([x[:, None].expand(-1, m, -1, -1), queries], dim=2).flatten(0, 1)
        x = self.tail(self.blocks(x))[:, -t:]
        return self.proj(x).reshape(n, m, t, -1)


class TJEPA(Method):
    name = "tjepa"
    paper = (
        "Thimonier et al. 2025, T-JEPA: Augmentation-Free Self-Supervised Learning for Tabular Data (arXiv:2410.05016)"
    )
    modalities = ("table",)
    sync_bn = False

    @dataclass
    class Args:
        num_targets: int = 4  # mask_num_preds
        ctx_share: tuple[float, float] = (0.2, 0.4)  # mask_min/max_ctx_share (src/configs.py defaults)
        trgt_share: tuple[float, float] = (0.2, 0.4)  # mask_min/max_trgt_share
        pred_depth: int = 2  # pred_num_layers
        pred_dim: int = 64  # pred_embed_dim
        pred_heads: int = 4  # pred_num_heads
        pred_ffn: int = 256  # pred_dim_feedforward
        pred_dropout: float = 0.0
        tau_base: float = 0.996  # model_ema_start
        tau_end: float = 1.0  # model_ema_end

    def __init__(self, backbone: nn.Module, args: TJEPA.Args):
        super().__init__(backbone, args)
        if not isinstance(backbone, FTTransformer):
            raise UsageError("tjepa encodes feature tokens; set model.backbone=ft-transformer")
        for name in ("ctx_share", "trgt_share"):
            lo, hi = getattr(args, name)
            if not 0 < lo <= hi < 1:
                raise UsageError(f"tjepa: {name} must be two shares 0 < min <= max < 1, got {(lo, hi)}")
        if args.num_targets < 1 or args.pred_dim % args.pred_heads or args.pred_dim % 2:
            raise UsageError("tjepa: num_targets >= 1, and pred_dim even and divisible by pred_heads")
        f = backbone.n_features
        if round(f * args.ctx_share[0]) < 1 or round(f * args.trgt_share[0]) < 1:
            raise UsageError(f"tjepa: {f} features leave an empty context or target at these shares")
        if round(f * args.ctx_share[0]) + round(f * args.trgt_share[0]) > f:
            raise UsageError(f"tjepa: the smallest context and target do not fit in {f} features")
        self.predictor = Predictor(
            backbone.n_prefix + f,
            backbone.d_token,
            args.pred_dim,
            args.pred_depth,
            args.pred_heads,
            args.pred_ffn,
            args.pred_dropout,
        )
        self.target = MomentumTeacher(backbone, args.tau_base, "linear", args.tau_end)

    @staticmethod
    def view_plan(args) -> ViewPlan:
        return ViewPlan("masked", "tjepa")

    @property
    def encoder(self) -> nn.Module:
        return self.target.net

    def forward(self, views):
        (x,) = views
        net, a = self.backbone, self.args
        n, f, p = x.shape[0], net.n_features, net.n_prefix
        n_ctx, n_trgt = mask_sizes(f, a.ctx_share, a.trgt_share)
        context, targets = feature_masks(n, f, n_ctx, n_trgt, a.num_targets, x.device)
        with torch.no_grad():
            h = self.target.net.encode(self.target.net.tokenize(x))  # (N, P + F, D): the full row
            index = targets.reshape(n, -1, 1).expand(-1, -1, h.shape[-1])
            wanted = torch.gather(h[:, p:], 1, index).reshape(*targets.shape, -1)  # (N, M, T, D)
        z = net.encode(net.tokenize(x), keep=context)  # (N, P + C, D): prefix tokens and the context only
        prefix = torch.arange(p, device=x.device).expand(n, -1)
        pred = self.predictor(z, torch.cat([prefix, context + p], dim=1), targets + p)
        loss = F.mse_loss(pred.float(), wanted.float())
        return {
            "loss": loss,
            "features": self.target.net.pooled(h),
            "context_tokens": float(n_ctx),
            "target_tokens": float(n_trgt),
        }

    def momentum_pairs(self):
        return [(self.target, self.backbone)]
