"""Batched image augmentations that run on the training device.

Every op takes a float batch ``x`` of shape (N, C, H, W) with values in [0, 1] and a
``torch.Generator`` on the same device (or a :class:`Uniforms` pool drawn from one), draws each
sample's random parameters with tensor ops, and returns a batch of the same dtype in [0, 1].
Nothing loops over samples in Python, nothing reads a tensor back to the host, and there is no
branching on tensor values, so the ops stay asynchronous on a GPU and trace under
``torch.compile``. Python branches only look at config floats and static shapes.

Semantics follow torchvision's (v2) transforms of the same names; each docstring states where
and why the batched version differs. Cost notes count passes over the batch: an elementwise op
is one memory-bound pass, which is what lets these ops keep up with a GPU's data appetite.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, as in torchvision's rgb_to_grayscale
CROP_TRIES = 10  # torchvision's RandomResizedCrop tries 10 boxes before its fallback
# Uniforms each op draws per sample, all in one call (one RNG kernel on a GPU).
DRAWS = {
    "resized_crop_flip": 2 * CROP_TRIES + 3,
    "color_jitter": 9,
    "random_grayscale": 1,
    "gaussian_blur": 2,
    "solarize": 1,
}


class Uniforms:
    """Per-sample uniforms drawn ahead, (N, K), which the ops accept in place of a generator.

    Dynamo cannot trace a draw from a ``torch.Generator``: every draw inside ``torch.compile``
    splits the graph. Drawing a whole view's numbers first, before any other tensor op, lets
    the view compile as one graph. Ops take their columns in call order.
    """

    def __init__(self, n: int, k: int, generator: torch.Generator, device: torch.device):
        self.values = torch.rand(n, k, generator=generator, device=device)
        self.taken = 0

    def take(self, k: int) -> torch.Tensor:
        if self.taken + k > self.values.shape[1]:
            raise ValueError(f"all {self.values.shape[1]} drawn uniforms are used up")
        self.taken += k
        return self.values[:, self.taken - k : self.taken]


Source = torch.Generator | Uniforms


def _draw(x: torch.Tensor, op: str, generator: Source) -> torch.Tensor:
    """(N, DRAWS[op]) uniforms in [0, 1) for one op: all its random parameters."""
    if isinstance(generator, Uniforms):
        return generator.take(DRAWS[op])
    return torch.rand(x.shape[0], DRAWS[op], generator=generator, device=x.device)


def _chosen(u: torch.Tensor, p: float) -> torch.Tensor:
    """Per-sample Bernoulli(p) from (N,) uniforms, shaped (N, 1, 1, 1) to broadcast."""
    return (u < p).view(-1, 1, 1, 1)


def _between(u: torch.Tensor, low: float, high: float) -> torch.Tensor:
    return u * (high - low) + low


def _luma(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) -> (N, 1, H, W) grey level, ITU-R 601-2."""
    r, g, b = x.unbind(1)
    return (LUMA[0] * r + LUMA[1] * g + LUMA[2] * b).unsqueeze(1)


# --- geometry -------------------------------------------------------------------------------


def resized_crop_flip(
    x: torch.Tensor,
    size: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip_p: float = 0.5,
    *,
    generator: Source,
    source_size: torch.Tensor | None = None,
) -> torch.Tensor:
    """RandomResizedCrop + RandomHorizontalFlip in one resampling pass -> (N, C, size, size).

    Each sample's box follows torchvision's rule: area fraction ~ U(scale), log aspect ratio
    ~ U(log ratio), offset uniform over the positions where the box fits. torchvision tries 10
    boxes in turn; here all 10 candidates are drawn at once and each sample takes its first
    one that fits, else torchvision's fallback (the whole image, its aspect ratio clamped into
    ``ratio``, centred). Unlike torchvision, boxes are not rounded to whole pixels: sides and
    offsets are fractional, which removes a quantisation that matters on small images.

    ``source_size`` (N, 2), each sample's (H, W) in its original file, is for images that were
    resized to fill the batch's H x W (a prepared store, :mod:`selfsup.modalities.image.prepare`):
    the boxes are drawn on the original's pixel grid, exactly as torchvision would draw them on the
    original file (area, aspect ratio and the fits test in its pixels, its fallback), then scaled
    to the stored image. The view is then the same part of the photo, resampled to the same size,
    whatever the stored resolution. Without it, each sample's original is the tensor itself; with
    ``source_size`` equal to the tensor's size the boxes are the same, bit for bit (but for the
    rounding of a fallback box whose ratio was clamped: there Python's float64 becomes float32).

    Crop and flip are one resampling per sample: bilinear, pixel centres as with
    ``align_corners=False``, border padding - the same sampling positions and weights as
    ``F.grid_sample`` with the equivalent affine grid, or ``F.interpolate(mode="bilinear",
    antialias=False)`` on the crop. Being axis-aligned it is separable, so it is computed as two
    small batched matmuls with per-sample interpolation matrices. Bilinear sampling does not
    antialias, so shrinking a large crop by more than about 2x aliases; typical uses upsample or
    mildly downsample, where this does not matter.

    Cost: two batched matmuls, (N, C, H, W) x (W, size) and (size, H) x (N, C, H, size).
    Coordinates need more than 8 mantissa bits, so a bf16/fp16 batch is sampled in float32 and
    cast back.
    """
    n, _, height, width = x.shape
    u = _draw(x, "resized_crop_flip", generator)
    if source_size is None:
        left, top, w, h = _crop_boxes(u, height, width, scale, ratio)
    else:
        left, top, w, h = _crop_boxes_of_originals(u, source_size.to(x.device, torch.float32), scale, ratio)
        to_x, to_y = width / source_size[:, 1].to(left), height / source_size[:, 0].to(left)
        left, w, top, h = left * to_x, w * to_x, top * to_y, h * to_y
    flip = u[:, -1] < flip_p

    # Crop + flip is axis-aligned, so bilinear resampling is separable: out = Ry @ x @ Rx^T with
    # one (size x H) and one (size x W) interpolation matrix per sample, two nonzeros a row.
    ry = _interpolation_matrix(top, h, torch.zeros_like(flip), size, height)
    rx = _interpolation_matrix(left, w, flip, size, width)
    n, c = x.shape[:2]
    cols = torch.bmm(x.float().reshape(n, c * height, width), rx.transpose(1, 2))  # (N, C*H, size)
    out = torch.bmm(ry, cols.view(n, c, height, size).transpose(1, 2).reshape(n, height, c * size))
    out = out.view(n, size, c, size).transpose(1, 2)
    return out.clamp_(0, 1).to(x.dtype)  # clamp: weights summing to 1 can round a hair above


def _first_fit(u: torch.Tensor, area, height, width, scale, ratio) -> tuple[torch.Tensor, ...]:
    """Each sample's first of the ``CROP_TRIES`` candidate boxes that fits: (w, h, found)."""
    frac = _between(u[:, :CROP_TRIES], scale[0], scale[1])
    aspect = torch.exp(_between(u[:, CROP_TRIES : 2 * CROP_TRIES], math.log(ratio[0]), math.log(ratio[1])))
    w = torch.sqrt(area * frac * aspect)
    h = torch.sqrt(area * frac / aspect)
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.to(torch.uint8).argmax(1, keepdim=True)  # argmax returns the first maximum
    return w.gather(1, first).squeeze(1), h.gather(1, first).squeeze(1), fits.any(1)


def _crop_boxes(u: torch.Tensor, height: int, width: int, scale, ratio) -> tuple[torch.Tensor, ...]:
    """(left, top, w, h) per sample on one height x width image grid."""
    w, h, found = _first_fit(u, height * width, height, width, scale, ratio)
    # torchvision's fallback depends only on the image shape, so it is a pair of Python floats.
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = float(width), width / min(ratio)
    elif in_ratio > max(ratio):
        fw, fh = height * max(ratio), float(height)
    else:
        fw, fh = float(width), float(height)
    w = torch.where(found, w, fw)
    h = torch.where(found, h, fh)
    left = torch.where(found, u[:, -3] * (width - w), (width - fw) / 2)  # the fallback is
    top = torch.where(found, u[:, -2] * (height - h), (height - fh) / 2)  # centred
    return left, top, w, h


def _crop_boxes_of_originals(u: torch.Tensor, source_size: torch.Tensor, scale, ratio) -> tuple[torch.Tensor, ...]:
    """(left, top, w, h) per sample on each sample's own H x W grid (``source_size``, float (N, 2))."""
    height, width = source_size[:, 0:1], source_size[:, 1:2]  # (N, 1): broadcast over the tries
    w, h, found = _first_fit(u, height * width, height, width, scale, ratio)
    height, width = height.squeeze(1), width.squeeze(1)
    in_ratio = width / height
    narrow, wide = in_ratio < min(ratio), in_ratio > max(ratio)
    fw = torch.where(wide, height * max(ratio), width)
    fh = torch.where(narrow, width / min(ratio), height)
    w = torch.where(found, w, fw)
    h = torch.where(found, h, fh)
    left = torch.where(found, u[:, -3] * (width - w), (width - fw) / 2)
    top = torch.where(found, u[:, -2] * (height - h), (height - fh) / 2)
    return left, top, w, h


def _interpolation_matrix(
    start: torch.Tensor, length: torch.Tensor, flip: torch.Tensor, size: int, extent: int
) -> torch.Tensor:
    """(N, size, extent) weights of 1-D bilinear sampling of the box [start, start + length).

    Output pixel j samples the box at its centre, (j + 0.5) / size of the way along (from the far
    end when flipped), in the pixel-centre convention of ``align_corners=False``; positions are
    clamped to [0, extent - 1] (border padding). The same sampling positions and weights as
    ``F.grid_sample(..., mode="bilinear", padding_mode="border", align_corners=False)`` with the
    equivalent affine grid, at a fraction of its cost on the CPU (two small batched matmuls).
    """
    j = (torch.arange(size, device=start.device, dtype=torch.float32) + 0.5) / size  # (size,)
    t = torch.where(flip.unsqueeze(1), 1 - j, j)  # (N, size)
    pos = (start.unsqueeze(1) + length.unsqueeze(1) * t - 0.5).clamp(0, extent - 1)
    lo = pos.floor()
    frac = pos - lo
    lo = lo.long()
    hi = (lo + 1).clamp(max=extent - 1)
    weights = torch.zeros(*pos.shape, extent, device=start.device)
    weights.scatter_add_(2, lo.unsqueeze(2), (1 - frac).unsqueeze(2))
    return weights.scatter_add_(2, hi.unsqueeze(2), frac.unsqueeze(2))


# --- colour ---------------------------------------------------------------------------------


def _shift_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the HSV hue of (N, 3, H, W) by ``shift`` (N,) turns; saturation and value are kept.

    RGB -> HSV -> RGB written so that saturation never needs dividing out: with value V = max and
    chroma C = max - min, channel n in {R: 5, G: 3, B: 1} is V - C * clamp(min(k, 4 - k), 0, 1)
    where k = (n + 6 H) mod 6 (the closed form of the hexcone). Grey pixels (C = 0) come back
    unchanged, like torchvision's hue = 0 convention for them.
    """
    r, g, b = x.unbind(1)
    low, v = torch.aminmax(x, dim=1)
    chroma = v - low
    # Hue in sixths of a turn; ties resolved as torchvision does (red, then green, then blue).
    is_r, is_g = v == r, v == g
    rise = torch.where(is_r, g - b, torch.where(is_g, b - r, r - g))
    sector = torch.where(is_r, 0.0, torch.where(is_g, 2.0, 4.0))
    sixths = rise / torch.where(chroma > 0, chroma, 1.0) + sector + 6 * shift.view(-1, 1, 1)
    n = torch.arange(5, 0, -2, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)  # R, G, B
    k = (sixths.unsqueeze(1) + n) % 6
    return v.unsqueeze(1) - chroma.unsqueeze(1) * torch.minimum(k, 4 - k).clamp_(0, 1)


def jitter_with(x: torch.Tensor, factors: torch.Tensor, order: torch.Tensor, hue: bool = True) -> torch.Tensor:
    """ColorJitter with given per-sample parameters; the deterministic half of :func:`color_jitter`.

    ``factors`` (N, 4): brightness, contrast and saturation factors and the hue shift in turns.
    ``order`` (N, 4): each sample's permutation of the op ids (0 brightness, 1 contrast,
    2 saturation, 3 hue). ``hue=False`` skips the hue op, as torchvision does for hue = 0.
    On 1-channel input saturation and hue are no-ops, as in torchvision.

    Brightness, contrast and saturation are all torchvision's blend ``clamp(f x + (1 - f) t)``
    with target t = 0, the image's mean grey, or the pixel's grey, so one blend with per-sample
    coefficients applies whichever of the three each sample's order names. Hue is not a blend
    and costs most, so it runs once for the whole batch: each sample's ops are laid out on 7
    slots with its hue op in slot 3, the ops before it right before, the ops after it right
    after, and unused slots as identity blends (f = 1). This is the per-sample order exactly.

    Cost, all elementwise: 2 blend rounds on 1 channel; on 3, 6 blend rounds (grey image, its mean,
    2 full passes each) and one HSV round trip, about 45 passes over the batch eagerly; ``torch.compile`` fuses them.
    Computed in float32 (hue needs the mantissa) and cast back to ``x.dtype``.
    """
    y = x.float()
    n, c = y.shape[:2]
    if c not in (1, 3):
        raise ValueError(f"colour jitter needs 1 or 3 channels, got {c}")
    hue = hue and c == 3
    ones = torch.ones_like(factors[:, :1], dtype=torch.float32)
    saturation = factors[:, 2:3].float() if c == 3 else ones
    blend = torch.cat([factors[:, :2].float(), saturation, ones], 1)  # op 3 blends as identity
    if hue:
        hue_at = (order == 3).to(torch.uint8).argmax(1, keepdim=True)
        position = torch.arange(-3, 4, device=order.device) + hue_at  # (N, 7)
        inside = (position >= 0) & (position <= 3)
        schedule = torch.where(inside, order.gather(1, position.clamp(0, 3)), 3)
    elif c == 1:
        # Saturation and hue are identities on grey images, so only the relative order of
        # brightness and contrast matters: two rounds instead of four.
        b_first = (order == 0).to(torch.uint8).argmax(1) < (order == 1).to(torch.uint8).argmax(1)
        pair = torch.arange(2, device=order.device).unsqueeze(0)  # [[0, 1]], made on the device (capturable)
        schedule = torch.where(b_first.unsqueeze(1), pair, pair.flip(1))
    else:
        schedule = order
    for slot in range(schedule.shape[1]):
        if hue and slot == 3:
            y = _shift_hue(y, factors[:, 3].float())
            continue
        op = schedule[:, slot : slot + 1]
        f = blend.gather(1, op)
        grey = _luma(y) if c == 3 else y
        # f y + (1 - f) t with t = [op is contrast] mean + [op is saturation] grey
        at_mean = ((1 - f) * (op == 1)).view(n, 1, 1, 1) * grey.mean((1, 2, 3), keepdim=True)
        at_grey = ((1 - f) * (op == 2)).view(n, 1, 1, 1)
        y = torch.addcmul(torch.addcmul(at_mean, at_grey, grey), f.view(n, 1, 1, 1), y).clamp_(0, 1)
    return y.to(x.dtype)


def color_jitter(
    x: torch.Tensor,
    p: float = 0.8,
    brightness: float = 0.4,
    contrast: float = 0.4,
    saturation: float = 0.2,
    hue: float = 0.1,
    *,
    generator: Source,
) -> torch.Tensor:
    """RandomApply(ColorJitter(brightness, contrast, saturation, hue), p), per sample.

    Factors ~ U(max(0, 1 - s), 1 + s) for brightness, contrast and saturation, hue shift
    ~ U(-hue, hue) turns, and a fresh random order of the four ops per sample, as torchvision
    draws them per image; the result is clamped to [0, 1] after each op. Samples not chosen by
    ``p`` are returned exactly unchanged. An op whose strength is 0 keeps its identity factor;
    hue = 0 skips the HSV round trip altogether. Cost: see :func:`jitter_with`.
    """
    if p <= 0:
        return x
    if not 0 <= hue <= 0.5:
        raise ValueError(f"hue must be in [0, 0.5], got {hue}")
    u = _draw(x, "color_jitter", generator)
    factors = torch.stack(
        [
            _between(u[:, 1], max(0.0, 1 - brightness), 1 + brightness),
            _between(u[:, 2], max(0.0, 1 - contrast), 1 + contrast),
            _between(u[:, 3], max(0.0, 1 - saturation), 1 + saturation),
            _between(u[:, 4], -hue, hue),
        ],
        1,
    )
    order = u[:, 5:].argsort(1)  # a uniformly random permutation per sample
    chosen = _chosen(u[:, 0], p)
    return torch.where(chosen, jitter_with(x, factors, order, hue=hue > 0), x)


def random_grayscale(x: torch.Tensor, p: float = 0.2, *, generator: Source) -> torch.Tensor:
    """RandomGrayscale: chosen samples become their ITU-R 601-2 luma on all 3 channels.

    A 1-channel batch is returned as is (its draw is still made, so a grey batch and the same
    batch replicated to 3 channels consume the generator identically). Cost: one elementwise pass.
    """
    if p <= 0:
        return x
    chosen = _chosen(_draw(x, "random_grayscale", generator)[:, 0], p)
    if x.shape[1] == 1:
        return x
    if x.shape[1] != 3:
        raise ValueError(f"grayscale needs 1 or 3 channels, got {x.shape[1]}")
    return torch.where(chosen, _luma(x).clamp(0, 1).expand_as(x), x)


# --- filtering and point ops ----------------------------------------------------------------


def gaussian_kernels(sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """(N,) sigmas -> (N, kernel_size) normalised Gaussians sampled at integer offsets."""
    half = kernel_size // 2
    t = torch.arange(-half, half + 1, device=sigma.device, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma.float().unsqueeze(1)) ** 2)
    return k / k.sum(1, keepdim=True)


def gaussian_blur(
    x: torch.Tensor,
    p: float,
    sigma: tuple[float, float] = (0.1, 2.0),
    *,
    kernel_size: int,
    generator: Source,
) -> torch.Tensor:
    """RandomApply(GaussianBlur(kernel_size, sigma), p) with a per-sample sigma ~ U(sigma).

    Reflect padding as torchvision. The batch is folded to (1, N*C, H, W) so each image gets its
    own kernel through one grouped (depthwise) convolution per axis. Chosen samples are blurred,
    the others returned exactly unchanged. Cost: one reflect pad plus two 1-D depthwise
    convolutions, O(kernel_size) per pixel.
    """
    if p <= 0:
        return x
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
    n, c, height, width = x.shape
    half = kernel_size // 2
    if half >= min(height, width):
        raise ValueError(f"kernel_size {kernel_size} too large for {height}x{width} images")
    u = _draw(x, "gaussian_blur", generator)
    chosen = _chosen(u[:, 0], p)
    k = gaussian_kernels(_between(u[:, 1], sigma[0], sigma[1]), kernel_size)
    k = k.to(x.dtype).repeat_interleave(c, 0)  # (N*C, kernel_size): one kernel per image channel
    # Reflection commutes with the other axis' 1-D blur, so padding both axes once is exact.
    y = F.pad(x.reshape(1, n * c, height, width), (half, half, half, half), mode="reflect")
    y = F.conv2d(y, k.view(n * c, 1, 1, kernel_size), groups=n * c)
    y = F.conv2d(y, k.view(n * c, 1, kernel_size, 1), groups=n * c)
    return torch.where(chosen, y.view_as(x).clamp(0, 1), x)


def solarize(x: torch.Tensor, p: float, threshold: float = 0.5, *, generator: Source) -> torch.Tensor:
    """RandomSolarize: in chosen samples, pixels >= threshold become 1 - pixel.

    Cost: one elementwise pass."""
    if p <= 0:
        return x
    chosen = _chosen(_draw(x, "solarize", generator)[:, 0], p)
    return torch.where(chosen & (x >= threshold), 1 - x, x)


def normalize(
    x: torch.Tensor, mean: Sequence[float] | torch.Tensor, std: Sequence[float] | torch.Tensor
) -> torch.Tensor:
    """(x - mean) / std per channel, in x's dtype. One elementwise pass into a new tensor.

    Pass mean and std as tensors already on x's device to avoid a host-to-device copy per call.
    """
    c = x.shape[1]
    mean = torch.as_tensor(mean, dtype=x.dtype, device=x.device)
    std = torch.as_tensor(std, dtype=x.dtype, device=x.device)
    if mean.numel() != c or std.numel() != c:
        raise ValueError(f"mean and std need {c} values, got {mean.numel()} and {std.numel()}")
    return (x - mean.view(1, c, 1, 1)) / std.view(1, c, 1, 1)
