"""GMML: GMML is All you Need (Atito, Awais & Kittler 2022, arXiv:2205.14986; introduced with SiT,
arXiv:2104.03602).

A vision transformer sees an image in which groups of connected tokens were corrupted (noise,
zeros, or another image of the batch) and reconstructs it (Sec. 3): a head on the average of
chosen blocks' patch tokens maps each token to its pixels, and the loss is L1 over the corrupted
pixels only. Follows the authors' code (github.com/Sara-Ahmed/GMML).

Notes on defaults and deviations: docs/methods/gmml.md
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..backbones.vit import patchify, require_vit, unpatchify
from ..distributed import all_reduce_, world_size
from ..errors import UsageError
from ..modalities.base import ViewPlan
from .base import Method
from .parts.blockmask import block_masks

CORRUPTIONS = ("noise", "zeros")


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
        raise UsageError(
            f"recons_blocks must be auto, last or block numbers 1..{depth} joined by '-' "
            f"(for example 6-8-10-12), got {spec!r}"
        )
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
    # The authors' code (GMML's, SiT's: DINO-based): clip_grad 3.0 per parameter.
    optim_defaults = {"clip_grad": 3.0, "clip_grad_mode": "per_param"}
    paper = "Atito, Awais & Kittler 2022, GMML is All you Need (arXiv:2205.14986)"
    modalities = ("image",)

    @dataclass
    class Args:
        mask_ratio: float = 0.75  # drop_perc: coverage uniform in [min(0.5, r), r] per image
        corruption: str = "noise"  # noise | zeros: what fills the groups (drop_type)
        replace_ratio: float = 0.3  # drop_replace: coverage when another image fills them (0: never)
        replace_p: float = 0.5  # probability that an image is corrupted by replacement
        max_block: float = 0.3  # max_block_sz: a group's rectangles have sides up to this fraction
        recons_blocks: str = "auto"  # blocks averaged for the reconstruction (auto: 6-8-10-12 at depth 12)
        head_layers: int = 3  # Linear+GELU layers of the reconstruction head

    def __init__(self, backbone: nn.Module, args):
        super().__init__(backbone, args)
        vit = require_vit(self.name, backbone)
        if args.corruption not in CORRUPTIONS:
            raise UsageError(
                f"{self.name}: corruption must be one of {', '.join(CORRUPTIONS)}, got {args.corruption!r}"
            )
        if not (
            0 < args.mask_ratio <= 1
            and 0 <= args.replace_ratio <= 1
            and 0 <= args.replace_p <= 1
            and 0 < args.max_block <= 1
        ):
            raise UsageError(
                f"{self.name}: mask_ratio must be in (0, 1], replace_ratio, replace_p and max_block in [0, 1]"
            )
        self.recons_blocks = parse_blocks(args.recons_blocks, len(vit.blocks))
        self.head = ReconstructionHead(vit.embed_dim, vit.patch_size**2 * vit.in_channels, args.head_layers)

    @staticmethod
    def view_plan(args) -> ViewPlan:
        return ViewPlan("pair", "gmml")

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
