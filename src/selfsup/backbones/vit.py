"""Vision transformers (Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words", arXiv:2010.11929)
with token dropping built in, for masked-image modelling.

* Patches: a ``p x p`` convolution with stride ``p`` embeds the ``grid x grid`` non-overlapping
  patches (row-major order, as :func:`patchify`) into ``D``-dimensional tokens.
* Position embeddings: fixed 2-D sin-cos (``"sincos"``, MAE's ``get_2d_sincos_pos_embed``, He et
  al. 2022, arXiv:2111.06377) stored as a buffer, or learned (``"learned"``, a parameter,
  truncated normal 0.02 as timm). They cover the patch tokens only; the class token gets none (as
  MAE's encoder, whose class-token position is all zeros).
* Blocks: pre-norm, ``x + attn(LN(x))`` then ``x + MLP(LN(x))`` (GELU MLP of ``mlp_ratio * D``),
  multi-head self-attention on :func:`torch.nn.functional.scaled_dot_product_attention`, and a
  final LayerNorm.
* Stochastic depth (``drop_path``, Huang et al. 2016, "Deep Networks with Stochastic Depth",
  arXiv:1603.09382; as DeiT, DINO and MAE's fine-tuning use it): in training, each block's
  attention and MLP branches are dropped per sample with a probability rising linearly from 0 at
  the first block to ``drop_path`` at the last, and kept branches are scaled by ``1 / (1 - p)``
  (so evaluation, which keeps every branch, needs no rescaling). Off (0) by default.
* Token masking: :meth:`VisionTransformer.encode` takes ``keep`` (patch indices per sample) and
  gathers only those tokens before the blocks, so dropped tokens cost nothing (MAE, Sec. 3).
* Initialisation as MAE / timm: linears Xavier-uniform with zero bias, the patch projection
  Xavier-uniform on its flattened weight, class token and learned position embeddings normal
  (truncated) with std 0.02, LayerNorm weight 1 and bias 0.

Presets (``build_vit``): ``vit-tiny`` (D=192, depth 12, 3 heads; DeiT-Ti), ``vit-small`` (384, 12,
6; DeiT-S), ``vit-base`` (768, 12, 12; ViT-B). ``patch_size=0`` picks 4 for images of 32 px and
more, 2 below (the 16x16 digits), i.e. 8x8 tokens in both cases.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UsageError
from .registry import Family, register

PRESETS = {
    "vit-tiny": dict(embed_dim=192, depth=12, num_heads=3),
    "vit-small": dict(embed_dim=384, depth=12, num_heads=6),
    "vit-base": dict(embed_dim=768, depth=12, num_heads=12),
}
POOLS = ("cls", "mean")
POS_EMBEDS = ("sincos", "learned")


# --------------------------------------------------------------------------------------- patches
def patchify(images: torch.Tensor, p: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, L, p*p*C): non-overlapping ``p x p`` patches in row-major order, each
    flattened as (row in patch, column in patch, channel) like MAE's ``patchify``."""
    n, c, h, w = images.shape
    if h % p or w % p:
        raise ValueError(f"image size {h}x{w} is not divisible by the patch size {p}")
    x = images.reshape(n, c, h // p, p, w // p, p)
    x = x.permute(0, 2, 4, 3, 5, 1)  # n, gh, gw, p, p, c
    return x.reshape(n, (h // p) * (w // p), p * p * c)


def unpatchify(patches: torch.Tensor, p: int, channels: int) -> torch.Tensor:
    """Inverse of :func:`patchify` for square images: (N, L, p*p*C) -> (N, C, H, W)."""
    n, length, dim = patches.shape
    g = math.isqrt(length)
    if g * g != length or dim != p * p * channels:
        raise ValueError(
            f"cannot unpatchify {length} patches of {dim} values as a square image of {p}x{p}x{channels} patches"
        )
    x = patches.reshape(n, g, g, p, p, channels).permute(0, 5, 1, 3, 2, 4)  # n, c, gh, p, gw, p
    return x.reshape(n, channels, g * p, g * p)


def _sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    omega = torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0)
    omega = 1.0 / 10000**omega
    out = positions.reshape(-1).to(torch.float64)[:, None] * omega[None, :]
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1)


def sincos_2d(grid: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sin-cos position embedding of a ``grid x grid`` patch grid, (grid*grid, dim) in
    row-major patch order: half the channels encode the column, half the row, each as
    ``[sin(pos * w_k), cos(pos * w_k)]`` with ``w_k = 1 / 10000^(2k / (dim/2))`` (MAE's
    ``get_2d_sincos_pos_embed``, which puts the column code first)."""
    if dim % 4:
        raise ValueError(f"sin-cos position embeddings need a dimension divisible by 4, got {dim}")
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    emb = torch.cat([_sincos_1d(dim // 2, cols), _sincos_1d(dim // 2, rows)], dim=1)
    return emb.float()


# ---------------------------------------------------------------------------------------- blocks
class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise UsageError(f"embedding dimension {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def _qkv(self, x: torch.Tensor):
        n, length, dim = x.shape
        qkv = self.qkv(x).reshape(n, length, 3, self.num_heads, dim // self.num_heads).permute(2, 0, 3, 1, 4)
        return qkv.unbind(0)  # each (n, heads, length, head_dim)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``attn_mask``: optional, broadcastable to (N, heads, L, L); boolean True = may attend,
        or additive float (as ``scaled_dot_product_attention``)."""
        n, length, dim = x.shape
        q, k, v = self._qkv(x)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.proj(out.transpose(1, 2).reshape(n, length, dim))

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """The softmax attention matrix (N, heads, L, L), for inspection."""
        q, k, _ = self._qkv(x)
        return torch.softmax((q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5, dim=-1)


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth on a residual branch ``x`` (N, ...): zero whole samples with probability
    ``p`` and scale the kept ones by ``1 / (1 - p)``; the identity when not training or ``p == 0``."""
    if p == 0.0 or not training:
        return x
    keep = torch.rand((x.shape[0],) + (1,) * (x.ndim - 1), device=x.device) >= p
    return x * keep.to(x.dtype) / (1.0 - p)


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(LN(x))``, then ``x + MLP(LN(x))``, each branch
    under stochastic depth with probability ``drop_path``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, drop_path: float = 0.0):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.drop_path = drop_path

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + drop_path(self.attn(self.norm1(x), attn_mask), self.drop_path, self.training)
        return x + drop_path(self.mlp(self.norm2(x)), self.drop_path, self.training)


def init_weights(module: nn.Module) -> None:
    """MAE / timm initialisation for one module (use with ``model.apply``)."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


# ----------------------------------------------------------------------------------------- model
class VisionTransformer(nn.Module):
    """Images (N, C, S, S) -> features (N, D); see the module docstring.

    ``embed`` -> ``encode`` -> ``pool_tokens`` is ``forward``; masked-modelling methods call the
    three steps themselves (``encode(tokens, keep)`` drops tokens before the blocks).
    """

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        patch_size: int,
        embed_dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        pool: str = "cls",
        pos_embed: str = "sincos",
        drop_path: float = 0.0,
    ):
        super().__init__()
        _check(image_size, patch_size, pool, pos_embed)
        self.in_channels, self.image_size, self.patch_size = in_channels, image_size, patch_size
        self.embed_dim = self.feature_dim = embed_dim
        self.num_heads, self.depth, self.mlp_ratio = num_heads, depth, mlp_ratio
        self.pool, self.pos_embed_kind = pool, pos_embed
        self.grid = image_size // patch_size
        self.num_patches = self.grid * self.grid
        self.patch_embed = nn.Conv2d(in_channels, embed_dim, patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        if pos_embed == "sincos":
            self.register_buffer("pos_embed", sincos_2d(self.grid, embed_dim)[None])
        else:
            self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches, embed_dim))
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.apply(init_weights)
        w = self.patch_embed.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.patch_embed.bias)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        # What rebuilds this model with the input spec (see backbones.registry); the patch size is
        # the resolved one, and set_drop_path keeps drop_path current.
        self.spec = {"name": None, "options": {"patch_size": patch_size, "pool": pool, "pos_embed": pos_embed}}
        self.set_drop_path(drop_path)

    def set_drop_path(self, rate: float) -> None:
        """Stochastic depth rising linearly over the blocks from 0 to ``rate`` (DeiT's rule)."""
        if not 0.0 <= rate < 1.0:
            raise UsageError(f"drop_path must be in [0, 1), got {rate}")
        for i, block in enumerate(self.blocks):
            block.drop_path = rate * i / max(1, len(self.blocks) - 1)
        self.spec["options"]["drop_path"] = rate  # the spec rebuilds what the model now does (teachers: 0)

    def embed(self, x: torch.Tensor, add_pos: bool = True) -> torch.Tensor:
        """Patch tokens (N, L, D) in row-major order, with the position embedding when ``add_pos``.

        Images of another size than ``image_size`` (multi-crop's local views) get the position
        embedding resized bicubically to their patch grid, as DINO's ``interpolate_pos_encoding``:
        a smaller view is taken to span the same extent as a full one.
        """
        grid = self.patch_embed(x)
        tokens = grid.flatten(2).transpose(1, 2)
        return tokens + self.pos_embed_for(*grid.shape[-2:]).to(tokens.dtype) if add_pos else tokens

    def pos_embed_for(self, rows: int, cols: int) -> torch.Tensor:
        """The patch position embedding (1, rows*cols, D) for a ``rows x cols`` patch grid."""
        if rows == cols == self.grid:
            return self.pos_embed
        pe = self.pos_embed.reshape(1, self.grid, self.grid, -1).permute(0, 3, 1, 2)
        pe = F.interpolate(pe.float(), size=(rows, cols), mode="bicubic", align_corners=False)
        return pe.flatten(2).transpose(1, 2).to(self.pos_embed.dtype)

    def encode(
        self,
        tokens: torch.Tensor,
        keep: torch.Tensor | None = None,
        cls: bool = True,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Transformer on patch tokens (N, L, D) -> (N, [1 +] K, D).

        ``keep``: LongTensor (N, K) of patch indices; only those tokens are gathered (in that order)
        and enter the blocks. ``cls``: prepend the class token. ``attn_mask``: optional mask given to
        every block's attention, over the tokens as they enter the blocks (class token included).
        """
        if keep is not None:
            tokens = torch.gather(tokens, 1, keep[..., None].expand(-1, -1, tokens.shape[-1]))
        if cls:
            tokens = torch.cat([self.cls_token.to(tokens.dtype).expand(tokens.shape[0], -1, -1), tokens], dim=1)
        for block in self.blocks:
            tokens = block(tokens, attn_mask)
        return self.norm(tokens)

    def pool_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """(N, 1 + K, D) encoded tokens (class token first) -> (N, D) per ``pool``."""
        return tokens[:, 0] if self.pool == "cls" else tokens[:, 1:].mean(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool_tokens(self.encode(self.embed(x)))

    @torch.no_grad()
    def cls_attention(self, x: torch.Tensor) -> torch.Tensor:
        """(N, heads, grid, grid): the class token's attention over the patches in the last block
        (DINO's attention maps, Caron et al. 2021, Fig. 1)."""
        tokens = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), self.embed(x)], dim=1)
        for block in self.blocks[:-1]:
            tokens = block(tokens)
        last = self.blocks[-1]
        weights = last.attn.weights(last.norm1(tokens))  # (N, heads, 1 + L, 1 + L)
        rows, cols = x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size
        return weights[:, :, 0, 1:].reshape(x.shape[0], self.num_heads, rows, cols)


def _check(image_size: int, patch_size: int, pool: str, pos_embed: str) -> None:
    if pool not in POOLS:
        raise UsageError(f"unknown ViT pool {pool!r}; choose one of: {', '.join(POOLS)}")
    if pos_embed not in POS_EMBEDS:
        raise UsageError(f"unknown ViT pos_embed {pos_embed!r}; choose one of: {', '.join(POS_EMBEDS)}")
    if patch_size <= 0 or image_size % patch_size:
        raise UsageError(
            f"ViT patch size {patch_size} does not divide the image size {image_size}; set "
            "model.patch_size to a divisor of augment.size (or 0 for the default)"
        )


def default_patch_size(image_size: int) -> int:
    """4 for images of 32 px and more, 2 below (16x16 digits)."""
    return 4 if image_size >= 32 else 2


@dataclass
class ViTOptions:
    patch_size: int = 0  # 0: the preset's rule for the image size (4 at 32 px and more, 2 below)
    pool: str = "cls"  # cls | mean: which output is the representation
    pos_embed: str = "sincos"  # sincos (fixed 2-D) | learned
    drop_path: float = 0.0  # stochastic depth at the last block (linear from 0; DeiT/DINO: 0.1)


def build_vit(name: str, input_spec: dict, options: ViTOptions) -> VisionTransformer:
    image_size = input_spec["size"]
    patch_size = options.patch_size or default_patch_size(image_size)
    _check(image_size, patch_size, options.pool, options.pos_embed)
    return VisionTransformer(
        input_spec["channels"],
        image_size,
        patch_size,
        pool=options.pool,
        pos_embed=options.pos_embed,
        drop_path=options.drop_path,
        **PRESETS[name],
    )


def require_vit(method: str, backbone: nn.Module) -> VisionTransformer:
    """``backbone`` when it is a vision transformer, else a one-line error for ``method``."""
    if not isinstance(backbone, VisionTransformer):
        raise UsageError(
            f"{method} needs a vision transformer backbone (model.backbone: vit-tiny, vit-small or "
            f"vit-base), got {type(backbone).__name__}"
        )
    return backbone


register(Family("vit", tuple(PRESETS), ViTOptions, build_vit, ("image",)))
