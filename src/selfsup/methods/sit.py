"""SiT: Self-supervised vIsion Transformer (Atito, Awais & Kittler, arXiv:2104.03602).

GMML reconstruction (:mod:`~selfsup.methods.gmml`) plus a contrastive term on the class token.

Which SiT: the arXiv versions differ. Version 1 (April 2021) trained three tasks at once (image
reconstruction, rotation prediction on a rotation token, and a SimCLR-style contrastive loss on a
contrastive token) with uncertainty-weighted losses. The later version and the authors' released
code (github.com/Sara-Ahmed/SiT, ``main.py``), on which the GMML paper (arXiv:2205.14986) builds,
drop the rotation task and the extra tokens. We follow that later version, because it is the
one whose every detail is fixed by public code:

* Views: two augmented crops per image (DINO/BYOL's global views: random resized crop of scale
  (0.2, 1), flip, colour jitter p=0.8 (0.4, 0.4, 0.2, 0.1), grayscale p=0.2, blur p=1.0 / 0.1,
  solarisation p=0 / 0.2). The student sees both views *corrupted* by GMML (coverage 0.5 —
  ``drop_perc=0.5``, filled with zeros — ``drop_type='zeros'``, or for half the images 30% of
  another image's tokens — ``drop_replace=0.3``); the teacher sees them clean.
* Teacher: a momentum copy of the student (backbone and head), EMA with momentum 0.996 raised to
  1 along a cosine (``momentum_teacher``, DINO's schedule), no gradient, no predictor.
* Contrastive term: the class token of the final (normed) output, through a 3-layer projection
  head (``CLSHead``: hidden 4096 with BatchNorm, output 256 with a non-affine BatchNorm; the
  authors' middle activation is GELU, ReLU here as the project's shared MLP), then MoCo v3's
  ``ctr(q, k) = CE(q k^T / t) * 2t`` with ``t = 0.2`` between the student's view 1 and the
  teacher's view 2 and back: ``ctr(s1, t2) + ctr(s2, t1)``, in-batch negatives (the global
  batch's in a distributed run, as the code's ``concat_all_gather``).
* Reconstruction: from the last block's (normed) patch tokens (``FullPipline``), the GMML head,
  L1 on the corrupted pixels; total loss ``contrastive + lambda * reconstruction`` with
  ``lambda = 1`` (``--lmbda``).

Evaluation: the paper is silent on which network is evaluated; the student is (``eval_teacher:
false``), the network whose class token both losses train; the teacher is one option away.
Optimiser in the code: AdamW, lr 5e-4 per 256 images, 10 warm-up epochs, cosine decay, weight
decay 0.04 -> 0.1 (constant in our loop), gradient clipping at 3 (not in our loop).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..augment.views import byol_views
from ..distributed import gather, gather_nograd
from ..losses import infonce
from .gmml import GMML
from .heads import mlp
from .teacher import MomentumTeacher, cosine_tau


class SiT(GMML):
    name = "sit"
    paper = "Atito, Awais & Kittler 2021, SiT: Self-supervised vIsion Transformer (arXiv:2104.03602)"

    @dataclass
    class Args(GMML.Args):
        mask_ratio: float = 0.5         # drop_perc
        corruption: str = "zeros"       # drop_type
        recons_blocks: str = "last"
        proj_hidden: int = 4096
        proj_dim: int = 256             # out_dim
        proj_layers: int = 3
        temperature: float = 0.2        # simclr_temp
        tau_base: float = 0.996         # momentum_teacher, raised to 1 along a cosine
        recon_weight: float = 1.0       # lmbda
        eval_teacher: bool = False

    def __init__(self, backbone: nn.Module, args: "SiT.Args"):
        super().__init__(backbone, args)
        self.projector = mlp(backbone.embed_dim, args.proj_hidden, args.proj_dim, args.proj_layers, last_bn=True)
        self.teacher = MomentumTeacher(self._student())
        self._tau = args.tau_base

    def _student(self) -> nn.Sequential:
        # A view of the registered modules (not registered twice), paired with the teacher's copy.
        return nn.Sequential(self.backbone, self.projector)

    @staticmethod
    def default_views(size: int, args=None) -> list:
        views = byol_views(size)
        for v in views:
            v.crop_scale = (0.2, 1.0)
        return views

    @property
    def encoder(self) -> nn.Module:
        return self.teacher.net[0] if self.args.eval_teacher else self.backbone

    def projection(self, x):
        return self.projector(self.backbone.encode(self.backbone.embed(x))[:, 0])

    def forward(self, views):
        if len(views) != 2:
            raise ValueError(f"sit takes two views, got {len(views)}")
        r_loss, out, masks = self.reconstruction_loss(views)
        s1, s2 = self.projector(out[:, 0]).chunk(2)
        with torch.no_grad():
            vit, head = self.teacher.net
            t1, t2 = head(vit.encode(vit.embed(torch.cat(views)))[:, 0]).chunk(2)
        t = self.args.temperature
        # In-batch negatives over the global batch (the code's concat_all_gather of the keys), as MoCo v3.
        s1, s2, t1, t2 = gather(s1), gather(s2), gather_nograd(t1), gather_nograd(t2)
        c_loss = (infonce(s1, t2, t) + infonce(s2, t1, t)) * (2 * t)
        loss = c_loss + self.args.recon_weight * r_loss
        return {"loss": loss, "contrastive": c_loss.detach(), "reconstruction": r_loss.detach(),
                "corrupted_fraction": masks.float().mean().detach()}

    def after_step(self, step, total_steps):
        # ``step`` optimiser steps have been taken; tau for the update that follows step k=step-1.
        self._tau = cosine_tau(step - 1, total_steps, self.args.tau_base)
        self.teacher.update(self._student(), self._tau)
        return {"tau": self._tau}
