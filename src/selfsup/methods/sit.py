"""SiT: Self-supervised vIsion Transformer (Atito, Awais & Kittler 2021, arXiv:2104.03602).

GMML reconstruction (:mod:`~selfsup.methods.gmml`) of both corrupted views plus a contrastive term
on the class token: MoCo v3's ``ctr`` between the student's projection of one view and a momentum
teacher's of the other, clean, view. Follows the later arXiv version and the authors' released
code (github.com/Sara-Ahmed/SiT), not version 1's three tasks.

Notes on defaults and deviations: docs/methods/sit.md
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..distributed import gather, gather_nograd
from ..losses import infonce
from ..modalities.base import ViewPlan
from .gmml import GMML
from .parts.heads import mlp
from .parts.teacher import MomentumTeacher


class SiT(GMML):
    name = "sit"
    paper = "Atito, Awais & Kittler 2021, SiT: Self-supervised vIsion Transformer (arXiv:2104.03602)"

    @dataclass
    class Args(GMML.Args):
        mask_ratio: float = 0.5  # drop_perc
        corruption: str = "zeros"  # drop_type
        recons_blocks: str = "last"
        proj_hidden: int = 4096
        proj_dim: int = 256  # out_dim
        proj_layers: int = 3
        temperature: float = 0.2  # simclr_temp
        tau_base: float = 0.996  # momentum_teacher, raised to 1 along a cosine
        recon_weight: float = 1.0  # lmbda
        eval_teacher: bool = False

    def __init__(self, backbone: nn.Module, args: SiT.Args):
        super().__init__(backbone, args)
        self.projector = mlp(backbone.embed_dim, args.proj_hidden, args.proj_dim, args.proj_layers, last_bn=True)
        self.teacher = MomentumTeacher(self._student(), args.tau_base)

    def _student(self) -> nn.Sequential:
        # A view of the registered modules (not registered twice), paired with the teacher's copy.
        return nn.Sequential(self.backbone, self.projector)

    @staticmethod
    def view_plan(args) -> ViewPlan:
        return ViewPlan("asymmetric_pair", "sit")

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
        return {
            "loss": loss,
            "contrastive": c_loss.detach(),
            "reconstruction": r_loss.detach(),
            "corrupted_fraction": masks.float().mean().detach(),
        }

    def momentum_pairs(self):
        return [(self.teacher, self._student())]
