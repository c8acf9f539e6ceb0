"""TF-C: Self-Supervised Contrastive Pre-Training for Time Series via Time-Frequency Consistency (Zhang,
Zhao, Tsiligkaridis & Zitnik 2022, NeurIPS, arXiv:2206.08496).

A time encoder embeds each series and its jittered copy, a frequency encoder embeds its magnitude
spectrum ``|FFT(x)|`` and a perturbed spectrum (a random 10% of the components removed, another 10%
raised); contrastive losses in each domain (Sec. 3.2-3.3, ``L_T`` and ``L_F``: NT-Xent with the code's
Poly-1 term, temperature 0.2, on the encoders' outputs) and time-frequency consistency (Sec. 3.4): the
projections of a sample's time and frequency embeddings into a shared space must pick each other out.
The encoder kept for inference is both branches with their projectors, ``[z_T, z_F]``.

Notes on defaults and deviations: docs/methods/tfc.md
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..backbones.series import TFCEncoder, composite_spec, fresh_copy
from ..distributed import gather
from ..errors import UsageError
from ..losses.series import tfc_consistency, tfc_nt_xent_poly
from ..modalities.base import ViewPlan
from ..modalities.series.ops import fft_magnitude, tfc_frequency_view
from .base import Method


class TFC(Method):
    name = "tfc"
    paper = (
        "Zhang et al. 2022, Self-Supervised Contrastive Pre-Training for Time Series via Time-Frequency "
        "Consistency (arXiv:2206.08496)"
    )
    modalities = ("series",)
    sync_bn = False  # trained on one GPU

    @dataclass
    class Args:
        temperature: float = 0.2  # NT-Xent (every config)
        lam: float = 0.2  # weight of L_T + L_F (trainer.py: loss = lam (L_T + L_F) + l_TF)
        consistency: str = "code"  # code: l_TF (what trainer.py optimises) | paper: the triplet term L_C
        margin: float = 1.0  # delta of the paper's L_C
        frequency_ratio: float = 0.1  # share of spectrum components removed, and share raised
        proj_hidden: int = 256  # cross-space projector
        proj_dim: int = 128

    def __init__(self, backbone: nn.Module, args: TFC.Args):
        if args.consistency not in ("code", "paper"):
            raise UsageError(f"tfc: consistency must be code or paper, got {args.consistency!r}")
        encoder = TFCEncoder(backbone, fresh_copy(backbone), args.proj_hidden, args.proj_dim)
        if getattr(backbone, "spec", None) is not None:
            encoder.spec = composite_spec("tfc-encoder", backbone, proj_hidden=args.proj_hidden, proj_dim=args.proj_dim)
        super().__init__(encoder, args)

    @staticmethod
    def view_plan(args) -> ViewPlan:
        return ViewPlan("pair", "tfc")

    def forward(self, views):
        x, x_aug = views
        a = self.args
        # The spectra (dataloader.py: fft(x).abs()) and the perturbed spectrum (DataTransform_FD), the latter
        # drawn from the device's default generator, as the code's torch.rand.
        xf = fft_magnitude(x)
        xf_aug = tfc_frequency_view(xf, None, a.frequency_ratio)
        enc = self.backbone
        h_t, z_t, h_f, z_f = enc.embed(x, xf)
        h_t_aug, z_t_aug, h_f_aug, z_f_aug = enc.embed(x_aug, xf_aug)

        def contrast(p, q):
            return tfc_nt_xent_poly(gather(p), gather(q), a.temperature)

        loss_t, loss_f = contrast(h_t, h_t_aug), contrast(h_f, h_f_aug)
        l_tf = contrast(z_t, z_f)
        if a.consistency == "code":
            loss = a.lam * (loss_t + loss_f) + l_tf
        else:
            pairs = (contrast(z_t, z_f_aug), contrast(z_t_aug, z_f), contrast(z_t_aug, z_f_aug))
            loss = a.lam * (loss_t + loss_f) + (1 - a.lam) * tfc_consistency(l_tf, pairs, a.margin)
        features = torch.cat([z_t, z_f], dim=1).detach()
        return {"loss": loss, "features": features, "loss_time": loss_t.detach(), "loss_freq": loss_f.detach()}
