"""MAE (He, Chen, Xie, Li, Dollar & Girshick 2022, "Masked Autoencoders Are Scalable Vision
Learners", CVPR, arXiv:2111.06377).

What is implemented, by section of the paper:

* Masking (Sec. 3, "Masking"): a uniformly random subset of patches per image is removed, ratio
  75% by default (``mask_ratio``, Fig. 5 / Table 1c), by MAE's argsort-of-noise shuffle
  (:func:`~selfsup.methods.masking.random_keep`).
* Encoder (Sec. 3, "MAE encoder"): the backbone ViT with its position embeddings added before
  masking, applied to the visible patches only (and the class token): masked patches never enter
  the encoder (``VisionTransformer.encode(tokens, keep)``).
* Decoder (Sec. 3, "MAE decoder"): a linear projection of the encoded tokens to the decoder
  width, a shared learned mask token for every removed patch, fixed 2-D sin-cos position
  embeddings for the full set (the class token's position is zero, as the authors' code), pre-norm
  transformer blocks, a LayerNorm and a linear layer to ``p*p*C`` pixel values per patch. The
  paper's default decoder (8 blocks of width 512, Table 1a/b) is sized for 196 tokens of ViT-L;
  for the 64 tokens of 32x32 (or 16x16) images the default here is 4 blocks of width 128 with 4
  heads (``decoder_depth``, ``decoder_dim``, ``decoder_heads``) - a decision of this library, the
  paper's ablation shows a "lightweight" decoder suffices for fine-tuning (Table 1a, 1 block
  within 0.2 points) while depth helps linear probing.
* Reconstruction target and loss (Sec. 3, "Reconstruction target"; Table 1d): mean squared error
  between predicted and true pixels, on masked patches only (the sum of per-patch MSE over masked
  patches divided by their count), with each target patch normalised by its own mean and
  standard deviation (``norm_pix_loss``, default true, "normalized pixels" in Table 1d; variance
  + 1e-6 as the authors' code). The pixels are those of the normalised view the loop gives
  (dataset mean/std), as the authors' code, whose inputs are ImageNet-normalised.
* Data augmentation (Sec. 4 / Table 1e): random resized crop (scale 0.2-1, the authors' code)
  and horizontal flip only; one view per image.

Initialisation as the authors' code: Xavier-uniform linears with zero bias, mask token normal(0.02).
Optimiser (not part of the method): AdamW as the paper (Table 8: lr 1.5e-4 per 256, weight decay
0.05, betas (0.9, 0.95) - this library's AdamW keeps torch's default betas (0.9, 0.999)).

:meth:`MAE.visualize` gives, for the report, the masked input and the reconstruction with the
visible patches pasted back (as the authors' demo notebook, "reconstruction + visible"), with a
norm-pix prediction de-normalised by the true patches' mean and variance (the notebook's
visualisation does the same).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..augment.views import ViewConfig
from ..backbones.vit import Block, VisionTransformer, init_weights, patchify, sincos_2d, unpatchify
from ..errors import UsageError
from .base import Method
from .masking import random_keep


def require_vit(backbone: nn.Module, method: str) -> VisionTransformer:
    if not isinstance(backbone, VisionTransformer):
        raise UsageError(f"{method} needs a vision transformer backbone (model.backbone: vit-tiny, vit-small or "
                         f"vit-base), got {type(backbone).__name__}")
    return backbone


def masked_patch_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                      norm_pix: bool = True) -> torch.Tensor:
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

    @dataclass
    class Args:
        mask_ratio: float = 0.75      # fraction of patches removed (paper: 75%)
        decoder_dim: int = 128        # decoder width (paper: 512 at 224 px; see the module docstring)
        decoder_depth: int = 4        # decoder blocks (paper: 8)
        decoder_heads: int = 4        # decoder attention heads (paper: 16)
        norm_pix_loss: bool = True    # normalise each target patch by its mean and std (paper: yes)

    def __init__(self, backbone: nn.Module, args: "MAE.Args"):
        super().__init__(backbone, args)
        vit = require_vit(backbone, "mae")
        if not 0.0 < args.mask_ratio < 1.0:
            raise UsageError(f"mae: mask_ratio must be in (0, 1), got {args.mask_ratio}")
        if args.decoder_dim % 4 or args.decoder_dim % args.decoder_heads:
            raise UsageError(f"mae: decoder_dim ({args.decoder_dim}) must be divisible by 4 and by decoder_heads "
                             f"({args.decoder_heads})")
        d = args.decoder_dim
        self.decoder_embed = nn.Linear(vit.embed_dim, d)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d))
        pos = torch.cat([torch.zeros(1, d), sincos_2d(vit.grid, d)])  # class token at position zero
        self.register_buffer("decoder_pos_embed", pos[None], persistent=False)
        self.decoder_blocks = nn.ModuleList(Block(d, args.decoder_heads, 4.0) for _ in range(args.decoder_depth))
        self.decoder_norm = nn.LayerNorm(d, eps=1e-6)
        self.decoder_pred = nn.Linear(d, vit.patch_size ** 2 * vit.in_channels)
        for module in (self.decoder_embed, self.decoder_blocks, self.decoder_norm, self.decoder_pred):
            module.apply(init_weights)
        nn.init.normal_(self.mask_token, std=0.02)

    @staticmethod
    def default_views(size: int, args=None) -> list:
        """One view: random resized crop (scale 0.2-1) and horizontal flip, nothing else."""
        return [ViewConfig(size=size, crop_scale=(0.2, 1.0), flip_p=0.5, jitter_p=0.0, grayscale_p=0.0,
                           blur_p=0.0, solarize_p=0.0)]

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
