"""The series methods' own parts on real series: TS2Vec's averaged encoder and crops, TS-TCC's context
without a shape that depends on its random step, TF-C's and frame projections' integrated encoders."""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

from selfsup.backbones import build_backbone
from selfsup.errors import UsageError
from selfsup.methods import METHODS
from selfsup.modalities import MODALITIES

SERIES = MODALITIES["series"]


def _gunpoint(n: int = 8, length: int = 64) -> torch.Tensor:
    if importlib.util.find_spec("aeon") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("aeon is not installed: pip install --no-deps aeon==1.6.0 (docs/data/series.md)")
        pytest.skip("aeon (the GunPoint archive) is not installed")
    from selfsup.modalities.series.sources import load_ucr

    return load_ucr("GunPoint").train[:n, :, :length]


SPEC = {"channels": 1, "length": 64}


def _method(name: str, backbone: str, options: dict, **args):
    cls = METHODS[name]
    return cls(build_backbone(backbone, SPEC, options), cls.Args(**args))


def test_ts2vec_representations_come_from_the_running_mean_of_the_weights():
    torch.manual_seed(0)
    x = _gunpoint(4, 32)
    method = _method("ts2vec", "ts2vec-encoder", {"output_dim": 16, "hidden": 8, "depth": 1})
    assert method.encoder is method.averaged and not any(p.requires_grad for p in method.averaged.parameters())
    seen = [[p.detach().clone() for p in method.backbone.parameters()]]
    for step in range(3):
        out = method([x])
        method.zero_grad()
        out["loss"].backward()
        with torch.no_grad():  # a plain gradient step
            for p in method.backbone.parameters():
                p -= 0.5 * p.grad
        method.after_step(step + 1, 3)
        seen.append([p.detach().clone() for p in method.backbone.parameters()])
    for i, avg in enumerate(method.averaged.parameters()):  # AveragedModel: the initial weights and every step's
        torch.testing.assert_close(avg, torch.stack([s[i] for s in seen]).mean(dim=0))
    assert out["features"].shape == (4, 16) and torch.isfinite(out["features"]).all()


def test_ts2vec_trains_under_its_timestamp_mask_with_the_keep_probability():
    # The method draws TS2Vec's mask (the encoder draws none): with mask_p 0 every projected timestamp
    # is zeroed, so the loss cannot depend on the values; with 1 none is, and it does.
    x = _gunpoint(6, 48)
    other = x * 3.0 + 1.0
    for p, reads in ((0.0, False), (1.0, True)):
        method = _method("ts2vec", "ts2vec-encoder", {"output_dim": 16, "hidden": 8, "depth": 2, "mask_p": p})
        method.backbone.repr_dropout.p = 0.0
        losses = []
        for series in (x, other):
            torch.manual_seed(0)  # the same crops and masks for both
            losses.append(method([series])["loss"].item())
        assert (losses[0] != losses[1]) == reads, (p, losses)
    # The mask comes from the default generator, as the crops do: the same seed draws it again, another
    # seed does not (what the encoder's own generator argument promised before the method drew it).
    method = _method("ts2vec", "ts2vec-encoder", {"output_dim": 16, "hidden": 8, "depth": 2})
    method.backbone.repr_dropout.p = 0.0
    seeded = []
    for seed in (1, 1, 2):
        torch.manual_seed(seed)
        seeded.append(method([x])["loss"].item())
    assert seeded[0] == seeded[1] and seeded[0] != seeded[2], seeded
    # FCN takes no mask: TS2Vec trains it on the crops alone.
    method = _method("ts2vec", "fcn", {})
    torch.manual_seed(0)
    assert torch.isfinite(method([x])["loss"])


def test_ts2vec_on_variable_length_series_masks_the_padding_in_its_crops():
    if importlib.util.find_spec("aeon") is None:
        pytest.skip("aeon is not installed")
    from selfsup.modalities.series.ops import series_lengths
    from selfsup.modalities.series.sources import load_ucr

    x = load_ucr("PickupGestureWiimoteZ").train[:8]
    assert (series_lengths(x) < x.shape[2]).any()
    views = SERIES.views(SERIES.default_views(METHODS["ts2vec"].view_plan(METHODS["ts2vec"].Args()), None), SPEC)
    (centred,) = views(x, torch.Generator().manual_seed(0))
    method = _method("ts2vec", "ts2vec-encoder", {"output_dim": 16, "hidden": 8, "depth": 2})
    for seed in range(3):
        torch.manual_seed(seed)
        out = method([centred])
        out["loss"].backward()
        assert torch.isfinite(out["loss"]) and all(torch.isfinite(p.grad).all() for p in method.backbone.parameters())
        method.zero_grad()


def test_tstcc_context_sees_the_steps_up_to_t_only():
    torch.manual_seed(0)
    method = _method("tstcc", "tstcc-cnn", {"out_channels": 16, "pool": "mean"}).eval()
    seq = torch.randn(5, 12, 16)
    t = 6
    keep = (torch.arange(12) <= t).expand(5, -1)
    masked = method.transformer(seq, keep)
    cut = method.transformer(seq[:, : t + 1], torch.ones(5, t + 1, dtype=torch.bool))
    torch.testing.assert_close(masked, cut)
    later = seq.clone()
    later[:, t + 1 :] = 100.0
    torch.testing.assert_close(method.transformer(later, keep), masked)


def test_tstcc_needs_its_feature_map_and_predicts_fewer_steps_on_short_series():
    with pytest.raises(UsageError, match="tstcc-cnn"):
        _method("tstcc", "ts2vec-encoder", {})
    x = _gunpoint(8, 24)  # 24 steps leave 5 in the feature map: 4 future steps instead of 6
    method = _method("tstcc", "tstcc-cnn", {"out_channels": 16, "pool": "mean"})
    weak, strong = SERIES.views(SERIES.default_views(METHODS["tstcc"].view_plan(None), None), SPEC)(
        x, torch.Generator().manual_seed(0)
    )
    out = method([weak, strong])
    assert torch.isfinite(out["loss"]) and out["features"].shape == (8, 16)


def test_tfc_encoder_is_both_branches_projected_and_the_papers_consistency_runs():
    torch.manual_seed(0)
    x = _gunpoint()
    for consistency in ("code", "paper"):
        method = _method("tfc", "tstcc-cnn", {"out_channels": 16, "pool": "mean"}, consistency=consistency)
        out = method([x, x + 0.1 * torch.randn_like(x)])
        assert torch.isfinite(out["loss"]) and out["features"].shape == (8, 256)
    encoder = method.encoder.eval()
    assert encoder.spec["name"] == "tfc-encoder" and encoder.spec["options"]["inner"] == "tstcc-cnn"
    assert encoder.time is not encoder.frequency
    assert not torch.equal(encoder.time.block1.conv.weight, encoder.frequency.block1.conv.weight)
    _, z_t, _, z_f = encoder.embed(x, torch.fft.fft(x, dim=-1).abs())
    torch.testing.assert_close(encoder(x), torch.cat([z_t, z_f], dim=1))


def test_frameproj_integrated_encoder_and_its_mappers():
    torch.manual_seed(0)
    x = _gunpoint()
    method = _method("frameproj", "resnet1d", {"widths": [8, 16, 128]})
    out = method([x])
    out["loss"].backward()
    encoder = method.encoder
    assert encoder.spec["name"] == "frameproj-encoder" and out["features"].shape == (8, 384)
    assert encoder.map_fourier.conv.weight.grad is not None and method.gabor_encoder.layer1[0].weight.grad is not None
    h = encoder.time.eval()(x)
    torch.testing.assert_close(encoder.eval()(x), torch.cat([encoder.map_fourier(h), h, encoder.map_gabor(h)], dim=1))
    with pytest.raises(UsageError, match="128-d"):
        _method("frameproj", "ts2vec-encoder", {})
