"""Batched view operations on series: float tensors ``(B, C, T)`` with NaN after each series' end.

Every random parameter is drawn per sample from the ``torch.Generator`` passed in (the device's), and
no op reads a tensor back to the host, so a batch's views are made on the device without a sync.
Padding is never read as data: value-wise ops leave NaN as NaN, ops that move values along time
(time warp, permutation) work within each series' own length, and the spectral projections treat
the padding as zeros, which for the wavelet transform equals transforming the series alone.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

# --------------------------------------------------------------------------- lengths


def series_lengths(x: torch.Tensor) -> torch.Tensor:
    """Per-sample length ``(B,)``: one past the last timestamp where any channel has a value."""
    present = ~torch.isnan(x).all(dim=1)  # (B, T)
    t = torch.arange(1, x.shape[-1] + 1, device=x.device)
    return (present * t).amax(dim=1)


def span_mask(x: torch.Tensor) -> torch.Tensor:
    """``(B, T)`` True from each series' first to its last timestamp where any channel has a value: what
    the encoders treat as the series (a NaN step inside it is a missing value, outside it padding)."""
    present = (~torch.isnan(x).all(dim=1)).to(torch.int32)
    # cumulative sums rather than cummax: the same mask, and ONNX has CumSum but no cummax
    after_first = present.cumsum(dim=1) > 0
    before_last = present.flip(1).cumsum(dim=1).flip(1) > 0
    return after_first & before_last


def valid_mask(x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """``(B, T)`` True before each series' end."""
    lengths = series_lengths(x) if lengths is None else lengths
    return torch.arange(x.shape[-1], device=x.device) < lengths[:, None]


# --------------------------------------------------------------------------- TS2Vec


@dataclass
class ContextCrops:
    """Two overlapping crops of every series (TS2Vec's contextual views).

    ``view1[..., -overlap:]`` and ``view2[..., :overlap]`` hold the same timestamps; the loss compares
    the encoder's outputs there only. ``start1``/``start2`` are each crop's first timestamp in ``x``.
    """

    view1: torch.Tensor
    view2: torch.Tensor
    overlap: int
    start1: torch.Tensor
    start2: torch.Tensor

    def overlapping(self, out1: torch.Tensor, out2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two views' per-timestamp outputs ``(B, T, D)`` at the shared timestamps only, as TS2Vec's
        ``out1[:, -crop_l:]`` and ``out2[:, :crop_l]``: what the hierarchical loss compares."""
        return out1[:, -self.overlap :], out2[:, : self.overlap]


def ts2vec_crops(
    x: torch.Tensor,
    generator: torch.Generator | None = None,
    host_generator: torch.Generator | None = None,
    temporal_unit: int = 0,
) -> ContextCrops:
    """TS2Vec's random cropping (Yue et al. 2022, arXiv:2106.10466, Sec. 3.2; code ``ts2vec.py`` ``fit``).

    Draws the overlap ``[left, right)`` of length ``crop_l >= 2**(temporal_unit+1)`` and the outer ends
    ``eleft <= left``, ``eright >= right`` once per batch, then a per-sample offset in
    ``[-eleft, T - eright]``; view 1 is ``[offset+eleft, offset+right)``, view 2 ``[offset+left,
    offset+eright)``. The batch-wide integers set tensor shapes, so they come from ``host_generator``
    (a CPU generator: drawing there never waits for the device); the offsets come from ``generator``.
    ``None`` for either: torch's default generator of that device.
    """
    batch, _, length = x.shape
    minimum = 2 ** (temporal_unit + 1)
    assert length >= minimum, f"series of length {length} is shorter than the minimum crop {minimum}"

    def draw(low: int, high: int) -> int:  # uniform integer in [low, high)
        return int(torch.randint(low, high, (1,), generator=host_generator))

    crop_l = draw(minimum, length + 1)
    left = draw(0, length - crop_l + 1)
    right = left + crop_l
    eleft = draw(0, left + 1)
    eright = draw(right, length + 1)
    offset = torch.randint(-eleft, length - eright + 1, (batch,), generator=generator, device=x.device)
    start1, start2 = offset + eleft, offset + left
    return ContextCrops(
        view1=take_windows(x, start1, right - eleft),
        view2=take_windows(x, start2, eright - left),
        overlap=crop_l,
        start1=start1,
        start2=start2,
    )


def take_windows(x: torch.Tensor, start: torch.Tensor, width: int) -> torch.Tensor:
    """``x[b, :, start[b] : start[b] + width]`` for every ``b`` at once (TS2Vec's ``take_per_row``)."""
    index = start[:, None] + torch.arange(width, device=x.device)
    return x.gather(2, index[:, None, :].expand(-1, x.shape[1], -1))


def timestamp_mask(
    batch: int,
    length: int,
    generator: torch.Generator | None,
    p: float = 0.5,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """TS2Vec's binomial timestamp mask (Sec. 3.2, ``encoder.py`` ``generate_binomial_mask``): ``(B, T)``,
    True (kept) with probability ``p``, from ``generator`` (``None``: the device's default one). The
    encoder zeroes the input projection where it is False."""
    return torch.rand((batch, length), generator=generator, device=device) < p


def centerize(x: torch.Tensor) -> torch.Tensor:
    """Move each series so its padding is split evenly between its two ends (TS2Vec ``utils.py``
    ``centerize_vary_length_series``, applied to variable-length training sets); equal-length series stay."""
    batch, channels, length = x.shape
    present = (~torch.isnan(x).all(dim=1)).to(torch.uint8)
    prefix = present.argmax(dim=1)
    suffix = present.flip(1).argmax(dim=1)
    shift = torch.div(prefix + suffix, 2, rounding_mode="floor") - prefix
    index = (torch.arange(length, device=x.device) - shift[:, None]) % length
    return x.gather(2, index[:, None, :].expand(-1, channels, -1))


def random_window(x: torch.Tensor, generator: torch.Generator, length: int) -> torch.Tensor:
    """One random window of ``length`` steps for the whole batch when the series are longer (TS2Vec's
    ``max_train_length``: ``x[:, offset : offset + max_train_length]`` per batch)."""
    if x.shape[-1] <= length:
        return x
    u = torch.rand((), generator=generator, device=x.device)
    start = (u * (x.shape[-1] - length + 1)).long().clamp(max=x.shape[-1] - length)
    index = start + torch.arange(length, device=x.device)
    return x.index_select(2, index)


def window_slice(
    x: torch.Tensor, generator: torch.Generator, scale_range: tuple[float, float], lengths: torch.Tensor | None = None
) -> torch.Tensor:
    """Window slicing (Le Guennec, Malinowski & Tavenard 2016): a random window of a random fraction
    ``scale_range`` of each series' own length, stretched back to that length by linear
    interpolation; the padding after each series' end stays as it is."""
    batch, channels, length = x.shape
    lengths = series_lengths(x) if lengths is None else lengths
    u = torch.rand((batch, 2), generator=generator, device=x.device, dtype=torch.float32)
    n = lengths.to(torch.float32).clamp(min=1)
    width = (scale_range[0] + (scale_range[1] - scale_range[0]) * u[:, 0]) * n
    width = width.clamp(min=1.0)
    start = u[:, 1] * (n - width)
    step = (width - 1) / (n - 1).clamp(min=1)
    position = start[:, None] + torch.arange(length, device=x.device, dtype=torch.float32)[None, :] * step[:, None]
    last = (lengths - 1).clamp(min=0)[:, None]
    lo = position.floor().long().clamp(min=0)
    lo = torch.minimum(lo, last)
    hi = torch.minimum(lo + 1, last)
    frac = (position - lo.to(torch.float32)).clamp(0, 1)[:, None, :].to(x.dtype)
    filled = torch.nan_to_num(x)
    out = (
        filled.gather(2, lo[:, None, :].expand(-1, channels, -1)) * (1 - frac)
        + filled.gather(2, hi[:, None, :].expand(-1, channels, -1)) * frac
    )
    inside = (torch.arange(length, device=x.device) < lengths[:, None])[:, None, :]
    # a missing value inside the window stays missing where it is read
    missing = torch.isnan(x).gather(2, lo[:, None, :].expand(-1, channels, -1))
    return torch.where(inside & ~missing, out, x)


# --------------------------------------------------------------------------- value-wise augmentations


def jitter(x: torch.Tensor, generator: torch.Generator, sigma: float) -> torch.Tensor:
    """Additive Gaussian noise (Um et al. 2017, arXiv:1706.00527; TS-TCC ``augmentations.py`` ``jitter``)."""
    return x + sigma * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def scale(x: torch.Tensor, generator: torch.Generator, sigma: float, loc: float = 1.0) -> torch.Tensor:
    """One factor ~ N(loc, sigma) per sample and channel (Um et al. 2017, "scaling")."""
    factor = loc + sigma * torch.randn(x.shape[:2] + (1,), generator=generator, device=x.device, dtype=x.dtype)
    return x * factor


def tstcc_scaling(x: torch.Tensor, generator: torch.Generator, sigma: float) -> torch.Tensor:
    """TS-TCC's ``scaling`` as its code draws it: a factor ~ N(2, sigma) per sample *and time step*,
    shared by the channels (Eldele et al. 2021, arXiv:2106.14112, ``dataloader/augmentations.py``)."""
    factor = 2.0 + sigma * torch.randn((x.shape[0], 1, x.shape[2]), generator=generator, device=x.device, dtype=x.dtype)
    return x * factor


def _smooth_curves(
    x: torch.Tensor, generator: torch.Generator, sigma: float, knots: int, lengths: torch.Tensor
) -> torch.Tensor:
    """``(B, C, T)`` smooth random curves around 1 through ``knots + 2`` values ~ N(1, sigma) spread evenly
    over each series' own length (Catmull-Rom interpolation, a C1 cubic like Um et al.'s spline)."""
    batch, channels, length = x.shape
    values = 1.0 + sigma * torch.randn(
        (batch, channels, knots + 2), generator=generator, device=x.device, dtype=x.dtype
    )
    span = (lengths - 1).clamp(min=1).to(x.dtype)  # (B,)
    position = torch.arange(length, device=x.device, dtype=x.dtype) / span[:, None] * (knots + 1)
    position = position.clamp(max=knots + 1)  # padding: hold the last value
    i1 = position.floor().long().clamp(max=knots)  # segment [i1, i1+1]
    u = (position - i1.to(x.dtype))[:, None, :]
    idx = torch.stack([(i1 - 1).clamp(min=0), i1, i1 + 1, (i1 + 2).clamp(max=knots + 1)])  # (4, B, T)
    p0, p1, p2, p3 = (values.gather(2, i[:, None, :].expand(-1, channels, -1)) for i in idx)
    return 0.5 * (2 * p1 + (p2 - p0) * u + (2 * p0 - 5 * p1 + 4 * p2 - p3) * u**2 + (3 * p1 - p0 - 3 * p2 + p3) * u**3)


def magnitude_warp(
    x: torch.Tensor, generator: torch.Generator, sigma: float = 0.2, knots: int = 4, lengths: torch.Tensor | None = None
) -> torch.Tensor:
    """Multiply by a smooth random curve around 1 spanning each series' length (Um et al. 2017,
    "magnitude warping"). ``lengths`` defaults to the NaN padding's."""
    lengths = series_lengths(x) if lengths is None else lengths
    return x * _smooth_curves(x, generator, sigma, knots, lengths)


def time_warp(
    x: torch.Tensor, generator: torch.Generator, sigma: float = 0.2, knots: int = 4, lengths: torch.Tensor | None = None
) -> torch.Tensor:
    """Resample each series along a smooth random monotone time map of its own length onto itself
    (Um et al. 2017, "time warping"); one map per sample, shared by its channels. Values after each
    series' end (``lengths``, by default where the NaN padding starts) are neither read nor changed."""
    batch, channels, length = x.shape
    lengths = series_lengths(x) if lengths is None else lengths
    speed = _smooth_curves(x[:, :1], generator, sigma, knots, lengths)[:, 0].clamp(min=0.05)  # (B, T), > 0
    inside = torch.arange(length, device=x.device) < lengths[:, None]
    speed = speed * inside
    warped = torch.cumsum(speed, dim=1) - speed[:, :1]  # starts at 0, increasing
    end = warped.gather(1, (lengths - 1).clamp(min=0)[:, None]).clamp(min=1e-6)
    warped = warped / end * (lengths - 1).clamp(min=0)[:, None].to(x.dtype)  # ends at length - 1
    lo = warped.floor().long().clamp(0, length - 1)
    hi = (lo + 1).clamp(max=(lengths - 1).clamp(min=0)[:, None])
    frac = (warped - lo.to(x.dtype))[:, None, :]
    filled = torch.nan_to_num(x)
    gathered = (
        filled.gather(2, lo[:, None, :].expand(-1, channels, -1)) * (1 - frac)
        + filled.gather(2, hi[:, None, :].expand(-1, channels, -1)) * frac
    )
    return torch.where(inside[:, None, :], gathered, x)


def segment_permutation(
    x: torch.Tensor, generator: torch.Generator, max_segments: int = 5, lengths: torch.Tensor | None = None
) -> torch.Tensor:
    """Cut each series into 1..max_segments-1 pieces at random points and shuffle the pieces (TS-TCC
    ``permutation``, Eldele et al. 2021, arXiv:2106.14112, Sec. 4.1). Unlike its code (which copies
    channel 0 into every channel) all channels move together; cuts fall strictly inside each series'
    own length, so no piece is empty and the padding stays where it is."""
    batch, channels, length = x.shape
    device = x.device
    cuts_max = max(max_segments - 2, 0)
    lengths = series_lengths(x) if lengths is None else lengths
    segments = torch.randint(1, max(max_segments, 2), (batch,), generator=generator, device=device)
    segments = torch.minimum(segments, lengths.clamp(min=1))  # a length-L series has <= L pieces
    # Candidate cut points 1..L-1, chosen without replacement by random keys; unused cuts go to L.
    keys = torch.rand((batch, max(length - 1, 1)), generator=generator, device=device)
    points = torch.arange(1, max(length, 2), device=device)
    keys = keys.masked_fill(points[None, :] >= lengths[:, None], 2.0)  # never pick outside the series
    k = min(cuts_max, keys.shape[1])
    chosen = points[keys.topk(k, dim=1, largest=False).indices] if k else keys.new_zeros((batch, 0)).long()
    used = torch.arange(k, device=device)[None, :] < (segments - 1)[:, None]
    cuts = torch.where(used, chosen, lengths[:, None]).sort(dim=1).values  # (B, k)
    starts = torch.cat([torch.zeros((batch, 1), dtype=torch.long, device=device), cuts], dim=1)  # (B, k+1)
    ends = torch.cat([cuts, lengths[:, None]], dim=1)
    sizes = ends - starts  # empty for unused pieces
    # Shuffle the pieces: random keys, empty pieces last.
    order_keys = torch.rand((batch, k + 1), generator=generator, device=device).masked_fill(sizes == 0, 2.0)
    order = order_keys.argsort(dim=1)
    new_starts, new_sizes = starts.gather(1, order), sizes.gather(1, order)
    out_ends = torch.cumsum(new_sizes, dim=1)  # where each piece ends in the output
    t = torch.arange(length, device=device).expand(batch, -1).contiguous()
    piece = torch.searchsorted(out_ends, t, right=True).clamp(max=k)  # output piece of each timestamp
    source = new_starts.gather(1, piece) + t - (out_ends - new_sizes).gather(1, piece)
    source = torch.where(t < lengths[:, None], source, t)  # padding maps to itself
    return x.gather(2, source[:, None, :].expand(-1, channels, -1))


# TS-TCC's augmentation parameters per config file (jitter_scale_ratio, jitter_ratio, max_seg).
TSTCC_CONFIGS = {
    "HAR": (1.1, 0.8, 8),
    "Epilepsy": (0.001, 0.001, 5),
    "sleepEDF": (1.5, 2.0, 12),
    "pFD": (2.0, 0.1, 5),
}


def tstcc_weak(x: torch.Tensor, generator: torch.Generator, jitter_scale_ratio: float) -> torch.Tensor:
    """TS-TCC's weak view. The paper (Sec. 4.1) calls it jitter-and-scale; its code's ``DataTransform``
    applies :func:`tstcc_scaling` alone, which is what this does."""
    return tstcc_scaling(x, generator, jitter_scale_ratio)


def tstcc_strong(x: torch.Tensor, generator: torch.Generator, max_segments: int, jitter_ratio: float) -> torch.Tensor:
    """TS-TCC's strong view: permutation, then jitter (Sec. 4.1, ``DataTransform``)."""
    return jitter(segment_permutation(x, generator, max_segments), generator, jitter_ratio)


# --------------------------------------------------------------------------- TF-C


def fft_magnitude(x: torch.Tensor) -> torch.Tensor:
    """TF-C's frequency-domain input ``|FFT(x)|`` over all T bins (Zhang et al. 2022, arXiv:2206.08496,
    Sec. 3; code ``dataloader.py``). Padding enters as zeros."""
    return torch.fft.fft(torch.nan_to_num(x), dim=-1).abs()


def remove_frequency(xf: torch.Tensor, generator: torch.Generator, ratio: float = 0.1) -> torch.Tensor:
    """Zero a random ``ratio`` of the spectrum's components (TF-C ``augmentations.py`` ``remove_frequency``)."""
    keep = torch.rand(xf.shape, generator=generator, device=xf.device) > ratio
    return xf * keep


def add_frequency(xf: torch.Tensor, generator: torch.Generator, ratio: float = 0.1) -> torch.Tensor:
    """Raise a random ``ratio`` of the components by up to 0.1 x the largest amplitude (TF-C ``add_frequency``).
    The largest amplitude is each sample's own; the code takes the whole tensor's, so a view depended on
    what else was loaded with it."""
    chosen = torch.rand(xf.shape, generator=generator, device=xf.device) > 1 - ratio
    peak = xf.flatten(1).amax(dim=1).view(-1, *([1] * (xf.ndim - 1)))
    amount = torch.rand(xf.shape, generator=generator, device=xf.device, dtype=xf.dtype) * (0.1 * peak)
    return xf + chosen * amount


def tfc_frequency_view(xf: torch.Tensor, generator: torch.Generator, ratio: float = 0.1) -> torch.Tensor:
    """TF-C's augmented spectrum: ``remove_frequency(xf) + add_frequency(xf)``, summed as its
    ``DataTransform_FD`` does (Sec. 3.2, "frequency-based augmentations")."""
    return remove_frequency(xf, generator, ratio) + add_frequency(xf, generator, ratio)


def tfc_time_view(x: torch.Tensor, generator: torch.Generator, jitter_ratio: float) -> torch.Tensor:
    """TF-C's augmented series: jitter alone, as its code's ``DataTransform_TD`` does."""
    return jitter(x, generator, jitter_ratio)


# --------------------------------------------------------------------------- frame projections


def fourier_projection(x: torch.Tensor) -> torch.Tensor:
    """Projection on the orthonormal Fourier basis: complex ``(B, C, T//2+1)``, ``rfft(norm="ortho")``
    as frame projections' ``FourierTransform.compute_FT`` (Demirel & Holz 2025, arXiv:2510.22655,
    Sec. 3, ``utils.py``). Padding enters as zeros."""
    return torch.fft.rfft(torch.nan_to_num(x), dim=-1, norm="ortho")


def default_scales() -> tuple[float, ...]:
    """The 48 log-spaced scales 1..128 of frame projections' ``WaveletTransform``."""
    return tuple(np.geomspace(1, 128, num=48).tolist())


def gabor_scalogram(
    x: torch.Tensor,
    scales: tuple[float, ...] | None = None,
    bandwidth: float = 1.0,
    center: float = 1.0,
    precision: int = 12,
    lengths: torch.Tensor | None = None,
) -> torch.Tensor:
    """The overcomplete Gabor frame projection of frame projections: ``|CWT|`` with the complex Morlet
    wavelet ``cmor{bandwidth}-{center}`` (Demirel & Holz 2025, arXiv:2510.22655, Sec. 3; ``utils.py``
    ``WaveletTransform.compute_cwt``, which calls ``pywt.cwt``). Returns real ``(B, C, S, T)``.

    Computed as PyWavelets' ``cwt(method="conv")`` does (integrated wavelet resampled per scale,
    convolution, first difference, centre crop), with all scales and series in one FFT convolution.
    Padding (after ``lengths``, by default the NaN padding's) enters as zeros, which equals transforming
    each series alone; the output there is NaN.
    """
    valid = valid_mask(x, lengths)
    scales = tuple(scales) if scales is not None else default_scales()
    batch, channels, length = x.shape
    real_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    complex_dtype = torch.complex128 if real_dtype == torch.float64 else torch.complex64
    spectrum, size = _cwt_spectrum(scales, bandwidth, center, precision, length)
    spectrum = spectrum.to(device=x.device, dtype=complex_dtype)  # (S, size)
    signal = torch.fft.fft((torch.nan_to_num(x) * valid[:, None, :]).to(real_dtype), n=size, dim=-1)  # (B, C, size)
    coefficients = torch.fft.ifft(signal[:, :, None, :] * spectrum, dim=-1)[..., :length]
    magnitude = coefficients.abs().to(x.dtype)
    return magnitude.masked_fill(~valid[:, None, None, :], float("nan"))


@functools.lru_cache(maxsize=16)
def _cwt_spectrum(
    scales: tuple[float, ...], bandwidth: float, center: float, precision: int, length: int
) -> tuple[torch.Tensor, int]:
    """The filter bank's spectrum for series of ``length`` steps and the FFT size. Taps ``m`` with
    ``|m| >= length`` never meet a value of the series, so the bank is cut to ``|m| < length`` and the FFT
    needs only ``length + reach`` points (no circular wrap-around reaches the first ``length`` outputs)."""
    bank, centre = _cwt_filter_bank(scales, bandwidth, center, precision)
    reach = min(centre, length - 1)
    bank = bank[:, centre - reach : centre + reach + 1]
    size = max(length + reach, 2 * reach + 1)
    size = 1 << (size - 1).bit_length()
    filters = torch.zeros((len(scales), size), dtype=torch.complex128)
    filters[:, : bank.shape[1]] = torch.from_numpy(bank)
    filters = torch.roll(filters, -reach, dims=1)  # tap m sits at index m mod size
    return torch.fft.fft(filters, dim=1), size


@functools.lru_cache(maxsize=8)
def _cwt_filter_bank(
    scales: tuple[float, ...], bandwidth: float, center: float, precision: int
) -> tuple[np.ndarray, int]:
    """Per-scale filters ``h_s`` with ``cwt_s = x * h_s`` (full convolution, then the crop pywt applies),
    stacked with a common centre: returns ``(S, 2M+1)`` complex taps and ``M`` (the index of tap 0)."""
    grid = np.linspace(-8.0, 8.0, 2**precision)  # cmor's support, as pywt samples it
    psi = np.exp(-(grid**2) / bandwidth) * np.exp(2j * np.pi * center * grid) / np.sqrt(np.pi * bandwidth)
    step = grid[1] - grid[0]
    int_psi = np.conj(np.cumsum(psi) * step)
    span = grid[-1] - grid[0]
    taps = []
    for s in scales:
        j = (np.arange(s * span + 1) / (s * step)).astype(int)
        kernel = int_psi[j[j < int_psi.size]][::-1]  # pywt's int_psi_scale
        size = kernel.size
        shift = math.floor((size - 2) / 2)  # pywt's crop of the first difference
        # cwt[t] = -sqrt(s) * (conv[t+shift+1] - conv[t+shift]) = sum_j x[j] h[t-j], h[m] = -sqrt(s) dk[m+shift+1]
        dk = np.diff(np.concatenate([[0], kernel, [0]]))  # dk[i] = k[i] - k[i-1], i = 0..size
        taps.append((-(shift + 1), -np.sqrt(s) * dk))  # first tap index m, values
    half = max(max(-first, first + len(v) - 1) for first, v in taps)
    bank = np.zeros((len(scales), 2 * half + 1), dtype=np.complex128)
    for row, (first, values) in enumerate(taps):
        bank[row, half + first : half + first + len(values)] = values
    return bank, half
