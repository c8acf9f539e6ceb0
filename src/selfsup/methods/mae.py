"""MAE: Masked Autoencoders Are Scalable Vision Learners (He, Chen, Xie, Li, Dollar & Girshick 2022,
CVPR, arXiv:2111.06377).

A random 75% of each image's patches is removed (Sec. 3, "Masking"); the ViT encoder sees the
visible patches only, a light decoder with mask tokens predicts every patch's pixels, and the loss
is the MSE on the masked patches, against per-patch normalised pixels by default (Sec. 3,
"Reconstruction target"; Table 1d).

Notes on defaults and deviations: docs/methods/mae.md
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..backbones.vit import Block, init_weights, patchify, require_vit, sincos_2d, unpatchify
from ..errors import UsageError
from ..modalities.base import ViewPlan
from .base import Method
from .parts.masking import random_keep


def masked_patch_loss(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, norm_pix: bool = True
) -> torch.Tensor:
    """MAE's loss: per-patch MSE between ``pred`` and ``target`` (N, L, P), averaged over the
    patches where ``mask`` (N, L) is 1; with ``norm_pix`` each target patch is first normalised
    by its own mean and (unbiased) variance + 1e-6."""
    target = target.float()
    if norm_pix:
        mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1e-6) ** 0.5
    per_patch = (pred.float() - target).pow(2).mean(dim=-1)
    return (per_patch * mask).sum() / mask.sum()


class MAE(Method):
    name = "mae"
    paper = "He et al. 2022, Masked Autoencoders Are Scalable Vision Learners (arXiv:2111.06377)"
    modalities = ("image",)

    @dataclass
    class Args:
        mask_ratio: float = 0.75  # fraction of patches removed (paper: 75%)
        decoder_dim: int = 128  # decoder width (paper: 512 at 224 px; see docs/methods/mae.md)
        decoder_depth: int = 4  # decoder blocks (paper: 8)
        decoder_heads: int = 4  # decoder attention heads (paper: 16)
        norm_pix_loss: bool = True  # normalise each target patch by its mean and std (paper: yes)

    def __init__(self, backbone: nn.Module, args: MAE.Args):
        super().__init__(backbone, args)
        vit = require_vit(self.name, backbone)
        if not 0.0 < args.mask_ratio < 1.0:
            raise UsageError(f"mae: mask_ratio must be in (0, 1), got {args.mask_ratio}")
        if args.decoder_dim % 4 or args.decoder_dim % args.decoder_heads:
            raise UsageError(
                f"mae: decoder_dim ({args.decoder_dim}) must be divisible by 4 and by decoder_heads "
                f"({args.decoder_heads})"
            )
        d = args.decoder_dim
        self.decoder_embed = nn.Linear(vit.embed_dim, d)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d))
        pos = torch.cat([torch.zeros(1, d), sincos_2d(vit.grid, d)])  # class token at position zero
        self.register_buffer("decoder_pos_embed", pos[None], persistent=False)
        self.decoder_blocks = nn.ModuleList(Block(d, args.decoder_heads, 4.0) for _ in range(args.decoder_depth))
        self.decoder_norm = nn.LayerNorm(d, eps=1e-6)
        self.decoder_pred = nn.Linear(d, vit.patch_size**2 * vit.in_channels)
        for module in (self.decoder_embed, self.decoder_blocks, self.decoder_norm, self.decoder_pred):
            module.apply(init_weights)
        nn.init.normal_(self.mask_token, std=0.02)

    @staticmethod
    def view_plan(args) -> ViewPlan:
        return ViewPlan("masked", "mae")  # random resized crop (scale 0.2-1) and horizontal flip

    def decode(self, encoded: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Encoded [class token + visible tokens] (N, 1 + K, D) -> predicted pixels (N, L, p*p*C)
        for every patch: visible tokens go back to their positions, mask tokens fill the rest."""
        x = self.decoder_embed(encoded)
        n, length = x.shape[0], self.backbone.num_patches
        full = self.mask_token.to(x.dtype).expand(n, length, -1)
        full = full.scatter(1, keep[..., None].expand(-1, -1, x.shape[-1]), x[:, 1:])
        x = torch.cat([x[:, :1], full], dim=1) + self.decoder_pos_embed.to(x.dtype)
        for block in self.decoder_blocks:
            x = block(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]

    def reconstruct(self, x: torch.Tensor, generator: torch.Generator | None = None):
        """(prediction (N, L, p*p*C), mask (N, L) with 1 = masked) for a batch of images."""
        vit = self.backbone
        tokens = vit.embed(x)
        keep, mask = random_keep(x.shape[0], vit.num_patches, self.args.mask_ratio, x.device, generator)
        return self.decode(vit.encode(tokens, keep), keep), mask

    def forward(self, views):
        (x,) = views
        pred, mask = self.reconstruct(x)
        loss = masked_patch_loss(pred, patchify(x, self.backbone.patch_size), mask, self.args.norm_pix_loss)
        return {"loss": loss}

    @torch.no_grad()
    def visualize(self, x: torch.Tensor, seed: int = 0) -> dict:
        """``masked``: ``x`` with the masked patches set to 0 (the mean of the normalised space);
        ``reconstruction``: the predicted masked patches with the visible ones pasted back. Both
        shaped like ``x``, in its (normalised) space. The mask is drawn from ``seed``."""
        was_training = self.training
        self.eval()
        try:
            p, c = self.backbone.patch_size, x.shape[1]
            generator = torch.Generator(device=x.device).manual_seed(seed)
            pred, mask = self.reconstruct(x, generator)
            pred = pred.float()
            target = patchify(x.float(), p)
            if self.args.norm_pix_loss:
                mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
                pred = pred * (var + 1e-6) ** 0.5 + mean
            m = mask[..., None]
            masked = unpatchify(target * (1 - m), p, c)
            reconstruction = unpatchify(target * (1 - m) + pred * m, p, c)
        finally:
            self.train(was_training)
        return {"masked": masked.to(x.dtype), "reconstruction": reconstruction.to(x.dtype)}
