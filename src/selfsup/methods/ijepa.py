"""I-JEPA: Self-Supervised Learning from Images with a Joint-Embedding Predictive Architecture
(Assran et al. 2023, CVPR, arXiv:2301.08243).

From one context block of an image, a narrow ViT predictor predicts the representations (not the
pixels) that an EMA target encoder gives to several target blocks of the same image (Sec. 3);
loss: Eq. 4. Follows the authors' code (github.com/facebookresearch/ijepa).

Notes on defaults and deviations: docs/methods/ijepa.md
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones.vit import Block, require_vit, sincos_2d
from ..errors import UsageError
from ..modalities.base import ViewPlan
from .base import Method
from .parts.blockmask import multiblock_masks
from .parts.teacher import MomentumTeacher

LOSSES = ("l2", "smooth_l1")


def gather_tokens(tokens: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``tokens`` (N, L, D), ``index`` (N, ...) -> (N, ..., D)."""
    n, d = tokens.shape[0], tokens.shape[-1]
    flat = index.reshape(n, -1)
    out = torch.gather(tokens, 1, flat[..., None].expand(-1, -1, d))
    return out.reshape(*index.shape, d)


class Predictor(nn.Module):
    """I-JEPA's narrow ViT predictor (the authors' ``VisionTransformerPredictor``)."""

    def __init__(self, grid: int, embed_dim: int, dim: int, depth: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.embed = nn.Linear(embed_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.register_buffer("pos_embed", sincos_2d(grid, dim)[None])
        self.blocks = nn.ModuleList(Block(dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.proj = nn.Linear(dim, embed_dim)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        with torch.no_grad():  # the authors' fix_init_weight
            for layer, block in enumerate(self.blocks, start=1):
                block.attn.proj.weight.div_(math.sqrt(2.0 * layer))
                block.mlp[2].weight.div_(math.sqrt(2.0 * layer))

    def forward(self, context: torch.Tensor, context_idx: torch.Tensor, target_idx: torch.Tensor) -> torch.Tensor:
        """``context`` (N, Kc, D) encoded context tokens at positions ``context_idx`` (N, Kc);
        ``target_idx`` (N, M, Kt). Returns predictions (N, M, Kt, D)."""
        n, m, kt = target_idx.shape
        pos = self.pos_embed.to(context.dtype).expand(n, -1, -1)
        x = self.embed(context) + gather_tokens(pos, context_idx)  # (N, Kc, d)
        queries = self.mask_token.to(x.dtype) + gather_tokens(pos, target_idx)  # (N, M, Kt, d)
        x = torch.cat([x[:, None].expand(-1, m, -1, -1), queries], dim=2)  # (N, M, Kc + Kt, d)
        x = x.reshape(n * m, -1, x.shape[-1])
        for block in self.blocks:
            x = block(x)
        x = self.proj(self.norm(x[:, -kt:]))
        return x.reshape(n, m, kt, -1)


class IJEPA(Method):
    name = "ijepa"
    paper = (
        "Assran et al. 2023, Self-Supervised Learning from Images with a Joint-Embedding Predictive Architecture "
        "(arXiv:2301.08243)"
    )
    modalities = ("image",)

    @dataclass
    class Args:
        num_targets: int = 4
        target_scale: tuple[float, float] = (0.15, 0.2)
        target_aspect: tuple[float, float] = (0.75, 1.5)
        context_scale: tuple[float, float] = (0.85, 1.0)
        min_keep: int = 0  # fewest context tokens (0: 5% of the grid, the authors' 10 at 14x14)
        pred_depth: int = 6
        pred_dim: int = 0  # 0: half the encoder width
        pred_heads: int = 0  # 0: the encoder's head count
        tau_base: float = 0.996
        tau_end: float = 1.0
        loss: str = "l2"  # l2 (the paper's Eq. 4) | smooth_l1 (the authors' code)
        eval_target: bool = True  # evaluate/export the target encoder (the paper's choice)
        crop_scale: tuple[float, float] = (0.3, 1.0)

    def __init__(self, backbone: nn.Module, args: IJEPA.Args):
        super().__init__(backbone, args)
        vit = require_vit(self.name, backbone)
        if args.loss not in LOSSES:
            raise UsageError(f"ijepa: loss must be one of {', '.join(LOSSES)}, got {args.loss!r}")
        if args.num_targets < 1:
            raise UsageError("ijepa: num_targets must be at least 1")
        dim = args.pred_dim or max(4, vit.embed_dim // 2 // 4 * 4)
        heads = args.pred_heads or vit.num_heads
        if dim % 4 or dim % heads:
            raise UsageError(f"ijepa: pred_dim {dim} must be divisible by 4 (sin-cos positions) and by {heads} heads")
        self.predictor = Predictor(vit.grid, vit.embed_dim, dim, args.pred_depth, heads, vit.mlp_ratio)
        self.target = MomentumTeacher(self.backbone, args.tau_base, "linear", args.tau_end)

    @staticmethod
    def view_plan(args: IJEPA.Args) -> ViewPlan:
        return ViewPlan("masked", "ijepa", options={"crop_scale": args.crop_scale})

    @property
    def encoder(self) -> nn.Module:
        return self.target.net if self.args.eval_target else self.backbone

    def masks(self, n: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.args
        return multiblock_masks(
            n,
            self.backbone.grid,
            a.num_targets,
            a.target_scale,
            a.target_aspect,
            a.context_scale,
            min_keep=a.min_keep,
            device=device,
        )

    def forward(self, views):
        (x,) = views
        context_idx, target_idx = self.masks(x.shape[0], x.device)
        with torch.no_grad():
            target_vit = self.target.net
            h = target_vit.encode(target_vit.embed(x))[:, 1:]
            h = F.layer_norm(h.float(), (h.shape[-1],))
            targets = gather_tokens(h, target_idx)  # (N, M, Kt, D)
        z = self.backbone.encode(self.backbone.embed(x), keep=context_idx)[:, 1:]  # context tokens only
        pred = self.predictor(z, context_idx, target_idx).float()
        loss = F.mse_loss(pred, targets) if self.args.loss == "l2" else F.smooth_l1_loss(pred, targets)
        return {
            "loss": loss,
            "context_tokens": float(context_idx.shape[1]),
            "target_tokens": float(target_idx.shape[1] * target_idx.shape[2]),
        }

    def momentum_pairs(self):
        return [(self.target, self.backbone)]
