"""I-JEPA: Image-based Joint-Embedding Predictive Architecture (Assran et al. 2023, "Self-Supervised
Learning from Images with a Joint-Embedding Predictive Architecture", CVPR, arXiv:2301.08243).

From one context block of an image, a predictor predicts the *representations* (not the pixels)
of several target blocks of the same image. Implemented as Sec. 3 and the authors' code
(github.com/facebookresearch/ijepa, ``src/train.py``, ``src/models/vision_transformer.py``,
``src/masks/multiblock.py``):

* Masks: :func:`~selfsup.methods.blockmask.multiblock_masks`: ``M = 4`` target blocks (scale 0.15-0.2,
  aspect 0.75-1.5) and one context block (scale 0.85-1, aspect 1) with every target region removed
  from it (Sec. 3, "Context"/"Targets"; scaled to small grids as documented there).
* Targets: the *target encoder*, an EMA copy of the context encoder, encodes the full image; its
  output tokens (after the final norm) are layer-normalised once more without affine parameters
  (the code's ``F.layer_norm(h, (h.size(-1),))``) and the tokens of each target block are the
  targets ``s_y(i)``. No gradient reaches the target encoder.
* Context: the context encoder sees only the context tokens (``encode(keep=context)``: the other
  tokens never enter its blocks), each with its position embedding.
* Predictor (``VisionTransformerPredictor``): a narrow ViT. The context encoder's output is mapped
  to the predictor width, the predictor's own fixed 2-D sin-cos position embedding of each context
  token is added, and for each target block a set of mask tokens (one shared learnt vector plus
  the position embedding of each target position) is appended; after the blocks and a LayerNorm
  the mask tokens' outputs are mapped back to the encoder width. The four target blocks are
  predicted in four independent passes (batched), as the code.
* Loss (Eq. 4): ``1/M sum_i sum_(j in B_i) ||s_hat_yj - s_yj||_2^2``, here as the mean squared error
  over all predicted values (the same up to a constant; ``loss: smooth_l1`` gives the authors'
  code's ``F.smooth_l1_loss``).
* Target-encoder momentum: linear from 0.996 to 1 over training (Sec. 4 / App. A: "updated via an
  exponential moving average ... starting at 0.996 and linearly increased to 1.0").
* Views: one random resized crop of scale (0.3, 1), nothing else (the code's ``crop_scale`` and
  ``use_horizontal_flip/color_distortion/gaussian_blur: false``).
* Evaluation: the paper evaluates the target encoder with average-pooled patch tokens (App. B);
  ``eval_target: true`` exports it, and the recipes set ``model.pool: mean``.

Decisions where the paper and code say nothing for our backbone: the paper's ViTs have no class
token, ours always carries one through ``forward()`` (the evaluation path); both encoders run with
it here (it is never a target and the predictor does not see it), so that the evaluated network
sees at test time exactly the token set it was trained on. The predictor's width defaults to half
the encoder's (ViT-B's 768 -> 384 in the paper's ablations) with the encoder's head count, depth 6;
its init is the authors' (truncated normal 0.02, residual projections divided by
``sqrt(2 * layer)``). Optimiser in the paper: AdamW, lr 1e-3 (batch 2048) after a linear warm-up,
cosine decay, weight decay 0.04 -> 0.4 (constant in our loop).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..augment.views import ViewConfig
from ..backbones.vit import Block, sincos_2d
from ..errors import UsageError
from .base import Method
from .blockmask import multiblock_masks
from .gmml import require_vit
from .teacher import MomentumTeacher

LOSSES = ("l2", "smooth_l1")


def linear_tau(step: int, total_steps: int, tau_base: float, tau_end: float = 1.0) -> float:
    """I-JEPA's momentum at optimiser step ``step`` of ``total_steps``: linear from base to end."""
    progress = min(step / max(total_steps, 1), 1.0)
    return tau_base + (tau_end - tau_base) * progress


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
        x = self.embed(context) + gather_tokens(pos, context_idx)                 # (N, Kc, d)
        queries = self.mask_token.to(x.dtype) + gather_tokens(pos, target_idx)   # (N, M, Kt, d)
        x = torch.cat([x[:, None].expand(-1, m, -1, -1), queries], dim=2)        # (N, M, Kc + Kt, d)
        x = x.reshape(n * m, -1, x.shape[-1])
        for block in self.blocks:
            x = block(x)
        x = self.proj(self.norm(x[:, -kt:]))
        return x.reshape(n, m, kt, -1)


class IJEPA(Method):
    name = "ijepa"
    paper = "Assran et al. 2023, Self-Supervised Learning from Images with a Joint-Embedding Predictive Architecture (arXiv:2301.08243)"

    @dataclass
    class Args:
        num_targets: int = 4
        target_scale: tuple[float, float] = (0.15, 0.2)
        target_aspect: tuple[float, float] = (0.75, 1.5)
        context_scale: tuple[float, float] = (0.85, 1.0)
        min_keep: int = 0                 # fewest context tokens (0: 5% of the grid, the authors' 10 at 14x14)
        pred_depth: int = 6
        pred_dim: int = 0                 # 0: half the encoder width
        pred_heads: int = 0               # 0: the encoder's head count
        tau_base: float = 0.996
        tau_end: float = 1.0
        loss: str = "l2"                  # l2 (the paper's Eq. 4) | smooth_l1 (the authors' code)
        eval_target: bool = True          # evaluate/export the target encoder (the paper's choice)
        crop_scale: tuple[float, float] = (0.3, 1.0)

    def __init__(self, backbone: nn.Module, args: "IJEPA.Args"):
        super().__init__(backbone, args)
        vit = require_vit(self.name, backbone)
        if args.loss not in LOSSES:
            raise UsageError(f"ijepa: loss must be one of {', '.join(LOSSES)}, got {args.loss!r}")
        if args.num_targets < 1:
            raise UsageError("ijepa: num_targets must be at least 1")
        dim = args.pred_dim or max(4, vit.embed_dim // 2 // 4 * 4)
        heads = args.pred_heads or vit.num_heads
        if dim % 4 or dim % heads:
            raise UsageError(f"ijepa: pred_dim {dim} must be divisible by 4 (sin-cos positions) and by "
                             f"{heads} heads")
        self.predictor = Predictor(vit.grid, vit.embed_dim, dim, args.pred_depth, heads, vit.mlp_ratio)
        self.target = MomentumTeacher(self.backbone)
        self._tau = args.tau_base

    @staticmethod
    def default_views(size: int, args: "IJEPA.Args | None" = None) -> list:
        args = args or IJEPA.Args()
        return [ViewConfig(size=size, crop_scale=args.crop_scale, flip_p=0.0, jitter_p=0.0, grayscale_p=0.0,
                           blur_p=0.0, solarize_p=0.0)]

    @property
    def encoder(self) -> nn.Module:
        return self.target.net if self.args.eval_target else self.backbone

    def masks(self, n: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.args
        return multiblock_masks(n, self.backbone.grid, a.num_targets, a.target_scale, a.target_aspect,
                                a.context_scale, min_keep=a.min_keep, device=device)

    def forward(self, views):
        (x,) = views
        context_idx, target_idx = self.masks(x.shape[0], x.device)
        with torch.no_grad():
            target_vit = self.target.net
            h = target_vit.encode(target_vit.embed(x))[:, 1:]
            h = F.layer_norm(h.float(), (h.shape[-1],))
            targets = gather_tokens(h, target_idx)                                   # (N, M, Kt, D)
        z = self.backbone.encode(self.backbone.embed(x), keep=context_idx)[:, 1:]    # context tokens only
        pred = self.predictor(z, context_idx, target_idx).float()
        loss = F.mse_loss(pred, targets) if self.args.loss == "l2" else F.smooth_l1_loss(pred, targets)
        return {"loss": loss, "context_tokens": float(context_idx.shape[1]),
                "target_tokens": float(target_idx.shape[1] * target_idx.shape[2])}

    def after_step(self, step, total_steps):
        # ``step`` optimiser steps have been taken; tau for the update that follows step k=step-1.
        self._tau = linear_tau(step - 1, total_steps, self.args.tau_base, self.args.tau_end)
        self.target.update(self.backbone, self._tau)
        return {"tau": self._tau}
