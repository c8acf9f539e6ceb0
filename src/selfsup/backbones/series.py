"""Encoders for series ``(B, C, T)`` (NaN where a series has no value), registered as backbone families.

- ``ts2vec-encoder``: TS2Vec's dilated convolutional encoder, per-timestamp output, max-pooled.
- ``fcn``, ``resnet1d``: Wang et al. 2017's strong baselines, per-timestamp output, averaged.
- ``tstcc-cnn``: TS-TCC's (and TF-C's) three-block CNN.
- ``tfc-encoder``, ``frameproj-encoder``: the integrated encoders TF-C and frame projections export
  (built around an inner series backbone; see those methods).
- :class:`SpectrogramEncoder`, :class:`FourierEncoder`: frame projections' Gabor and Fourier encoders.

Padding is never read as data. A series' *span* runs from its first to its last timestamp where any
channel has a value (:func:`~selfsup.modalities.series.ops.span_mask`); outside it every layer's
output is re-zeroed and BatchNorm statistics leave it out (:class:`MaskedBatchNorm1d`), so a series
gives the same output whatever the padding around it, and a crop embedded in NaN gives the output of
the crop alone.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UsageError
from ..modalities.series.ops import fft_magnitude, span_mask
from .registry import Family, build_backbone, register

# --------------------------------------------------------------------------- shared pieces


class MaskedBatchNorm1d(nn.Module):
    """BatchNorm over ``(B, C, T)`` whose batch statistics use only the positions where ``mask``
    ``(B, 1, T)`` is 1 (BatchNorm1d's buffers, momentum and biased/unbiased variances otherwise)."""

    def __init__(self, channels: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.training:
            m = mask.to(x.dtype)
            n = m.sum() * 1.0
            mean = (x * m).sum(dim=(0, 2)) / n.clamp(min=1)
            var = ((x - mean[None, :, None]) ** 2 * m).sum(dim=(0, 2)) / n.clamp(min=1)
            with torch.no_grad():
                unbiased = var * n / (n - 1).clamp(min=1)
                self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean.detach())
                self.running_var.mul_(1 - self.momentum).add_(self.momentum * unbiased.detach())
                self.num_batches_tracked.add_(1)
        else:
            mean, var = self.running_mean, self.running_var
        scale = self.weight / torch.sqrt(var + self.eps)
        return (x - mean[None, :, None]) * scale[None, :, None] + self.bias[None, :, None]


def _span(x: torch.Tensor) -> torch.Tensor:
    """``(B, 1, T)`` float: 1 inside each series' span."""
    return span_mask(x)[:, None, :].to(x.dtype if x.is_floating_point() else torch.float32)


def fresh_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` with every layer's parameters drawn anew (same architecture)."""
    twin = copy.deepcopy(module)
    for m in twin.modules():
        if m is not twin and hasattr(m, "reset_parameters"):
            m.reset_parameters()
    return twin


# --------------------------------------------------------------------------- TS2Vec


class _SamePadConv(nn.Module):
    """Dilated convolution keeping the length (TS2Vec ``dilated_conv.py`` ``SamePadConv``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int):
        super().__init__()
        reach = (kernel_size - 1) * dilation + 1
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, padding=reach // 2, dilation=dilation)
        self.remove = 1 if reach % 2 == 0 else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return out[:, :, : out.shape[-1] - self.remove]


class _DilatedBlock(nn.Module):
    """GELU -> conv -> GELU -> conv, plus a residual (1x1 projection when the width changes or last);
    outputs outside the span are re-zeroed after each convolution."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int, final: bool):
        super().__init__()
        self.conv1 = _SamePadConv(in_channels, out_channels, kernel_size, dilation)
        self.conv2 = _SamePadConv(out_channels, out_channels, kernel_size, dilation)
        self.projector = nn.Conv1d(in_channels, out_channels, 1) if in_channels != out_channels or final else None

    def forward(self, x: torch.Tensor, span: torch.Tensor) -> torch.Tensor:
        residual = x if self.projector is None else self.projector(x)
        h = self.conv1(F.gelu(x)) * span
        return (self.conv2(F.gelu(h)) + residual) * span


class TS2VecEncoder(nn.Module):
    """TS2Vec's encoder (Yue et al. 2022, arXiv:2106.10466, Sec. 3.1; code ``models/encoder.py``).

    Input projection (linear, per timestamp), an optional timestamp mask on it, ``depth`` residual blocks
    of dilated convolutions (dilation ``2**i``, kernel 3, GELU, width ``hidden``) and one more block to
    ``output_dim``, then dropout 0.1. Timestamps where any channel is NaN are zeroed after the
    projection, as the code does; outside each series' span outputs are zero after every layer.
    ``forward`` max-pools over the span (TS2Vec's ``encoding_window='full_series'``).

    The random timestamp mask is TS2Vec's augmentation (Sec. 3.2), so the TS2Vec method draws it (with
    ``mask_p``, the probability that a timestamp is kept, TS2Vec's ``generate_binomial_mask(p)``: 0 masks
    every timestamp, 1 none) and passes it in; the encoder itself draws nothing, in any mode, so the
    generic methods (SimCLR, BYOL, VICReg, ...) see only their recipe's views and fine-tuning sees the data.
    """

    timestep_features = True  # encode() keeps the time axis (TS2Vec's loss needs it)

    def __init__(
        self,
        in_channels: int,
        output_dim: int = 320,
        hidden: int = 64,
        depth: int = 10,
        kernel_size: int = 3,
        mask_p: float = 0.5,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.feature_dim, self.in_channels = output_dim, in_channels
        self.mask_p = mask_p
        self.input_fc = nn.Linear(in_channels, hidden)
        widths = [hidden] * depth + [output_dim]
        self.blocks = nn.ModuleList(
            _DilatedBlock(widths[i - 1] if i > 0 else hidden, widths[i], kernel_size, 2**i, final=i == len(widths) - 1)
            for i in range(len(widths))
        )
        self.repr_dropout = nn.Dropout(dropout)

    def encode(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Per-timestamp representation ``(B, T, D)``, zero outside each series' span.

        ``mask``: ``(B, T)`` bool, False where the projected input is zeroed (TS2Vec's training mask,
        drawn by the method); ``None``: only the timestamps with a NaN channel are.
        """
        span = _span(x)
        present = ~torch.isnan(x).any(dim=1)  # (B, T)
        h = self.input_fc(torch.nan_to_num(x).transpose(1, 2))
        keep = present if mask is None else present & mask
        h = (h * keep[..., None]).transpose(1, 2)
        for block in self.blocks:
            h = block(h, span)
        return self.repr_dropout(h).transpose(1, 2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Instance representation ``(B, D)``: the per-timestamp output max-pooled over the span."""
        out = self.encode(x, mask)
        inside = span_mask(x)[..., None]
        return out.masked_fill(~inside, float("-inf")).amax(dim=1)


# --------------------------------------------------------------------------- Wang et al. 2017


def _same_pad(x: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Pad so a stride-1 convolution keeps the length (Keras 'same': the extra tap on the right)."""
    total = kernel_size - 1
    return F.pad(x, (total // 2, total - total // 2))


class _ConvBN(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__()
        self.kernel_size = kernel_size
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, bias=False)
        self.bn = MaskedBatchNorm1d(out_channels)

    def forward(self, x: torch.Tensor, span: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(_same_pad(x, self.kernel_size)), span) * span


class _MaskedConvNet(nn.Module):
    """Shared by FCN and ResNet1D: NaN enters as zeros, every layer is re-zeroed outside the span and
    BatchNorm leaves it out; the pooled feature averages the span's timestamps."""

    timestep_features = True
    blocks: nn.ModuleList

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Per-timestamp features ``(B, T, D)`` (zero outside each series' span)."""
        span = _span(x)
        h = torch.nan_to_num(x) * span
        for block in self.blocks:
            h = block(h, span)
        return h.transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Average over each series' span ``(B, D)``."""
        span = span_mask(x).to(x.dtype)
        return self.encode(x).sum(dim=1) / span.sum(dim=1, keepdim=True).clamp(min=1)


class _FCNBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__()
        self.layer = _ConvBN(in_channels, out_channels, kernel_size)

    def forward(self, x: torch.Tensor, span: torch.Tensor) -> torch.Tensor:
        return F.relu(self.layer(x, span))


class FCN(_MaskedConvNet):
    """Fully convolutional network (Wang, Yan & Oates 2017, arXiv:1611.06455, Sec. 2.2): three conv-BN-ReLU
    blocks of 128, 256, 128 filters (kernels 8, 5, 3), global average pooling."""

    def __init__(
        self, in_channels: int, widths: tuple[int, ...] = (128, 256, 128), kernels: tuple[int, ...] = (8, 5, 3)
    ):
        super().__init__()
        channels = (in_channels,) + tuple(widths)
        self.blocks = nn.ModuleList(_FCNBlock(channels[i], channels[i + 1], kernels[i]) for i in range(len(widths)))
        self.feature_dim, self.in_channels = widths[-1], in_channels


class _ResidualBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernels: tuple[int, ...]):
        super().__init__()
        self.layers = nn.ModuleList(
            _ConvBN(in_channels if i == 0 else out_channels, out_channels, k) for i, k in enumerate(kernels)
        )
        self.shortcut = _ConvBN(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor, span: torch.Tensor) -> torch.Tensor:
        h = x
        for i, layer in enumerate(self.layers):
            h = layer(h, span)
            if i < len(self.layers) - 1:
                h = F.relu(h)
        return F.relu(h + self.shortcut(x, span))


class ResNet1D(_MaskedConvNet):
    """Residual network (Wang, Yan & Oates 2017, arXiv:1611.06455, Sec. 2.3): three residual blocks of
    64, 128, 128 filters, each three conv-BN(-ReLU) layers with kernels 8, 5, 3 and a 1x1 conv-BN
    shortcut, global average pooling."""

    def __init__(
        self, in_channels: int, widths: tuple[int, ...] = (64, 128, 128), kernels: tuple[int, ...] = (8, 5, 3)
    ):
        super().__init__()
        channels = (in_channels,) + tuple(widths)
        self.blocks = nn.ModuleList(
            _ResidualBlock(channels[i], channels[i + 1], tuple(kernels)) for i in range(len(widths))
        )
        self.feature_dim, self.in_channels = widths[-1], in_channels


# --------------------------------------------------------------------------- TS-TCC


class _TSTCCBlock(nn.Module):
    """conv (no bias) - BN - ReLU - max-pool(2, stride 2, padding 1) [- dropout], re-zeroed outside the
    span at each resolution."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, dropout: float):
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride
        self.conv = nn.Conv1d(
            in_channels, out_channels, kernel_size, stride=stride, bias=False, padding=kernel_size // 2
        )
        self.bn = MaskedBatchNorm1d(out_channels)
        self.dropout = nn.Dropout(dropout) if dropout else None

    def lengths(self, n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Valid length after the convolution and after the pooling, from ``n`` before."""
        conv = torch.div(n + 2 * (self.kernel_size // 2) - self.kernel_size, self.stride, rounding_mode="floor") + 1
        return conv, torch.div(conv, 2, rounding_mode="floor") + 1

    def forward(self, x: torch.Tensor, n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n_conv, n_pool = self.lengths(n)
        h = self.conv(x)
        inside = (torch.arange(h.shape[-1], device=h.device) < n_conv[:, None])[:, None, :].to(h.dtype)
        h = F.relu(self.bn(h * inside, inside)) * inside  # ReLU >= 0: the pool's padded zeros never win
        h = F.max_pool1d(h, 2, 2, padding=1)
        inside = (torch.arange(h.shape[-1], device=h.device) < n_pool[:, None])[:, None, :].to(h.dtype)
        h = h * inside
        return (self.dropout(h) if self.dropout is not None else h), n_pool


class TSTCCEncoder(nn.Module):
    """TS-TCC's encoder (Eldele et al. 2021, arXiv:2106.14112, Sec. 4; code ``models/model.py`` ``base_Model``):
    three blocks of conv (no bias) - BN - ReLU - max-pool(2, stride 2, padding 1), the first with the
    config's kernel/stride and dropout, the others kernel 8; TF-C's paper encoder is the same.

    Each series is encoded as if alone: the time steps after its end (at each block's resolution)
    are zero and left out of BatchNorm. ``pool``: ``flatten`` (the code's classifier input; series
    up to ``length``, shorter ones zero-filled at the end), ``mean`` or ``max`` over time.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 128,
        kernel_size: int = 8,
        stride: int = 1,
        dropout: float = 0.35,
        pool: str = "mean",
        length: int | None = None,
    ):
        super().__init__()
        assert pool in ("flatten", "mean", "max"), pool
        assert pool != "flatten" or length is not None, "pool='flatten' needs the input length"
        self.pool = pool
        self.block1 = _TSTCCBlock(in_channels, 32, kernel_size, stride, dropout)
        self.block2 = _TSTCCBlock(32, 64, 8, 1, 0.0)
        self.block3 = _TSTCCBlock(64, out_channels, 8, 1, 0.0)
        self.out_channels, self.in_channels = out_channels, in_channels
        self.length = length
        self.features_len = None if length is None else self.output_length(length, kernel_size, stride)
        self.feature_dim = out_channels * self.features_len if pool == "flatten" else out_channels

    def set_pool(self, pool: str) -> None:
        """Read the same feature map out another way (``flatten``, ``mean`` or ``max``); the weights stay."""
        if pool not in ("flatten", "mean", "max"):
            raise UsageError(f"tstcc-cnn pools by flatten, mean or max, not {pool!r}")
        if pool == "flatten" and self.length is None:
            raise UsageError("tstcc-cnn with pool=flatten needs the training length, which this encoder lacks")
        self.pool = pool
        self.feature_dim = self.out_channels * self.features_len if pool == "flatten" else self.out_channels

    @staticmethod
    def output_length(length: int, kernel_size: int = 8, stride: int = 1) -> int:
        """Time steps left after the three blocks (the configs' ``features_len``, 18 for HAR's 128)."""
        n = (length + 2 * (kernel_size // 2) - kernel_size) // stride + 1
        n = n // 2 + 1
        for _ in range(2):
            n = (n + 1) // 2 + 1
        return n

    def feature_map(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Feature map ``(B, out_channels, T')`` (what TS-TCC's temporal contrasting reads) and each
        series' valid length in it ``(B,)``."""
        n = torch.where(span_mask(x), torch.arange(1, x.shape[-1] + 1, device=x.device), 0).amax(dim=1)
        h = torch.nan_to_num(x) * _span(x)
        for block in (self.block1, self.block2, self.block3):
            h, n = block(h, n)
        return h, n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool == "flatten" and x.shape[-1] > self.length:
            raise UsageError(
                f"tstcc-cnn with pool=flatten takes series of at most {self.length} steps (its training length), "
                f"got {x.shape[-1]}; use pool=mean or max for longer series"
            )
        return self.pool_map(*self.feature_map(x))

    def pool_map(self, h: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        """The features ``(B, feature_dim)`` of a feature map and its valid lengths (:meth:`feature_map`)."""
        if self.pool == "flatten":
            return F.pad(h, (0, self.features_len - h.shape[-1])).flatten(1)
        inside = torch.arange(h.shape[-1], device=h.device) < n[:, None]
        if self.pool == "mean":
            return (h * inside[:, None, :]).sum(dim=2) / n[:, None].clamp(min=1)
        return h.masked_fill(~inside[:, None, :], float("-inf")).amax(dim=2)


# --------------------------------------------------------------------------- frame projections


def _conv_bn_relu_2d(in_channels: int, out_channels: int, kernel_size: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    )


class SpectrogramEncoder(nn.Module):
    """The scalogram encoder of frame projections (Demirel & Holz 2025, arXiv:2510.22655; code
    ``models_nc.py`` ``UNET_2D_simp``, its encoder half): four conv-BN-ReLU layers (stride 1, 2, 2, 2;
    ``width``, 2x, 3x, 4x filters), the input average-pooled by 2 and 4 concatenated before layers 3 and 4.

    Input ``(B, C, F, T)`` (a :func:`~selfsup.modalities.series.ops.gabor_scalogram`); NaN enters as zeros.
    The code ends with linear layers over the last map's time and frequency axes, sized for one input
    length; here the map is averaged over frequency and over the time steps that cover each series
    (``lengths``), so any length works, and inputs are zero-padded to multiples of 8 so the pooled
    skips line up.
    """

    def __init__(self, in_channels: int, width: int = 32, kernel_size: int = 5):
        super().__init__()
        self.layer1 = _conv_bn_relu_2d(in_channels, width, kernel_size, 1)
        self.layer2 = _conv_bn_relu_2d(width, 2 * width, kernel_size, 2)
        self.layer3 = _conv_bn_relu_2d(2 * width + in_channels, 3 * width, kernel_size, 2)
        self.layer4 = _conv_bn_relu_2d(3 * width + in_channels, 4 * width, kernel_size, 2)
        self.feature_dim = 4 * width

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map ``(B, 4*width, F/8, T/8)``."""
        x = torch.nan_to_num(x)
        x = F.pad(x, (0, -x.shape[-1] % 8, 0, -x.shape[-2] % 8))
        h = self.layer2(self.layer1(x))
        h = self.layer3(torch.cat([h, F.avg_pool2d(x, 2)], dim=1))
        return self.layer4(torch.cat([h, F.avg_pool2d(x, 4)], dim=1))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        h = self.encode(x).mean(dim=2)  # (B, D, T/8)
        if lengths is None:
            return h.mean(dim=2)
        steps = torch.div(lengths + 7, 8, rounding_mode="floor").clamp(min=1)
        inside = torch.arange(h.shape[-1], device=h.device) < steps[:, None]
        return (h * inside[:, None, :]).sum(dim=2) / steps[:, None]


class _DownBlock(nn.Module):
    """ReLU (not on the first block) -> stride-2 conv -> ReLU -> conv, plus the max-pooled input with
    zero channels appended (the ``BasicBlock`` of frame projections' Fourier encoder, no BN, no dropout)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, first: bool):
        super().__init__()
        self.first = first
        self.conv1 = nn.Conv1d(in_channels, out_channels, kernel_size, stride=2, padding=kernel_size // 2)
        self.conv2 = nn.Conv1d(out_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.extra = out_channels - in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.first else F.relu(x)
        h = self.conv2(F.relu(self.conv1(h)))
        identity = F.max_pool1d(x, 2, 2, ceil_mode=True)[..., : h.shape[-1]]
        identity = F.pad(identity, (0, 0, self.extra // 2, self.extra - self.extra // 2))
        return h + identity


class FourierEncoder(nn.Module):
    """The Fourier-coefficient encoder of frame projections (Demirel & Holz 2025, arXiv:2510.22655; code
    ``models_nc.py`` ``FourierEncoder``): amplitude and phase of the complex input ``(B, C, F)`` each go
    through conv(16) - ReLU and two residual down-sampling blocks (32, 64); each branch is pooled to
    64 values and the two are concatenated (128). The code pools with a linear layer sized for one
    input length; here the branch is averaged over frequency so any length works.
    """

    def __init__(self, in_channels: int, kernel_size: int = 3):
        super().__init__()

        def branch() -> nn.ModuleList:
            return nn.ModuleList(
                [
                    nn.Conv1d(in_channels, 16, kernel_size, padding=kernel_size // 2),
                    _DownBlock(16, 32, kernel_size, first=True),
                    _DownBlock(32, 64, kernel_size, first=False),
                ]
            )

        self.amplitude = branch()
        self.phase = branch()
        self.feature_dim = 128

    @staticmethod
    def _run(layers: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(layers[0](x))
        return layers[2](layers[1](h)).mean(dim=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.is_complex(), "FourierEncoder takes complex Fourier coefficients (ops.fourier_projection)"
        return torch.cat([self._run(self.amplitude, x.abs().float()), self._run(self.phase, x.angle().float())], dim=1)


class ConvMapping(nn.Module):
    """Frame projections' latent mapper (code ``models_nc.py`` ``ConvMapping``): the vector as a one-channel
    signal, a stride-2 convolution to ``hidden`` channels, ReLU, a transposed convolution back to one
    channel of the same length (even lengths)."""

    def __init__(self, hidden: int = 64, kernel_size: int = 3):
        super().__init__()
        self.conv = nn.Conv1d(1, hidden, kernel_size, stride=2, padding=kernel_size // 2)
        self.deconv = nn.ConvTranspose1d(hidden, 1, kernel_size, stride=2, padding=kernel_size // 2, output_padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.deconv(F.relu(self.conv(x[:, None, :])))[:, 0, : x.shape[1]]


# --------------------------------------------------------------------------- integrated encoders


def projection_mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """TF-C's cross-space projector (code ``model.py``): Linear - BN - ReLU - Linear."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, out_dim))


class TFCEncoder(nn.Module):
    """TF-C's encoder at inference (Zhang et al. 2022, arXiv:2206.08496, Sec. 3; code ``model.py`` and the
    fine-tuning classifier's input): the time encoder on ``x`` and the frequency encoder on ``|FFT(x)|``,
    each followed by its cross-space projector, concatenated ``[z_T, z_F]``."""

    def __init__(self, time: nn.Module, frequency: nn.Module, proj_hidden: int = 256, proj_dim: int = 128):
        super().__init__()
        self.time, self.frequency = time, frequency
        self.proj_time = projection_mlp(time.feature_dim, proj_hidden, proj_dim)
        self.proj_frequency = projection_mlp(frequency.feature_dim, proj_hidden, proj_dim)
        self.feature_dim = 2 * proj_dim

    def embed(self, x: torch.Tensor, xf: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(h_T, z_T, h_F, z_F)`` of a series and a spectrum (TF-C ``model.forward``)."""
        h_t, h_f = self.time(x), self.frequency(xf)
        return h_t, self.proj_time(h_t), h_f, self.proj_frequency(h_f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, z_t, _, z_f = self.embed(x, fft_magnitude(x))
        return torch.cat([z_t, z_f], dim=1)


class FrameProjEncoder(nn.Module):
    """Frame projections' integrated encoder (Demirel & Holz 2025, arXiv:2510.22655, Sec. 3.3; code
    ``frameworks.py`` ``IntegratedEncoder``): the time encoder's embedding ``h`` and the two latent
    mappers' estimates of the Fourier and Gabor encoders' embeddings, ``[map_F(h), h, map_G(h)]``."""

    def __init__(self, time: nn.Module, mapper_hidden: int = 1):
        super().__init__()
        if time.feature_dim % 2:
            raise UsageError(f"frame projections' mappers need an even feature width, got {time.feature_dim}")
        self.time = time
        self.map_fourier = ConvMapping(mapper_hidden)
        self.map_gabor = ConvMapping(mapper_hidden)
        self.feature_dim = 3 * time.feature_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.time(x)
        return torch.cat([self.map_fourier(h), h, self.map_gabor(h)], dim=1)


# --------------------------------------------------------------------------- registration


@dataclass
class TS2VecOptions:
    output_dim: int = 320  # representation dimensions (TS2Vec --repr-dims)
    hidden: int = 64  # hidden dimensions
    depth: int = 10  # hidden residual blocks
    mask_p: float = 0.5  # the probability that a timestamp is KEPT by TS2Vec's mask (its p); 1: no mask


@dataclass
class WangOptions:
    widths: tuple[int, int, int] = (0, 0, 0)  # filters per block (0, 0, 0: the paper's for the network)


@dataclass
class TSTCCOptions:
    out_channels: int = 128  # final_out_channels
    kernel_size: int = 8  # first block's kernel (HAR/Epilepsy configs: 8; sleepEDF: 25)
    stride: int = 1  # first block's stride (sleepEDF: 3)
    dropout: float = 0.35
    pool: str = "flatten"  # flatten (the code's classifier input) | mean | max


@dataclass
class CompositeOptions:
    inner: str = ""  # the inner series backbone (the time encoder)
    inner_options: dict = field(default_factory=dict)  # its family's options
    proj_hidden: int = 256  # tfc-encoder: cross-space projector hidden width
    proj_dim: int = 128  # tfc-encoder: projector output
    mapper_hidden: int = 1  # frameproj-encoder: the inference mappers' hidden channels (code: 1)


def _build_ts2vec(name: str, spec: dict, o: TS2VecOptions) -> nn.Module:
    return TS2VecEncoder(spec["channels"], o.output_dim, o.hidden, o.depth, mask_p=o.mask_p)


def _build_wang(name: str, spec: dict, o: WangOptions) -> nn.Module:
    cls = FCN if name == "fcn" else ResNet1D
    widths = o.widths if any(o.widths) else ((128, 256, 128) if name == "fcn" else (64, 128, 128))
    return cls(spec["channels"], tuple(widths))


def _build_tstcc(name: str, spec: dict, o: TSTCCOptions) -> nn.Module:
    if o.pool not in ("flatten", "mean", "max"):
        raise UsageError(f"model.pool must be flatten, mean or max, got {o.pool!r}")
    return TSTCCEncoder(spec["channels"], o.out_channels, o.kernel_size, o.stride, o.dropout, o.pool, spec["length"])


def _build_composite(name: str, spec: dict, o: CompositeOptions) -> nn.Module:
    inner = o.inner or ("tstcc-cnn" if name == "tfc-encoder" else "resnet1d")
    if inner in COMPOSITES:
        raise UsageError(f"{name} wraps a plain series backbone, not {inner}")
    time = build_backbone(inner, spec, o.inner_options)
    if name == "tfc-encoder":
        model = TFCEncoder(time, fresh_copy(time), o.proj_hidden, o.proj_dim)
    else:
        model = FrameProjEncoder(time, o.mapper_hidden)
    model.spec = {
        "options": dataclasses.asdict(dataclasses.replace(o, inner=inner, inner_options=time.spec["options"]))
    }
    return model


def composite_spec(name: str, time: nn.Module, **options) -> dict:
    """The ``spec`` of an integrated encoder built around the backbone ``time`` (what rebuilds it)."""
    o = CompositeOptions(inner=time.spec["name"], inner_options=time.spec["options"], **options)
    return {"name": name, "options": dataclasses.asdict(o)}


COMPOSITES = ("tfc-encoder", "frameproj-encoder")

register(Family("ts2vec", ("ts2vec-encoder",), TS2VecOptions, _build_ts2vec, ("series",)))
register(Family("wang2017", ("fcn", "resnet1d"), WangOptions, _build_wang, ("series",)))
register(Family("tstcc", ("tstcc-cnn",), TSTCCOptions, _build_tstcc, ("series",)))
register(Family("series-integrated", COMPOSITES, CompositeOptions, _build_composite, ("series",)))
