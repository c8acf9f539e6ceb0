"""Statistical and reference tests for the batched augmentations and the BYOL view recipe."""

from __future__ import annotations

import colorsys
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from selfsup.errors import UsageError
from selfsup.modalities.image.ops import (
    Uniforms,
    color_jitter,
    gaussian_blur,
    jitter_with,
    normalize,
    random_grayscale,
    resized_crop_flip,
    solarize,
)
from selfsup.modalities.image.recipes import byol_views
from selfsup.modalities.image.views import VIEW_DRAWS, ViewAugment, ViewConfig, ViewRecipe, channel_stats

LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, written out so a wrong constant in the code shows


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def assert_rate(rate: float, p: float, n: int, sigmas: float = 4.0) -> None:
    """A Bernoulli(p) frequency over n trials lies within `sigmas` binomial standard deviations."""
    assert abs(rate - p) <= sigmas * math.sqrt(p * (1 - p) / n) + 1e-9, (rate, p, n)


def luma(x: torch.Tensor) -> torch.Tensor:
    return sum(w * x[:, i] for i, w in enumerate(LUMA)).unsqueeze(1)


OPS = {
    "crop": lambda x, g: resized_crop_flip(x, 12, generator=g),
    "jitter": lambda x, g: color_jitter(x, 1.0, 0.9, 0.9, 0.9, 0.5, generator=g),
    "grayscale": lambda x, g: random_grayscale(x, 0.5, generator=g),
    "blur": lambda x, g: gaussian_blur(x, 0.5, (0.1, 3.0), kernel_size=5, generator=g),
    "solarize": lambda x, g: solarize(x, 0.5, generator=g),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", sorted(OPS))
def test_ops_keep_dtype_range_and_shape(name, channels, dtype):
    x = torch.rand(16, channels, 20, 20, generator=gen())
    x[0], x[1] = 0.0, 1.0  # the ends of the range, where clamps matter
    out = OPS[name](x.to(dtype), gen(1))
    assert out.dtype == dtype
    assert out.shape == ((16, channels, 12, 12) if name == "crop" else x.shape)
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


# --- crop and flip --------------------------------------------------------------------------


def ramp_image(height: int, width: int) -> torch.Tensor:
    """Channel 0 holds each pixel centre's x / width, channel 1 its y / height."""
    xs = (torch.arange(width) + 0.5) / width
    ys = (torch.arange(height) + 0.5) / height
    return torch.stack([xs.expand(height, width), ys[:, None].expand(height, width)])[None]


def recover_boxes(out: torch.Tensor, height: int, width: int):
    """Each sample's crop box (left, top, w, h in pixels) and flip, read off the ramps.

    Bilinear sampling reproduces a linear ramp exactly away from the border, and output pixel k
    sees the input edge coordinate left + (k + 1/2) w / size, or left + w - (k + 1/2) w / size
    when flipped.
    """
    size = out.shape[-1]
    k1, k2 = size // 4, size - 1 - size // 4
    vx = out[:, 0, size // 2].double() * width
    vy = out[:, 1, :, size // 2].double() * height
    step_x = (vx[:, k2] - vx[:, k1]) / (k2 - k1)
    w = step_x.abs() * size
    flipped = step_x < 0
    seen = (k1 + 0.5) * w / size
    left = torch.where(flipped, vx[:, k1] + seen - w, vx[:, k1] - seen)
    h = (vy[:, k2] - vy[:, k1]) / (k2 - k1) * size
    top = vy[:, k1] - (k1 + 0.5) * h / size
    return left, top, w, h, flipped


def reference_boxes(m: int, height: int, width: int, scale, ratio, rng):
    """Area fractions and log ratios by torchvision's rule (10 tries, then the whole image when
    the aspect ratio is in range), with fractional sides as in resized_crop_flip."""
    s = rng.uniform(*scale, size=(m, 10))
    logr = rng.uniform(math.log(ratio[0]), math.log(ratio[1]), size=(m, 10))
    w = np.sqrt(height * width * s * np.exp(logr))
    h = np.sqrt(height * width * s / np.exp(logr))
    fits = (w <= width) & (h <= height)
    first = fits.argmax(1)
    found = fits.any(1)
    rows = np.arange(m)
    return np.where(found, s[rows, first], 1.0), np.where(found, logr[rows, first], 0.0)


def test_crop_box_distribution_matches_torchvision_rule():
    n, size, scale, ratio = 4096, 8, (0.08, 1.0), (3 / 4, 4 / 3)
    img = ramp_image(32, 32).expand(n, -1, -1, -1)
    out = resized_crop_flip(img, size, scale, ratio, generator=gen())
    left, top, w, h, flipped = recover_boxes(out, 32, 32)
    area = w * h / (32 * 32)
    log_ratio = torch.log(w / h)
    assert area.min() >= scale[0] - 1e-3 and area.max() <= scale[1] + 1e-3
    assert log_ratio.abs().max() <= math.log(4 / 3) + 1e-3
    assert left.min() >= -1e-3 and (left + w).max() <= 32 + 1e-3
    assert top.min() >= -1e-3 and (top + h).max() <= 32 + 1e-3

    ref_area, ref_log = reference_boxes(200_000, 32, 32, scale, ratio, np.random.default_rng(0))
    area, log_ratio = area.numpy(), log_ratio.numpy()
    assert abs(area.mean() - ref_area.mean()) < 4 * ref_area.std() / math.sqrt(n) + 2e-3
    assert abs(log_ratio.mean() - ref_log.mean()) < 4 * ref_log.std() / math.sqrt(n) + 2e-3
    bins = np.linspace(scale[0], scale[1], 9)
    want_hist = np.histogram(ref_area, bins)[0] / len(ref_area)
    for got, want in zip(np.histogram(area, bins)[0] / n, want_hist):
        assert abs(got - want) < 4 * math.sqrt(want * (1 - want) / n) + 5e-3
    # The offset is uniform over the positions where the box fits.
    room = 32 - w
    where = (left / room)[room > 2].numpy()
    assert abs(where.mean() - 0.5) < 4 * math.sqrt(1 / 12 / len(where))
    assert_rate(flipped.float().mean().item(), 0.5, n)


def test_flip_probability_zero_and_one():
    img = ramp_image(32, 32).expand(512, -1, -1, -1)
    never = resized_crop_flip(img, 8, flip_p=0.0, generator=gen())
    always = resized_crop_flip(img, 8, flip_p=1.0, generator=gen())
    assert not recover_boxes(never, 32, 32)[4].any()
    assert recover_boxes(always, 32, 32)[4].all()


@pytest.mark.parametrize("size", [12, 28])
def test_full_square_crop_without_flip_is_a_plain_resize(size):
    x = torch.rand(4, 3, 20, 20, generator=gen())
    out = resized_crop_flip(x, size, (1.0, 1.0), (1.0, 1.0), flip_p=0.0, generator=gen())
    want = F.interpolate(x, (size, size), mode="bilinear", align_corners=False, antialias=False)
    torch.testing.assert_close(out, want, atol=1e-5, rtol=0)
    flipped = resized_crop_flip(x, size, (1.0, 1.0), (1.0, 1.0), flip_p=1.0, generator=gen())
    torch.testing.assert_close(flipped, want.flip(-1), atol=1e-5, rtol=0)


def test_crop_fallback_is_torchvision_central_crop():
    # A 2:1 image can hold no square box of its whole area: the fallback clamps the ratio to 1
    # and centres a 20 x 20 box.
    x = torch.rand(3, 3, 20, 40, generator=gen())
    out = resized_crop_flip(x, 10, (1.0, 1.0), (1.0, 1.0), flip_p=0.0, generator=gen())
    want = F.interpolate(x[..., 10:30], size=(10, 10), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out, want, atol=1e-5, rtol=0)


def test_parameters_differ_within_a_batch():
    x = torch.rand(1, 3, 16, 16, generator=gen()).expand(64, -1, -1, -1)
    crops = resized_crop_flip(x, 8, generator=gen())
    assert torch.unique(crops.flatten(1), dim=0).shape[0] == 64
    jittered = color_jitter(x, 1.0, 0.4, 0.0, 0.0, 0.0, generator=gen())
    assert torch.unique(jittered.mean((1, 2, 3))).numel() == 64


# --- colour ---------------------------------------------------------------------------------


def recovered_factors(component: int, strength: float, n: int = 2048) -> np.ndarray:
    """Jitter with only one component on, and read each sample's factor back from the output."""
    strengths = [0.0, 0.0, 0.0, 0.0]
    strengths[component] = strength
    if component == 3:  # hue: the hue shift of a cyan pixel, which no shift in range wraps
        x = torch.tensor([0.2, 0.8, 0.8]).view(1, 3, 1, 1).expand(n, -1, -1, -1)
        out = color_jitter(x, 1.0, *strengths, generator=gen())
        hues = [colorsys.rgb_to_hsv(*rgb)[0] for rgb in out.view(n, 3).double().tolist()]
        return np.array(hues) - 0.5
    x = 0.45 + 0.1 * torch.rand(n, 3, 4, 4, generator=gen(1))  # no factor in range clamps it
    out = color_jitter(x, 1.0, *strengths, generator=gen())
    if component == 0:
        return (out.mean((1, 2, 3)) / x.mean((1, 2, 3))).numpy()
    if component == 1:  # contrast scales the deviations from the image's mean grey
        return (out.std((1, 2, 3)) / x.std((1, 2, 3))).numpy()
    # saturation scales each pixel's deviation from its own grey
    return ((out - luma(out)).std((1, 2, 3)) / (x - luma(x)).std((1, 2, 3))).numpy()


@pytest.mark.parametrize("component, strength", [(0, 0.4), (1, 0.3), (2, 0.2), (3, 0.1)])
def test_each_jitter_factor_is_uniform_on_its_own_range(component, strength):
    f = recovered_factors(component, strength)
    centre = 0.0 if component == 3 else 1.0
    low, high = centre - strength, centre + strength
    assert f.min() >= low - 1e-4 and f.max() <= high + 1e-4
    assert f.min() < low + 0.02 * strength and f.max() > high - 0.02 * strength
    for got in np.histogram(f, np.linspace(low, high, 5))[0] / len(f):
        assert_rate(got, 0.25, len(f))


def test_jitter_probability_zero_is_identity_and_rate_matches_p():
    x = torch.rand(4096, 3, 2, 2, generator=gen())
    assert torch.equal(color_jitter(x, 0.0, generator=gen()), x)
    out = color_jitter(x, 0.8, generator=gen())
    changed = (out != x).flatten(1).any(1)
    assert_rate(changed.float().mean().item(), 0.8, len(x))


def test_contrast_keeps_the_grey_mean():
    x = 0.4 + 0.2 * torch.rand(512, 3, 6, 6, generator=gen())  # contrast 1.4 stays in [0, 1]
    out = color_jitter(x, 1.0, 0.0, 0.4, 0.0, 0.0, generator=gen())
    grey_mean = luma(x).mean((1, 2, 3))
    torch.testing.assert_close(luma(out).mean((1, 2, 3)), grey_mean, atol=1e-5, rtol=0)
    spread = out.std((1, 2, 3)) / x.std((1, 2, 3))
    assert spread.min() < 0.65 and spread.max() > 1.35


def test_hue_round_trip_and_rotation():
    x = torch.rand(64, 3, 5, 5, generator=gen())
    x[:, :, 0] = x[:, :1, 0]  # a row of grey pixels, where hue is undefined
    x[:, :, 1, 0] = torch.tensor([1.0, 0.0, 0.0])  # pure red, on a hexcone corner
    identity = torch.arange(4).expand(64, 4)
    unchanged = torch.tensor([1.0, 1.0, 1.0, 0.0]).expand(64, 4)
    torch.testing.assert_close(jitter_with(x, unchanged, identity), x, atol=1e-5, rtol=0)
    # A third of a turn maps red to green, green to blue and blue to red.
    third = torch.tensor([1.0, 1.0, 1.0, 1 / 3]).expand(64, 4)
    torch.testing.assert_close(jitter_with(x, third, identity), x[:, [2, 0, 1]], atol=1e-5, rtol=0)


def test_saturation_zero_gives_the_grey_image():
    x = torch.rand(8, 3, 5, 5, generator=gen())
    no_saturation = torch.tensor([1.0, 1.0, 0.0, 0.0]).expand(8, 4)
    out = jitter_with(x, no_saturation, torch.arange(4).expand(8, 4), hue=False)
    torch.testing.assert_close(out, luma(x).expand_as(x), atol=1e-6, rtol=0)


def naive_jitter(img: np.ndarray, factors, order) -> np.ndarray:
    """torchvision's ColorJitter written out per sample and per pixel, with colorsys for hue."""
    img = img.astype(np.float64)

    def grey(a):
        return sum(w * a[i] for i, w in enumerate(LUMA)) if len(a) == 3 else a[0]

    for op in order:
        f = factors[op]
        if op == 0:
            img = np.clip(f * img, 0, 1)
        elif op == 1:
            img = np.clip(f * img + (1 - f) * grey(img).mean(), 0, 1)
        elif op == 2 and len(img) == 3:
            img = np.clip(f * img + (1 - f) * grey(img), 0, 1)
        elif op == 3 and len(img) == 3:
            out = np.empty_like(img)
            for i, j in np.ndindex(img.shape[1:]):
                h, s, v = colorsys.rgb_to_hsv(*img[:, i, j])
                out[:, i, j] = colorsys.hsv_to_rgb((h + f) % 1.0, s, v)
            img = out
    return img


@pytest.mark.parametrize("channels", [1, 3])
def test_jitter_matches_a_naive_torchvision_reference(channels):
    n, g = 24, gen(3)
    x = torch.rand(n, channels, 4, 5, generator=g)
    x[:, :, 0, 0] = 0.5  # a grey pixel
    factors = torch.stack(
        [
            0.6 + 0.8 * torch.rand(n, generator=g),  # brightness above 1 clamps
            0.6 + 0.8 * torch.rand(n, generator=g),
            2.0 * torch.rand(n, generator=g),
            torch.rand(n, generator=g) - 0.5,
        ],
        1,
    )
    order = torch.rand(n, 4, generator=g).argsort(1)
    out = jitter_with(x, factors, order)
    want = np.stack([naive_jitter(x[i].numpy(), factors[i].numpy(), order[i].tolist()) for i in range(n)])
    np.testing.assert_allclose(out.numpy(), want, atol=2e-5)


def test_grayscale_rate_and_values():
    x = torch.rand(4096, 3, 2, 2, generator=gen())
    out = random_grayscale(x, 0.2, generator=gen())
    grey = (out[:, 0] == out[:, 1]).all(-1).all(-1) & (out[:, 1] == out[:, 2]).all(-1).all(-1)
    assert_rate(grey.float().mean().item(), 0.2, len(x))
    torch.testing.assert_close(out[grey], luma(x[grey]).expand(-1, 3, -1, -1), atol=1e-6, rtol=0)
    assert torch.equal(out[~grey], x[~grey])
    one = torch.rand(8, 1, 4, 4, generator=gen())
    assert torch.equal(random_grayscale(one, 1.0, generator=gen()), one)


# --- blur, solarize, normalize --------------------------------------------------------------


def test_blurred_delta_has_the_gaussian_profile():
    n, size, ks, sigma = 256, 15, 9, (0.5, 2.0)
    x = torch.zeros(n, 1, size, size)
    c = size // 2
    x[:, :, c, c] = 1.0
    out = gaussian_blur(x, 1.0, sigma, kernel_size=ks, generator=gen())[:, 0].double()
    # Neighbouring taps of a sampled Gaussian differ by exp(-1 / (2 sigma^2)): solve for sigma.
    s = torch.sqrt(-0.5 / torch.log(out[:, c, c + 1] / out[:, c, c]))
    assert s.min() >= sigma[0] - 1e-4 and s.max() <= sigma[1] + 1e-4
    assert s.min() < 0.6 and s.max() > 1.9
    assert abs(s.mean().item() - 1.25) < 4 * (1.5 / math.sqrt(12)) / math.sqrt(n)
    t = torch.arange(ks, dtype=torch.float64) - ks // 2
    k = torch.exp(-0.5 * (t / s[:, None]) ** 2)
    k = k / k.sum(1, keepdim=True)
    want = torch.zeros_like(out)
    window = slice(c - ks // 2, c + ks // 2 + 1)
    want[:, window, window] = k[:, :, None] * k[:, None, :]
    torch.testing.assert_close(out, want, atol=1e-6, rtol=0)
    torch.testing.assert_close(out.sum((1, 2)), torch.ones_like(s), atol=1e-5, rtol=0)


def test_blur_keeps_unchosen_samples_and_constants():
    x = torch.rand(512, 3, 8, 8, generator=gen())
    assert torch.equal(gaussian_blur(x, 0.0, kernel_size=3, generator=gen()), x)
    out = gaussian_blur(x, 0.5, (1.0, 2.0), kernel_size=3, generator=gen())
    same = (out == x).flatten(1).all(1)
    assert_rate(same.float().mean().item(), 0.5, len(x))
    constant = torch.full((4, 3, 8, 8), 0.7)
    blurred = gaussian_blur(constant, 1.0, kernel_size=5, generator=gen())
    torch.testing.assert_close(blurred, constant, atol=1e-6, rtol=0)


def test_solarize_threshold_and_rate():
    x = torch.tensor([0.0, 0.25, 0.2999, 0.3, 0.5, 1.0]).view(1, 1, 1, 6)
    want = torch.tensor([0.0, 0.25, 0.2999, 0.7, 0.5, 0.0]).view(1, 1, 1, 6)
    torch.testing.assert_close(solarize(x, 1.0, 0.3, generator=gen()), want, atol=1e-7, rtol=0)
    ones = torch.ones(4096, 1, 2, 2)
    solarised = (solarize(ones, 0.2, generator=gen()) == 0).flatten(1).all(1)
    assert_rate(solarised.float().mean().item(), 0.2, 4096)
    assert torch.equal(solarize(ones, 0.0, generator=gen()), ones)


def test_normalize():
    x = torch.rand(2, 3, 4, 4, generator=gen())
    out = normalize(x, (0.1, 0.2, 0.3), (0.5, 0.25, 2.0))
    torch.testing.assert_close(out[:, 1], (x[:, 1] - 0.2) / 0.25)
    assert normalize(x.bfloat16(), (0.1, 0.2, 0.3), (1, 1, 1)).dtype == torch.bfloat16
    with pytest.raises(ValueError):
        normalize(x, (0.5,), (0.5,))


# --- views ----------------------------------------------------------------------------------

MEAN3, STD3 = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def digits(n: int = 64, channels: int = 1, size: int = 28) -> torch.Tensor:
    return torch.randint(0, 256, (n, channels, size, size), generator=gen(9), dtype=torch.uint8)


def test_byol_views_follow_the_paper():
    one, two = byol_views(32)
    assert (one.blur_p, one.solarize_p, two.blur_p, two.solarize_p) == (1.0, 0.0, 0.1, 0.2)
    for v in (one, two):
        assert (v.size, v.crop_scale, v.flip_p) == (32, (0.08, 1.0), 0.5)
        assert (v.jitter_p, v.grayscale_p) == (0.8, 0.2)
        assert (v.brightness, v.contrast, v.saturation, v.hue) == (0.4, 0.4, 0.2, 0.1)
        assert v.blur_sigma == (0.1, 2.0)


def test_view_config_checks_and_kernel_size():
    assert [ViewConfig(size=s).kernel_size for s in (28, 32, 96, 224)] == [3, 3, 11, 23]
    assert ViewConfig(blur_kernel=5).kernel_size == 5
    assert ViewConfig(crop_scale=[0.2, 1.0]).crop_scale == (0.2, 1.0)
    for bad in ({"flip_p": 1.5}, {"crop_scale": (0.5, 0.1)}, {"blur_kernel": 4}, {"hue": 0.7}):
        with pytest.raises(UsageError):
            ViewConfig(**bad)


def test_view_is_the_byol_chain_of_ops():
    # The view applies exactly crop -> jitter -> grayscale -> blur -> solarize -> normalize with
    # its config's parameters: the same draws through the ops by hand give the same tensor.
    batch = digits(32, 3)
    for cfg in byol_views(32):
        pool = Uniforms(len(batch), VIEW_DRAWS, gen(5), batch.device)
        x = batch.float() / 255
        x = resized_crop_flip(x, cfg.size, cfg.crop_scale, cfg.crop_ratio, cfg.flip_p, generator=pool)
        x = color_jitter(x, cfg.jitter_p, cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue, generator=pool)
        x = random_grayscale(x, cfg.grayscale_p, generator=pool)
        x = gaussian_blur(x, cfg.blur_p, cfg.blur_sigma, kernel_size=cfg.kernel_size, generator=pool)
        x = solarize(x, cfg.solarize_p, cfg.solarize_threshold, generator=pool)
        view = ViewAugment(cfg, 3, MEAN3, STD3)(batch, gen(5))
        assert torch.equal(view, normalize(x, MEAN3, STD3))


def test_view_rates_of_blur_and_solarize():
    n = 4096
    for cfg in byol_views(32):
        # Blur as configured for this view, on deltas: any sigma > 0 lights up the neighbours.
        delta = torch.zeros(n, 1, 5, 5)
        delta[:, :, 2, 2] = 1.0
        out = gaussian_blur(delta, cfg.blur_p, cfg.blur_sigma, kernel_size=cfg.kernel_size, generator=gen())
        assert_rate((out[:, 0, 2, 1] > 0).float().mean().item(), cfg.blur_p, n)
        # Solarisation end to end: a white image stays >= 0.6 through crop, jitter, grey and
        # blur, so a view below 0.5 was solarised.
        white = torch.full((n, 1, 8, 8), 255, dtype=torch.uint8)
        view = ViewAugment(cfg, 1, (0.0,), (1.0,))(white, gen())
        solarised = view.amax((1, 2, 3)) < 0.5
        assert_rate(solarised.float().mean().item(), cfg.solarize_p, n)


def test_recipe_shapes_seeds_and_grey_replication():
    recipe = ViewRecipe(byol_views(32), 3, MEAN3, STD3)
    batch = digits()
    views = recipe(batch, gen(1))
    assert len(views) == 2
    for v in views:
        assert v.shape == (64, 3, 32, 32) and v.dtype == torch.float32 and v.is_contiguous()
    assert not torch.equal(views[0], views[1])
    assert all(torch.equal(a, b) for a, b in zip(views, recipe(batch, gen(1))))
    assert not torch.equal(views[0], recipe(batch, gen(2))[0])
    # A grey batch is replicated at the end; replicating it first gives the same views.
    first = recipe(batch.expand(-1, 3, -1, -1), gen(1))
    for a, b in zip(views, first):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    with pytest.raises(ValueError):
        ViewRecipe(byol_views(32), 1, (0.5,), (0.25,))(digits(4, 3), gen())


def test_eval_transform_is_a_deterministic_resize():
    recipe = ViewRecipe(byol_views(32), 3, MEAN3, STD3)
    batch = digits()
    out = recipe.eval_transform(batch)
    assert out.shape == (64, 3, 32, 32) and torch.equal(out, recipe.eval_transform(batch))
    up = F.interpolate(batch.float() / 255, size=(32, 32), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out, normalize(up.expand(-1, 3, -1, -1), MEAN3, STD3))
    big = digits(4, 3, 64)
    down = F.interpolate(big.float() / 255, (32, 32), mode="bilinear", align_corners=False, antialias=True)
    torch.testing.assert_close(recipe.eval_transform(big), normalize(down, MEAN3, STD3))


@pytest.mark.slow
def test_recipe_traces_as_one_graph():
    recipe = ViewRecipe(byol_views(16), 3, MEAN3, STD3)
    explained = torch._dynamo.explain(recipe.__call__)(digits(8), gen())
    torch._dynamo.reset()
    assert explained.graph_break_count == 0


def test_uniforms_pool_runs_out_loudly():
    pool = Uniforms(4, 3, gen(), torch.device("cpu"))
    pool.take(2)
    with pytest.raises(ValueError):
        pool.take(2)


def test_channel_stats():
    images = torch.zeros(10, 2, 3, 3, dtype=torch.uint8)
    images[::2, 0] = 255  # half the images white in channel 0: mean 0.5, std 0.5
    images[:, 1] = 51  # constant 0.2
    mean, std = channel_stats(images, chunk=3)
    np.testing.assert_allclose(mean, (0.5, 0.2), atol=1e-12)
    np.testing.assert_allclose(std, (0.5, 0.0), atol=1e-12)
    random = torch.randint(0, 256, (100, 3, 7, 7), generator=gen(), dtype=torch.uint8)
    mean, std = channel_stats(random, chunk=7)
    x = random.double() / 255
    np.testing.assert_allclose(mean, x.mean((0, 2, 3)).numpy(), atol=1e-12)
    np.testing.assert_allclose(std, x.std((0, 2, 3), correction=0).numpy(), atol=1e-12)
