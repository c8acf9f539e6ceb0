"""MP3: Position Prediction as an Effective Pretraining Strategy (Zhai et al. 2022, ICML,
arXiv:2207.07611).

Masked position prediction (Sec. 3): patch tokens enter the ViT without position embeddings, only
the unmasked (1 - eta) "context" patches are keys and values of the attention, and a linear
classifier predicts each patch's position. The backbone's position embeddings are zeroed (and
frozen) so that fine-tuning learns them from zero, as the paper.

Notes on defaults and deviations: docs/methods/mp3.md
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones.vit import require_vit
from ..errors import UsageError
from ..modalities.base import ViewPlan
from .base import Method
from .parts.masking import random_keep


def context_mask(keep: torch.Tensor, length: int) -> torch.Tensor:
    """Boolean attention mask (N, 1, 1, length): True at the context tokens ``keep`` (N, K), the
    only keys and values every query may attend to."""
    allowed = torch.zeros(keep.shape[0], length, dtype=torch.bool, device=keep.device)
    allowed.scatter_(1, keep, True)
    return allowed[:, None, None, :]


class MP3(Method):
    name = "mp3"
    paper = "Zhai et al. 2022, Position Prediction as an Effective Pretraining Strategy (arXiv:2207.07611)"
    modalities = ("image",)

    @dataclass
    class Args:
        mask_ratio: float = 0.5  # eta: fraction of patches that are not keys/values (0: full attention)

    def __init__(self, backbone: nn.Module, args: MP3.Args):
        super().__init__(backbone, args)
        vit = require_vit(self.name, backbone)
        if not 0.0 <= args.mask_ratio < 1.0:
            raise UsageError(f"mp3: mask_ratio must be in [0, 1), got {args.mask_ratio}")
        if vit.pool != "mean":
            raise UsageError("mp3 trains no class token (it predicts a position per patch); set model.pool=mean")
        with torch.no_grad():  # no position information anywhere in the encoder's input path
            vit.pos_embed.zero_()
        if isinstance(vit.pos_embed, nn.Parameter):
            vit.pos_embed.requires_grad_(False)
        # MP3 encodes without the class token: frozen, so no optimiser or DDP waits for its gradient.
        vit.cls_token.requires_grad_(False)
        self.classifier = nn.Linear(vit.embed_dim, vit.num_patches)
        nn.init.xavier_uniform_(self.classifier.weight)
        nn.init.zeros_(self.classifier.bias)

    @staticmethod
    def view_plan(args) -> ViewPlan:
        return ViewPlan("masked", "mae")  # random resized crop (scale 0.2-1) and horizontal flip

    def position_logits(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (N, L, L) over the L positions for every patch of ``x``; ``keep`` (N, K) are the
        context patches (None: all of them)."""
        vit = self.backbone
        tokens = vit.embed(x, add_pos=False)
        mask = context_mask(keep, vit.num_patches) if keep is not None else None
        return self.classifier(vit.encode(tokens, cls=False, attn_mask=mask))

    def forward(self, views):
        (x,) = views
        n, length = x.shape[0], self.backbone.num_patches
        keep = random_keep(n, length, self.args.mask_ratio, x.device)[0] if self.args.mask_ratio > 0 else None
        logits = self.position_logits(x, keep).float()
        labels = torch.arange(length, device=x.device).repeat(n)
        loss = F.cross_entropy(logits.reshape(n * length, length), labels)
        accuracy = (logits.detach().argmax(dim=-1).reshape(-1) == labels).float().mean()
        return {"loss": loss, "position_accuracy": accuracy}
