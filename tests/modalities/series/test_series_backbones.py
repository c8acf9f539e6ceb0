"""The series encoders: shapes, and padding, crops and masked timestamps that must not change what they should not."""

from __future__ import annotations

import torch
from _series_archives import archive

from selfsup.backbones import build_backbone, rebuild
from selfsup.backbones.series import (
    FCN,
    FourierEncoder,
    MaskedBatchNorm1d,
    ResNet1D,
    SpectrogramEncoder,
    TS2VecEncoder,
    TSTCCEncoder,
)
from selfsup.modalities.series import ops

NAN = float("nan")


def _pad(x: torch.Tensor, left: int, right: int) -> torch.Tensor:
    return torch.nn.functional.pad(x, (left, right), value=NAN)


def test_ts2vec_encoder_shapes_and_architecture():
    x = archive("GunPoint").train[:4]
    encoder = TS2VecEncoder(1).eval()
    assert encoder.feature_dim == 320 and len(encoder.blocks) == 11  # 10 hidden blocks + output block
    assert [b.conv1.conv.dilation[0] for b in encoder.blocks] == [2**i for i in range(11)]
    per_step = encoder.encode(x)
    assert per_step.shape == (4, 150, 320)
    torch.testing.assert_close(encoder(x), per_step.amax(dim=1))


def test_ts2vec_output_ignores_padding_and_a_crop_in_nan_is_the_crop_alone():
    torch.manual_seed(0)
    x = archive("GunPoint").train[:3, :, :60]
    encoder = TS2VecEncoder(1, output_dim=16, hidden=8, depth=3).eval()
    alone = encoder.encode(x)
    embedded = encoder.encode(_pad(x, 7, 20))
    torch.testing.assert_close(embedded[:, 7:67], alone, rtol=1e-5, atol=1e-5)
    assert (embedded[:, :7] == 0).all() and (embedded[:, 67:] == 0).all()
    torch.testing.assert_close(encoder(_pad(x, 7, 20)), encoder(x), rtol=1e-5, atol=1e-5)


def test_ts2vec_masked_timestamps_are_not_read():
    x = archive("GunPoint").train[:6]
    encoder = TS2VecEncoder(1, output_dim=32, hidden=16, depth=3).eval()
    mask = ops.timestamp_mask(6, x.shape[2], torch.Generator().manual_seed(0))
    masked = encoder.encode(x, mask=mask)
    changed = x.clone()
    changed[~mask[:, None, :]] = 7.0
    torch.testing.assert_close(encoder.encode(changed, mask=mask), masked)
    kept = x.clone()
    kept[mask[:, None, :]] += 1.0
    assert not torch.allclose(encoder.encode(kept, mask=mask), masked)


def test_ts2vec_encoder_draws_no_timestamp_mask_in_any_mode():
    # The mask is TS2Vec's own augmentation, drawn by the TS2Vec method; SimCLR and the other generic
    # methods train through the encoder too, and their views must be only the recipe's.
    x = archive("GunPoint").train[:4]
    encoder = TS2VecEncoder(1, output_dim=16, hidden=8, depth=2, dropout=0.0)
    evaluated, per_step = encoder.eval()(x), encoder.encode(x)
    encoder.train()
    torch.testing.assert_close(encoder(x), evaluated)
    torch.testing.assert_close(encoder.encode(x), per_step)
    given = torch.rand(4, x.shape[-1], generator=torch.Generator().manual_seed(3)) > 0.5
    assert not torch.allclose(encoder(x, mask=given), evaluated)


def test_masked_batchnorm_is_batchnorm_on_the_masked_positions():
    torch.manual_seed(0)
    x = torch.randn(4, 3, 10)
    plain, masked = torch.nn.BatchNorm1d(3).train(), MaskedBatchNorm1d(3).train()
    torch.testing.assert_close(masked(x, torch.ones(4, 1, 10)), plain(x))
    torch.testing.assert_close(masked.running_var, plain.running_var)
    garbage = torch.cat([x, 1e3 * torch.randn(4, 3, 5)], dim=2)
    inside = (torch.arange(15) < 10).float()[None, None, :].expand(4, 1, 15)
    fresh, reference = MaskedBatchNorm1d(3).train(), torch.nn.BatchNorm1d(3).train()
    torch.testing.assert_close(fresh(garbage, inside)[..., :10], reference(x))
    torch.testing.assert_close(fresh.running_mean, reference.running_mean)
    torch.testing.assert_close(fresh.running_var, reference.running_var)
    torch.testing.assert_close(fresh.eval()(x, inside[..., :10]), reference.eval()(x))


def test_fcn_resnet_and_tstcc_ignore_the_padding_in_training_and_evaluation():
    x = archive("PickupGestureWiimoteZ").train[:5]
    assert (ops.series_lengths(x) < x.shape[2]).any()
    longer = _pad(x, 0, 40)
    for make in (lambda: FCN(1, (8, 16, 8)), lambda: ResNet1D(1, (8, 16, 8))):
        torch.manual_seed(0)
        net = make().train()
        out = net(x)
        torch.manual_seed(0)
        again = make().train()
        torch.testing.assert_close(again(longer), out, rtol=1e-4, atol=1e-5)  # batch statistics too
        assert net.encode(x).shape == (5, x.shape[2], net.feature_dim)
        torch.testing.assert_close(net.eval()(longer), net(x), rtol=1e-4, atol=1e-5)
    torch.manual_seed(0)
    tstcc = TSTCCEncoder(1, out_channels=8, pool="mean", dropout=0.0).train()
    h, n = tstcc.feature_map(x)
    h2, n2 = tstcc.feature_map(longer)
    assert torch.equal(n, n2) and (n < h.shape[-1]).any()
    torch.testing.assert_close(h2[..., : h.shape[-1]], h, rtol=1e-4, atol=1e-5)


def test_tstcc_encoder_matches_its_configs_feature_length():
    assert TSTCCEncoder.output_length(128) == 18  # HAR config
    assert TSTCCEncoder.output_length(178) == 24  # Epilepsy config
    assert TSTCCEncoder.output_length(3000, kernel_size=25, stride=3) == 127  # sleepEDF config
    x = archive("GunPoint").train[:3]
    net = TSTCCEncoder(1, pool="flatten", length=x.shape[2]).eval()
    h, n = net.feature_map(x)
    assert h.shape == (3, 128, net.features_len) and (n == net.features_len).all()
    assert net(x).shape == (3, net.feature_dim) and TSTCCEncoder(1).eval()(x).shape == (3, 128)


def test_frame_projection_encoders_on_real_projections():
    x = archive("GunPoint").train[:2]
    scalogram = ops.gabor_scalogram(x)
    spectro = SpectrogramEncoder(1).eval()
    assert spectro(scalogram).shape == (2, spectro.feature_dim) and torch.isfinite(spectro(scalogram)).all()
    fourier = FourierEncoder(1).eval()
    assert fourier(ops.fourier_projection(x)).shape == (2, 128)


def test_integrated_encoders_rebuild_from_their_spec():
    x = archive("GunPoint").train[:3]
    spec = {"channels": 1, "length": 150}
    for name, options in (
        ("tfc-encoder", {"inner": "tstcc-cnn", "inner_options": {"out_channels": 8, "pool": "mean"}}),
        ("frameproj-encoder", {"inner": "resnet1d", "inner_options": {"widths": [8, 8, 16]}}),
    ):
        encoder = build_backbone(name, spec, options).eval()
        again = rebuild(encoder.spec, spec).eval()
        again.load_state_dict(encoder.state_dict())
        torch.testing.assert_close(again(x), encoder(x))
        assert encoder(x).shape == (3, encoder.feature_dim)
