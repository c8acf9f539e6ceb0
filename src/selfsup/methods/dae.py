"""A denoising autoencoder for tables (Vincent, Larochelle, Bengio & Manzagol 2008, "Extracting and
Composing Robust Features with Denoising Autoencoders", ICML), the reconstruction baseline.

Each row is corrupted with swap noise (every entry with probability 0.15 replaced by the same
column of another training row, i.e. a draw from its marginal: the table modality's ``swap``
view, the noise of tabular denoising autoencoders since Jahrer's Porto Seguro solution); the
encoder's representation of the corrupted row is decoded back to the clean row, squared error on
numeric columns and cross-entropy on categorical ones (Sec. 2.3's reconstruction of the clean
input, with the loss of each column's type).

Notes on defaults and deviations: docs/methods/dae.md
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import UsageError
from ..modalities.base import ViewPlan
from .base import Method
from .parts.rows import RowDecoder


class DAE(Method):
    name = "dae"
    paper = "Vincent et al. 2008, Extracting and Composing Robust Features with Denoising Autoencoders (ICML 2008)"
    modalities = ("table",)
    sync_bn = False

    @dataclass
    class Args:
        noise_rate: float = 0.15  # swap noise probability per entry
        decoder_hidden: int = 256  # one ReLU layer before the output layer (0: a linear decoder)

    def __init__(self, backbone: nn.Module, args: DAE.Args):
        super().__init__(backbone, args)
        if not 0 < args.noise_rate < 1 or args.decoder_hidden < 0:
            raise UsageError("dae: noise_rate must be in (0, 1) and decoder_hidden >= 0")
        meta = getattr(backbone, "meta", None)
        if meta is None:
            raise UsageError("dae needs a table backbone (mlp or ft-transformer)")
        self.decoder = RowDecoder(meta, backbone.feature_dim, args.decoder_hidden)

    @staticmethod
    def view_plan(args) -> ViewPlan:
        return ViewPlan("asymmetric_pair", "dae", options={"noise_rate": args.noise_rate})

    def forward(self, views):
        clean, noisy = views
        loss = self.decoder.loss(self.backbone(noisy), clean)
        with torch.no_grad():  # the representation of clean rows, for the online probes
            features = self.backbone(clean)
        return {"loss": loss, "features": features}
