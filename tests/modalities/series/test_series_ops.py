"""Series view ops on real archives: TS2Vec's crops, per-sample randomness, padding never read."""

from __future__ import annotations

import numpy as np
import torch
from _series_archives import archive, require

from selfsup.losses.series import hierarchical_contrastive_loss
from selfsup.modalities.series import ops


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_crops_overlap_as_ts2vec_defines_them():
    x = archive("GunPoint").train[:16]
    for seed in range(20):
        crops = ops.ts2vec_crops(x, gen(seed), gen(100 + seed))
        length = x.shape[2]
        l1, l2 = crops.view1.shape[2], crops.view2.shape[2]
        assert 2 <= crops.overlap <= min(l1, l2)
        # view 1 = [s1, s1 + l1), view 2 = [s2, s2 + l2), inside the series, s1 <= s2, ends ordered
        assert (crops.start1 >= 0).all() and (crops.start2 + l2 <= length).all()
        assert (crops.start1 <= crops.start2).all() and (crops.start1 + l1 <= crops.start2 + l2).all()
        # the overlap is the last `overlap` steps of view 1 and the first of view 2: the same timestamps of x
        shared = torch.stack([x[b, :, crops.start2[b] : crops.start2[b] + crops.overlap] for b in range(len(x))])
        torch.testing.assert_close(crops.view1[..., -crops.overlap :], shared, rtol=0, atol=0)
        torch.testing.assert_close(crops.view2[..., : crops.overlap], shared, rtol=0, atol=0)
        assert crops.start1[0] + l1 == crops.start2[0] + crops.overlap
    offsets = torch.stack([ops.ts2vec_crops(x, gen(s), gen(7)).start1 for s in range(5)])
    assert len(torch.unique(offsets[0])) > 1  # offsets drawn per sample


def test_loss_sees_only_the_overlap():
    x = archive("GunPoint").train[:8]
    crops = ops.ts2vec_crops(x, gen(1), gen(2))
    # stand-in "encoder outputs": the series values repeated along a feature axis, (B, T, D)
    out1 = crops.view1.transpose(1, 2).repeat(1, 1, 4)
    out2 = crops.view2.transpose(1, 2).repeat(1, 1, 4) * 1.5
    z1, z2 = crops.overlapping(out1, out2)
    before = hierarchical_contrastive_loss(z1, z2)
    outside1 = torch.arange(out1.shape[1]) < out1.shape[1] - crops.overlap
    outside2 = torch.arange(out2.shape[1]) >= crops.overlap
    out1[:, outside1] = 1e3 * torch.randn_like(out1[:, outside1])
    out2[:, outside2] = -1e3
    after = hierarchical_contrastive_loss(*crops.overlapping(out1, out2))
    assert torch.equal(before, after)


def test_timestamp_mask_is_binomial_and_seeded():
    mask = ops.timestamp_mask(64, 200, gen(3))
    assert mask.dtype == torch.bool and abs(mask.float().mean().item() - 0.5) < 0.02
    assert torch.equal(mask, ops.timestamp_mask(64, 200, gen(3)))
    assert not torch.equal(mask, ops.timestamp_mask(64, 200, gen(4)))


def test_value_ops_keep_nan_padding_and_draw_per_sample():
    x = archive("PickupGestureWiimoteZ").train[:12]
    nan = torch.isnan(x)
    for op in (
        lambda v, g: ops.jitter(v, g, 0.8),
        lambda v, g: ops.scale(v, g, 1.1),
        lambda v, g: ops.tstcc_scaling(v, g, 1.1),
        ops.magnitude_warp,
        ops.time_warp,
        lambda v, g: ops.segment_permutation(v, g, 8),
    ):
        out = op(x, gen(5))
        assert torch.equal(torch.isnan(out), nan)
        assert torch.equal(torch.nan_to_num(out), torch.nan_to_num(op(x, gen(5))))  # same generator, same view
    factors = ops.scale(torch.ones(6, 2, 10), gen(0), 1.1)[:, :, 0]
    assert len(torch.unique(factors)) == 12


def test_permutation_moves_whole_pieces_within_each_series():
    x = archive("PickupGestureWiimoteZ").train[:32]
    lengths = ops.series_lengths(x)
    out = ops.segment_permutation(x, gen(9), max_segments=5)
    changed = 0
    for b in range(len(x)):
        n = int(lengths[b])
        a, p = x[b, 0, :n].numpy(), out[b, 0, :n].numpy()
        assert np.array_equal(np.sort(a), np.sort(p))
        changed += not np.array_equal(a, p)
    assert changed > 0


def _garbage_padding(x: torch.Tensor, lengths: torch.Tensor, value_seed: int) -> torch.Tensor:
    padded = torch.arange(x.shape[2]) >= lengths[:, None]
    out = x.clone()
    noise = torch.randn(x.shape, generator=gen(value_seed)) * 1e4
    out[padded[:, None, :].expand_as(x)] = noise[padded[:, None, :].expand_as(x)]
    return out


def test_ops_along_time_never_read_padding():
    x = archive("PickupGestureWiimoteZ").train[:16]
    lengths = ops.series_lengths(x)
    assert lengths.min() < x.shape[2]
    a, b = _garbage_padding(x, lengths, 1), _garbage_padding(x, lengths, 2)
    inside = (torch.arange(x.shape[2]) < lengths[:, None])[:, None, :].expand_as(x)
    for op in (ops.time_warp, ops.magnitude_warp, lambda v, g, lengths=None: ops.segment_permutation(v, g, 8, lengths)):
        reference = op(x, gen(3))
        for garbage in (a, b):
            out = op(garbage, gen(3), lengths=lengths)
            torch.testing.assert_close(out[inside], reference[inside], rtol=0, atol=0)
    scalogram = ops.gabor_scalogram(x)
    for garbage in (a, b):
        torch.testing.assert_close(ops.gabor_scalogram(garbage, lengths=lengths), scalogram, equal_nan=True)


def test_tfc_frequency_perturbations():
    x = archive("GunPoint").train[:8]
    xf = ops.fft_magnitude(x)
    torch.testing.assert_close(xf, torch.fft.fft(x.double(), dim=-1).abs().float(), rtol=1e-4, atol=1e-4)
    removed = ops.remove_frequency(xf, gen(0), 0.1)
    assert 0.05 < (removed == 0).float().mean() < 0.15
    added = ops.add_frequency(xf, gen(0), 0.1)
    raised = added > xf
    assert 0.05 < raised.float().mean() < 0.15
    peak = xf.flatten(1).amax(1)[:, None, None]
    assert ((added - xf) <= 0.1 * peak + 1e-6).all()
    view = ops.tfc_frequency_view(xf, gen(0), 0.1)
    assert view.shape == xf.shape and torch.isfinite(view).all()


def test_fourier_projection_is_orthonormal():
    x = archive("GunPoint").train[:4].double()
    coefficients = ops.fourier_projection(x)
    assert coefficients.shape == (4, 1, 76) and coefficients.is_complex()
    torch.testing.assert_close(torch.fft.irfft(coefficients, n=150, norm="ortho"), x)


def test_gabor_scalogram_matches_pywavelets_on_real_series():
    require("pywt")
    import pywt

    data = archive("PickupGestureWiimoteZ").train[:3]
    lengths = ops.series_lengths(data)
    scales = ops.default_scales()
    out = ops.gabor_scalogram(data.double(), scales)
    assert out.shape == (3, 1, 48, data.shape[2])
    for b in range(3):
        n = int(lengths[b])
        reference = np.abs(pywt.cwt(data[b, 0, :n].double().numpy(), np.array(scales), "cmor1-1")[0])
        np.testing.assert_allclose(out[b, 0, :, :n].numpy(), reference, rtol=1e-7, atol=1e-9)
        assert torch.isnan(out[b, 0, :, n:]).all()


def test_span_covers_first_to_last_value_and_keeps_missing_values_inside():
    x = archive("PickupGestureWiimoteZ").train[:6].clone()
    lengths = ops.series_lengths(x)
    x[0, 0, 3] = float("nan")  # a missing value inside the series
    shifted = torch.nn.functional.pad(x, (5, 0), value=float("nan"))
    span = ops.span_mask(shifted)
    expected = (torch.arange(shifted.shape[2]) >= 5) & (torch.arange(shifted.shape[2]) < 5 + lengths[:, None])
    assert torch.equal(span, expected)


def test_centerize_splits_the_padding_as_ts2vec_does():
    x = archive("PickupGestureWiimoteZ").train[:8]
    out = ops.centerize(x)
    lengths = ops.series_lengths(x)
    for b in range(8):
        n, pad = int(lengths[b]), x.shape[2] - int(lengths[b])
        start = pad // 2  # TS2Vec: offset (prefix + suffix) // 2 - prefix with prefix 0
        torch.testing.assert_close(out[b, :, start : start + n], x[b, :, :n], rtol=0, atol=0)
        assert torch.isnan(out[b, :, :start]).all() and torch.isnan(out[b, :, start + n :]).all()
    equal = archive("GunPoint").train[:4]
    assert torch.equal(ops.centerize(equal), equal)


def test_window_slice_stretches_a_window_of_each_series_back_to_its_length():
    x = archive("PickupGestureWiimoteZ").train[:16]
    lengths = ops.series_lengths(x)
    out = ops.window_slice(x, gen(0), (0.5, 1.0), lengths)
    assert torch.equal(torch.isnan(out), torch.isnan(x))  # padding stays, nothing inside becomes missing
    torch.testing.assert_close(out, ops.window_slice(x, gen(0), (0.5, 1.0), lengths), rtol=0, atol=0, equal_nan=True)
    same = ops.window_slice(x, gen(1), (1.0, 1.0), lengths)
    torch.testing.assert_close(same, x, equal_nan=True)  # the whole series: unchanged
    for b in range(16):  # values come from the series' own range
        n = int(lengths[b])
        assert out[b, 0, :n].min() >= x[b, 0, :n].min() - 1e-5 and out[b, 0, :n].max() <= x[b, 0, :n].max() + 1e-5


def test_random_window_is_one_window_per_batch():
    x = archive("GunPoint").train[:4]
    out = ops.random_window(x, gen(3), 40)
    assert out.shape == (4, 1, 40)
    start = [s for s in range(111) if torch.equal(x[0, :, s : s + 40], out[0])][0]
    assert torch.equal(x[:, :, start : start + 40], out)
    assert ops.random_window(x, gen(3), 200) is x
