"""MP3, masked position prediction (Zhai, Jaitly, Ramapuram, Busbridge, Likhomanenko, Cheng,
Talbott, Huang, Goh & Susskind 2022, "Position Prediction as an Effective Pretraining Strategy",
ICML, arXiv:2207.07611).

What is implemented (Sec. 3 of the paper, "Masked Position Prediction Pretraining"):

* No position information in the input path: the patch tokens enter the transformer without
  position embeddings (``embed(x, add_pos=False)``), so the encoder is permutation-equivariant
  over the patches and can only tell where a patch is from its content and the other patches'.
* Masked context: a random fraction ``mask_ratio`` (the paper's eta) of each image's patches is
  masked; the remaining (1 - eta) "context" patches are the only keys and values of every
  self-attention layer, while all patches are queries (the paper's cross-attention of all
  patches onto the context patches, which also makes pretraining cheaper). Here it is the
  backbone's own self-attention with a key mask (``encode(..., attn_mask=...)``), equivalent to
  attending onto the context set; masked patches still have their content at the input.
* Position prediction: a linear classifier on each output token predicts which of the
  ``num_patches`` positions (row-major index) the patch came from; the loss is the cross-entropy
  averaged over all patches of all images, masked and context alike.
* Fine-tuning (the paper's Sec. 3, "Finetuning"): position embeddings are added back, initialised
  to zero, and learned with full attention. To make that the natural continuation, MP3 sets the
  backbone's position embeddings to zero (and freezes them during pretraining, for learned ones):
  the exported encoder then computes exactly the pretraining input path (no position information)
  under kNN/linear evaluation, and ``selfsup eval --protocol finetune`` learns the (``learned``)
  position embeddings from zero as in the paper. Recipes use ``pos_embed: learned``.

Decisions where the paper is silent or could not be checked here:

* No class token during pretraining (the paper predicts a position per patch token; the class
  token has no position): the representation is the mean of the patch tokens, so MP3 requires
  ``model.pool: mean`` and says so otherwise.
* The default eta = 0.5 is the value of the public unofficial replication's CIFAR-100 setting
  (arshadshk/Position-Prediction-Pretraining-MP3, ``--eta 0.5``); the paper treats eta as the
  method's hyper-parameter (its ablation varies it); set ``method_args.mask_ratio``.
* Views: one random resized crop (scale 0.2-1) with horizontal flip, like the other masked
  methods here (the paper pretrains with its supervised DeiT recipe's augmentations).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..augment.views import ViewConfig
from ..errors import UsageError
from .base import Method
from .mae import require_vit
from .masking import random_keep


def context_mask(keep: torch.Tensor, length: int) -> torch.Tensor:
    """Boolean attention mask (N, 1, 1, length): True at the context tokens ``keep`` (N, K), the
    only keys and values every query may attend to."""
    allowed = torch.zeros(keep.shape[0], length, dtype=torch.bool, device=keep.device)
    allowed.scatter_(1, keep, True)
    return allowed[:, None, None, :]


class MP3(Method):
    name = "mp3"
    paper = ("Zhai et al. 2022, Position Prediction as an Effective Pretraining Strategy "
             "(arXiv:2207.07611)")

    @dataclass
    class Args:
        mask_ratio: float = 0.5   # eta: fraction of patches that are not keys/values (0: full attention)

    def __init__(self, backbone: nn.Module, args: "MP3.Args"):
        super().__init__(backbone, args)
        vit = require_vit(backbone, "mp3")
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
    def default_views(size: int, args=None) -> list:
        """One view: random resized crop (scale 0.2-1) and horizontal flip, nothing else."""
        return [ViewConfig(size=size, crop_scale=(0.2, 1.0), flip_p=0.5, jitter_p=0.0, grayscale_p=0.0,
                           blur_p=0.0, solarize_p=0.0)]

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
