"""Frame projections: Learning Without Augmenting: Unsupervised Time Series Representation Learning via
Frame Projections (Demirel & Holz 2025, NeurIPS, arXiv:2510.22655).

No augmentation: each series is projected onto an orthonormal frame (Fourier: ``rfft``, orthonormal)
and an overcomplete one (Gabor: the continuous wavelet transform with a complex Morlet wavelet), and
three encoders (time, Fourier, Gabor) embed the three views of the same sample; instance
discrimination runs between every pair of them (NT-Xent, temperature 0.15), and lightweight latent
mappers learn to predict the Fourier and Gabor embeddings from the time embedding (L1). At inference
only the time encoder runs; its embedding and the mappers' estimates of the other two are concatenated
(the code's ``IntegratedEncoder``).

Notes on defaults and deviations: docs/methods/frameproj.md
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones.series import ConvMapping, FourierEncoder, FrameProjEncoder, SpectrogramEncoder, composite_spec
from ..distributed import gather
from ..errors import UsageError
from ..losses.series import frame_projection_loss
from ..modalities.base import ViewPlan
from ..modalities.series.ops import default_scales, fourier_projection, gabor_scalogram, series_lengths
from .base import Method


def _projector(dim: int, out_dim: int) -> nn.Sequential:
    """The code's ``Projector('IsoAlign')``: Linear - ReLU - Linear."""
    return nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, out_dim))


class FrameProjections(Method):
    name = "frameproj"
    paper = (
        "Demirel & Holz 2025, Learning Without Augmenting: Unsupervised Time Series Representation Learning "
        "via Frame Projections (arXiv:2510.22655)"
    )
    modalities = ("series",)
    sync_bn = False

    @dataclass
    class Args:
        temperature: float = 0.15  # frameworks.py cont_loss
        proj_dim: int = 128  # --p
        predictor_hidden: int = 64  # the pretraining latent mappers (ConvMapping hidden_channels=64)
        mapper_hidden: int = 1  # the inference mappers (train_mappers: ConvMapping hidden_channels=1)
        gabor_width: int = 32  # UNET_2D_simp layer_n: the Gabor encoder's feature width is 4x this
        wavelet_bandwidth: float = 1.0  # cmor1-1
        wavelet_center: float = 1.0
        gabor_max_steps: int = (
            256  # longer series: the scalogram averaged over time to at most this many steps (0: off)
        )

    def __init__(self, backbone: nn.Module, args: FrameProjections.Args):
        channels = getattr(backbone, "in_channels", None)
        if channels is None:
            raise UsageError("frameproj needs a series backbone (ts2vec-encoder, fcn, resnet1d, tstcc-cnn)")
        if backbone.feature_dim != 4 * args.gabor_width or backbone.feature_dim != FourierEncoder(1).feature_dim:
            raise UsageError(
                f"frameproj's mappers map the time embedding onto the Fourier and Gabor ones, all 128-d; "
                f"{backbone.spec['name'] if hasattr(backbone, 'spec') else 'the backbone'} gives "
                f"{backbone.feature_dim}: use resnet1d or fcn, or ts2vec-encoder with model.output_dim=128"
            )
        encoder = FrameProjEncoder(backbone, args.mapper_hidden)
        if getattr(backbone, "spec", None) is not None:
            encoder.spec = composite_spec("frameproj-encoder", backbone, mapper_hidden=args.mapper_hidden)
        super().__init__(encoder, args)
        dim = backbone.feature_dim
        self.gabor_encoder = SpectrogramEncoder(channels, args.gabor_width)
        self.fourier_encoder = FourierEncoder(channels)
        self.proj_time = _projector(dim, args.proj_dim)
        self.proj_gabor = _projector(self.gabor_encoder.feature_dim, args.proj_dim)
        self.proj_fourier = _projector(self.fourier_encoder.feature_dim, args.proj_dim)
        self.predict_fourier = ConvMapping(args.predictor_hidden)
        self.predict_gabor = ConvMapping(args.predictor_hidden)
        self.scales = default_scales()

    @staticmethod
    def view_plan(args) -> ViewPlan:
        return ViewPlan("single", "frameproj")

    def forward(self, views):
        (x,) = views
        a, enc = self.args, self.backbone
        lengths = series_lengths(x)
        gabor = gabor_scalogram(x, self.scales, a.wavelet_bandwidth, a.wavelet_center, lengths=lengths)
        if a.gabor_max_steps and gabor.shape[-1] > a.gabor_max_steps:  # bounded cost on long series (docs)
            factor = -(-gabor.shape[-1] // a.gabor_max_steps)
            gabor = F.avg_pool2d(torch.nan_to_num(gabor), (1, factor), ceil_mode=True)
            lengths = torch.div(lengths + factor - 1, factor, rounding_mode="floor")
        h_t = enc.time(x)
        h_g = self.gabor_encoder(gabor, lengths)
        h_f = self.fourier_encoder(fourier_projection(x))
        e_t, e_g, e_f = self.proj_time(h_t), self.proj_gabor(h_g), self.proj_fourier(h_f)
        unit_t = F.normalize(e_t.float(), dim=1)
        mapped_f, mapped_g = self.predict_fourier(unit_t), self.predict_gabor(unit_t)
        loss = frame_projection_loss(
            gather(e_t), gather(e_g), gather(e_f), gather(mapped_f), gather(mapped_g), a.temperature
        )
        # The inference mappers (train_mappers): the frozen time embedding onto the frozen Fourier and Gabor
        # embeddings, L1; trained here alongside, on detached embeddings, so no gradient reaches the encoders.
        time_emb = h_t.detach()
        map_f, map_g = enc.map_fourier(time_emb), enc.map_gabor(time_emb)
        mapper_loss = F.l1_loss(map_f.float(), h_f.detach().float()) + F.l1_loss(map_g.float(), h_g.detach().float())
        features = torch.cat([map_f, time_emb, map_g], dim=1).detach()
        return {"loss": loss + mapper_loss, "features": features, "mapper_l1": mapper_loss.detach()}
