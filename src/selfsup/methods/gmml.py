"""GMML: Group Masked Model Learning (Atito, Awais & Kittler, "GMML is All you Need",
arXiv:2205.14986; introduced with SiT, arXiv:2104.03602).

A vision transformer sees an image in which *groups of connected tokens* were corrupted and
recovers the image from it: the pretext is to infer the hidden part of a concept from its visible
part (Sec. 3). Implemented as the paper with the details of the authors' code
(github.com/Sara-Ahmed/GMML, ``main.py`` and ``datasets/datasets_utils.py``):

* Corruption (``GMML_drop_rand_patches``): each image draws a coverage uniformly in
  ``[min(0.5, r), r]`` with ``r = mask_ratio`` (the code's ``drop_perc = 0.75``) and is corrupted
  over that fraction of its area by rectangles of sides up to 30% of the image
  (``max_block_sz``), filled with Gaussian noise (``drop_type='noise'``, in the normalised input
  space) or zeros. With probability ``replace_p`` (the code's ``1 / (number of drop types + 1)`` =
  0.5 with one type) an image is instead corrupted over a fraction ``replace_ratio`` (0.3,
  ``drop_replace``) by the same positions of *another image of the batch* (``GMML_replace_list``;
  the code may draw the image itself, a no-op corruption; here it is always another one, from the
  same view). The groups are token-aligned rectangles from :func:`~selfsup.methods.blockmask.block_masks`
  (BEiT-style sampling, exact coverage; see that module for why).
* Reconstruction (``RECHead``): the average of the outputs of blocks 6, 8, 10 and 12 of a 12-block
  ViT (``recons_blocks='6-8-10-12'``; ``"auto"`` counts every second block back from the last to
  the middle one, for any depth), through the final LayerNorm, patch tokens only, then three Linear+GELU layers of width D
  and a transposed convolution with kernel = stride = patch size, which is a linear map of each
  token to its ``p x p x C`` pixels (written as such here).
* Loss: L1 between the reconstruction and the clean (normalised) view, averaged over the corrupted
  pixels only (the code's ``drop_only=1``: ``recloss[mask == 1].mean()``).
* Views: two crops per image (the code's two global crops; "to match the number of updates" of
  the joint-embedding methods), random resized crop of scale (0.05, 1) (the code's scale when
  there are no local crops), horizontal flip, the light "clean" colour jitter (p=0.3; 0.1, 0.1,
  0.1, 0.01) and blur with p=0.1; each view is corrupted and reconstructed on its own.

The class token gets no loss; it is trained only through attention, so GMML recipes pool the
patch tokens (``model.pool: mean``) for evaluation. Optimiser in the code: AdamW, lr 5e-4 per 256
images with 10 warm-up epochs and cosine decay, weight decay 0.04 -> 0.4 (our loop keeps it
constant), gradient clipping at 3 (not in our loop).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..augment.views import ViewConfig
from ..backbones.vit import VisionTransformer, patchify, unpatchify
from ..distributed import all_reduce_, world_size
from ..errors import UsageError
from .base import Method
from .blockmask import block_masks

CORRUPTIONS = ("noise", "zeros")


def require_vit(method: str, backbone: nn.Module) -> VisionTransformer:
    if not isinstance(backbone, VisionTransformer):
        raise UsageError(f"{method} needs a vision transformer backbone (model.backbone: vit-tiny, vit-small "
                         f"or vit-base), got {type(backbone).__name__}")
    return backbone


def parse_blocks(spec: str, depth: int) -> tuple[int, ...]:
    """``"auto"`` (every second block counted back from the last one down to the middle one:
    6-8-10-12 at depth 12, 2-4 at depth 4), ``"last"``, or 1-based block numbers joined by ``-`` (``"6-8-10-12"``)."""
    if spec == "auto":
        return tuple(sorted(range(depth, depth // 2 - 1, -2)))
    if spec == "last":
        return (depth,)
    try:
        blocks = tuple(sorted({int(b) for b in spec.split("-")}))
    except ValueError:
        blocks = ()
    if not blocks or blocks[0] < 1 or blocks[-1] > depth:
        raise UsageError(f"recons_blocks must be auto, last or block numbers 1..{depth} joined by '-' "
                         f"(for example 6-8-10-12), got {spec!r}")
    return blocks


def masked_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over the masked tokens' values: ``pred``/``target`` (N, L, P), ``mask``
    (N, L) boolean. Equal to the mean over the corrupted pixels and channels. In a distributed run
    the mean is over every process's corrupted pixels: each process divides by the mean count per
    process, so DDP's average of the processes' losses is the global mean."""
    err = (pred.float() - target.float()).abs().sum(dim=-1)
    weight = mask.float()
    count = weight.sum() * pred.shape[-1]
    if world_size() > 1:
        count = all_reduce_(count.detach().clone(), "mean")
    return (err * weight).sum() / count.clamp(min=1)


class ReconstructionHead(nn.Module):
    """GMML's ``RECHead``: ``layers`` x (Linear(D, D), GELU), then each token to its ``p*p*C`` pixels."""

    def __init__(self, dim: int, out_dim: int, layers: int = 3):
        super().__init__()
        mods = []
        for _ in range(layers):
            mods += [nn.Linear(dim, dim), nn.GELU()]
        self.mlp = nn.Sequential(*mods)
        for m in self.mlp:
            if isinstance(m, nn.Linear):  # the authors' init: truncated normal 0.02, zero bias
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.out = nn.Linear(dim, out_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.out(self.mlp(tokens))


class GMML(Method):
    name = "gmml"
    paper = "Atito, Awais & Kittler 2022, GMML is All you Need (arXiv:2205.14986)"

    @dataclass
    class Args:
        mask_ratio: float = 0.75        # drop_perc: coverage uniform in [min(0.5, r), r] per image
        corruption: str = "noise"       # noise | zeros: what fills the groups (drop_type)
        replace_ratio: float = 0.3      # drop_replace: coverage when another image fills them (0: never)
        replace_p: float = 0.5          # probability that an image is corrupted by replacement
        max_block: float = 0.3          # max_block_sz: a group's rectangles have sides up to this fraction
        recons_blocks: str = "auto"     # blocks averaged for the reconstruction (auto: 6-8-10-12 at depth 12)
        head_layers: int = 3            # Linear+GELU layers of the reconstruction head

    def __init__(self, backbone: nn.Module, args):
        super().__init__(backbone, args)
        vit = require_vit(self.name, backbone)
        if args.corruption not in CORRUPTIONS:
            raise UsageError(f"{self.name}: corruption must be one of {', '.join(CORRUPTIONS)}, got {args.corruption!r}")
        if not (0 < args.mask_ratio <= 1 and 0 <= args.replace_ratio <= 1 and 0 <= args.replace_p <= 1
                and 0 < args.max_block <= 1):
            raise UsageError(f"{self.name}: mask_ratio must be in (0, 1], replace_ratio, replace_p and "
                             "max_block in [0, 1]")
        self.recons_blocks = parse_blocks(args.recons_blocks, len(vit.blocks))
        self.head = ReconstructionHead(vit.embed_dim, vit.patch_size ** 2 * vit.in_channels, args.head_layers)

    @staticmethod
    def default_views(size: int, args=None) -> list:
        view = dict(size=size, crop_scale=(0.05, 1.0), flip_p=0.5, jitter_p=0.3, brightness=0.1, contrast=0.1,
                    saturation=0.1, hue=0.01, grayscale_p=0.0, blur_p=0.1, solarize_p=0.0)
        return [ViewConfig(**view), ViewConfig(**view)]

    # ------------------------------------------------------------------------------- corruption
    def _masks(self, n: int, coverage: float, device) -> torch.Tensor:
        g = self.backbone.grid
        max_area = max(2, round((self.args.max_block * g) ** 2))
        return block_masks(n, g, (min(0.5, coverage), coverage), device=device, max_area=max_area)

    def corrupt(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Corrupted images (same shape as ``x``) and the boolean (N, L) token mask of what was corrupted."""
        a, p = self.args, self.backbone.patch_size
        n = x.shape[0]
        patches = patchify(x, p)
        masks = self._masks(n, a.mask_ratio, x.device)
        fill = torch.randn_like(patches) if a.corruption == "noise" else torch.zeros_like(patches)
        if a.replace_ratio > 0 and a.replace_p > 0 and n > 1:
            replace = torch.rand(n, device=x.device) < a.replace_p
            other = (torch.arange(n, device=x.device) + torch.randint(1, n, (n,), device=x.device)) % n
            fill = torch.where(replace[:, None, None], patches[other], fill)
            masks = torch.where(replace[:, None], self._masks(n, a.replace_ratio, x.device), masks)
        corrupted = torch.where(masks[..., None], fill, patches)
        return unpatchify(corrupted, p, x.shape[1]), masks

    # --------------------------------------------------------------------------- reconstruction
    def encode_for_reconstruction(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The ViT on ``x``: its output tokens (N, 1 + L, D) (class token first, final norm) and the
        tokens the head reconstructs from (N, L, D): the final norm of the mean of the chosen blocks."""
        vit = self.backbone
        tokens = vit.embed(x)
        if self.recons_blocks == (len(vit.blocks),):
            out = vit.encode(tokens)
            return out, out[:, 1:]
        h = torch.cat([vit.cls_token.to(tokens.dtype).expand(tokens.shape[0], -1, -1), tokens], dim=1)
        acc = 0
        for i, block in enumerate(vit.blocks, start=1):
            h = block(h)
            if i in self.recons_blocks:
                acc = acc + h
        return vit.norm(h), vit.norm(acc / len(self.recons_blocks))[:, 1:]

    def reconstruction_loss(self, views: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Corrupt each view, reconstruct; returns the L1 loss on the corrupted regions, the output
        tokens of the corrupted views (N_total, 1 + L, D) and the masks (N_total, L)."""
        parts = [self.corrupt(v) for v in views]  # "another image" comes from the same view
        corrupted = torch.cat([c for c, _ in parts])
        masks = torch.cat([m for _, m in parts])
        out, rec = self.encode_for_reconstruction(corrupted)
        target = patchify(torch.cat(views), self.backbone.patch_size)
        return masked_l1(self.head(rec), target, masks), out, masks

    def forward(self, views):
        loss, _, masks = self.reconstruction_loss(views)
        return {"loss": loss, "corrupted_fraction": masks.float().mean().detach()}

    @torch.no_grad()
    def visualize(self, x: torch.Tensor, seed: int = 0) -> dict:
        """Normalised images in, normalised images out (in eval mode, corruption drawn from
        ``seed``): the corrupted input ("masked"), the model's whole reconstruction (GMML predicts
        every pixel; the loss only looks at the corrupted ones), and the corrupted region ("mask",
        1 where corrupted, (N, 1, H, W))."""
        was_training = self.training
        self.eval()
        devices = [x.device] if x.device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(seed)
                corrupted, masks = self.corrupt(x)
            _, rec = self.encode_for_reconstruction(corrupted)
        finally:
            self.train(was_training)
        p = self.backbone.patch_size
        recon = unpatchify(self.head(rec).float(), p, x.shape[1]).to(x.dtype)
        mask = unpatchify(masks[..., None].to(x.dtype).expand(-1, -1, p * p), p, 1)
        return {"masked": corrupted, "reconstruction": recon, "mask": mask}
