"""Every registered method keeps the contract the training loop relies on, on every modality it
declares it fits: one fast, single-process step each, so a broken method is a named failing test."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from selfsup.backbones import build_backbone
from selfsup.methods import METHODS, fits
from selfsup.modalities import MODALITIES
from selfsup.modalities.base import VIEW_KINDS, ViewPlan
from selfsup.modalities.image.recipes import recipe_for

# Narrow heads so one step takes milliseconds; every other argument keeps its default.
SMALL = {
    "proj_hidden": 32,
    "proj_dim": 16,
    "pred_hidden": 32,
    "mined_hidden": 16,
    "mined_dim": 8,
    "out_dim": 64,
    "hidden_dim": 32,
    "bottleneck_dim": 16,
    "n_prototypes": 16,
    "queue_size": 64,
    "decoder_dim": 32,
    "decoder_depth": 1,
    "decoder_heads": 2,
    "pred_depth": 1,
    "pred_dim": 24,
    "n_local": 2,
    "head_hidden": 16,
}
B = 8  # samples per step


def _args(cls):
    names = {f.name for f in dataclasses.fields(cls.Args)}
    return cls.Args(**{k: v for k, v in SMALL.items() if k in names})


def _image_case(cls):
    """A backbone and one step's views for an image method: a small ResNet, or a small ViT for the
    methods that need one."""
    spec = {"channels": 1, "size": 8}
    vit = cls.name in ("mae", "mp3", "gmml", "sit", "ijepa")
    options = {"patch_size": 2, "pool": "mean" if cls.name == "mp3" else "cls"} if vit else {}
    backbone = build_backbone("vit-tiny" if vit else "resnet-small", spec, options)
    if vit:  # two blocks instead of twelve: the contract, not the capacity, is under test
        backbone.blocks = backbone.blocks[:2]
        backbone.depth = 2
    args = _args(cls)
    views = [torch.rand(B, 1, v.size, v.size) for v in recipe_for(cls.view_plan(args), 8)]
    return backbone, args, views


def _table_case(cls):
    """A backbone and one step's views for a table method: the first rows of scikit-learn's wine
    table (bundled with scikit-learn, always there), a small MLP, or a small FT-Transformer with a
    [REG] token for T-JEPA."""
    from selfsup.modalities.table import MODALITY, sources

    data = sources.load_named("wine").to_dataset()
    spec = MODALITY.input_spec(data)
    if cls.name == "tjepa":
        options = {"d_token": 16, "depth": 1, "heads": 2, "n_reg": 1, "cls_token": False, "pool": "flatten"}
        backbone = build_backbone("ft-transformer", spec, options)
    else:
        backbone = build_backbone("mlp", spec, {"hidden": 32, "depth": 2})
    args = _args(cls)
    maker = MODALITY.views(MODALITY.default_views(cls.view_plan(args), None), spec, data)
    return backbone, args, maker(data.train[:B], torch.Generator().manual_seed(0))


# The series backbone each method is checked with: small, and of the kind the method needs.
SERIES_BACKBONES = {
    "tstcc": ("tstcc-cnn", {"out_channels": 16, "pool": "mean"}),
    "tfc": ("tstcc-cnn", {"out_channels": 16, "pool": "mean"}),
    "frameproj": ("resnet1d", {"widths": [8, 16, 128]}),
}


def _series_case(cls):
    """A backbone and one step's views for a series method: the first 64 steps of 8 GunPoint series
    (the real archive, from the aeon wheel), the method's own views from the series modality."""
    import importlib.util
    import os

    if importlib.util.find_spec("aeon") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("aeon is not installed: pip install --no-deps aeon==1.6.0 (docs/data/series.md)")
        pytest.skip("aeon (the GunPoint archive) is not installed")
    from selfsup.modalities.series.sources import load_ucr

    x = load_ucr("GunPoint").train[:B, :, :64]
    spec = {"channels": 1, "length": 64, "equal_length": True, "min_length": 64}
    name, options = SERIES_BACKBONES.get(cls.name, ("ts2vec-encoder", {"output_dim": 32, "hidden": 16, "depth": 2}))
    backbone = build_backbone(name, spec, options)
    args = _args(cls)
    modality = MODALITIES["series"]
    views = modality.views(modality.default_views(cls.view_plan(args), None), spec)(x, torch.Generator().manual_seed(0))
    return backbone, args, views


# (new _<modality>_case builders go above this line)
CASES = [
    (name, modality) for name, cls in METHODS.items() for modality in MODALITIES if fits(cls, MODALITIES[modality])
]
# One builder per modality, found by name (_<modality>_case): a modality's tests add theirs here.
CASE_BUILDERS = {
    name[1:-5]: fn for name, fn in dict(globals()).items() if name.startswith("_") and name.endswith("_case")
}


def test_every_method_fits_some_modality_and_every_modality_is_covered():
    assert {name for name, _ in CASES} == set(METHODS)
    assert {modality for _, modality in CASES} <= set(CASE_BUILDERS)


@pytest.mark.parametrize("name, modality", CASES)
def test_one_step_keeps_the_contract(name, modality):
    torch.manual_seed(0)
    cls = METHODS[name]
    backbone, args, views = CASE_BUILDERS[modality](cls)
    plan = cls.view_plan(args)
    assert isinstance(plan, ViewPlan) and plan.kind in VIEW_KINDS and plan.count == len(views)
    method = cls(backbone, args)
    method.configure(steps_per_epoch=4, total_steps=8)
    method.train()
    trainable = [p for p in method.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in trainable]
    frozen = {k: v.detach().clone() for k, v in method.named_parameters() if not v.requires_grad}
    optimizer = torch.optim.SGD(trainable, lr=0.1)

    out = method(views)
    loss = out["loss"]
    assert loss.ndim == 0 and torch.isfinite(loss), out
    features = out.get("features")
    if features is not None:  # the first view's encoder output, for the online probes
        assert features.shape == (B, method.encoder.feature_dim) and not features.requires_grad
    for key, value in out.items():
        if key not in ("loss", "features"):
            assert isinstance(value, (float, int)) or value.ndim == 0, key
    optimizer.zero_grad()
    loss.backward()
    method.before_optimizer_step(0)
    optimizer.step()
    logs = method.after_step(1, 8)
    assert all(isinstance(v, (float, int)) for v in logs.values()), logs

    assert any(not torch.equal(a, p) for a, p in zip(before, trainable)), "the step changed no parameter"
    for teacher, _online in method.momentum_pairs():  # teachers follow by EMA, never by gradients
        assert all(not p.requires_grad and p.grad is None for p in teacher.parameters())
        changed = [k for k, v in method.named_parameters() if k in frozen and not torch.equal(frozen[k], v)]
        assert changed, f"{teacher.log_name}: the EMA moved no teacher weight"
        assert teacher.log_name in logs
    # Checkpoints: the whole state round-trips through state_dict into a fresh method.
    again = cls(CASE_BUILDERS[modality](cls)[0], args)
    again.configure(steps_per_epoch=4, total_steps=8)
    again.load_state_dict(method.state_dict())
    for (k, a), b in zip(method.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b, k
    assert method.encoder is not None and getattr(method.encoder, "feature_dim", 0) > 0
