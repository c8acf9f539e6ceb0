"""The review's findings (issue 17, items 1-7), each pinned by a test that would have caught it:
the optimiser, gradient clipping, and the heads and teachers of the methods against the papers and
the authors' code (docs/faithfulness.md)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from selfsup.backbones import build_backbone
from selfsup.config import build_config, load_run_config
from selfsup.methods import METHODS
from selfsup.methods.parts.heads import ScaleOnlyBatchNorm1d
from selfsup.optim import LARS, build_optimizer, clip_gradients, infinite_lr_at, set_lr
from selfsup.training import build

SMALL = {"channels": 1, "size": 8}


# ------------------------------------------------------------------------------- 1. LARS
def _reference_lars(params, grads, bufs, lr, wd, eta, momentum, trust, clip_lr):
    """You et al. 2017, Algorithm 1, one weight at a time (plain Python floats for the ratio)."""
    out = []
    for w, g, v in zip(params, grads, bufs):
        d = g + wd * w
        w_norm = w.norm().item()
        denom = d.norm().item() if trust == "update" else g.norm().item() + wd * w_norm
        ok = w_norm > 0 and (d.norm().item() > 0 if trust == "update" else g.norm().item() > 0)
        r = eta * w_norm / denom if ok else 1.0
        if clip_lr and ok:
            r = min(r / lr, 1.0)
        v = momentum * v + r * d
        out.append((w - lr * v, v))
    return out


@pytest.mark.parametrize("trust, clip_lr", [("update", False), ("lars", False), ("lars", True), ("update", True)])
def test_lars_matches_algorithm_1_written_out_per_weight(trust, clip_lr):
    torch.manual_seed(0)
    shapes = [(16, 3, 3, 3), (32, 16), (7, 5)]
    params = [nn.Parameter(torch.randn(s, dtype=torch.float64)) for s in shapes]
    lr, wd, eta, momentum = 0.6, 1e-4, 0.02, 0.9
    opt = LARS(
        [{"params": params, "weight_decay": wd, "lars": True}],
        lr=lr,
        momentum=momentum,
        eta=eta,
        trust=trust,
        clip_lr=clip_lr,
    )
    state = [(p.detach().clone(), torch.zeros_like(p)) for p in params]
    for _ in range(3):
        grads = [torch.randn(s, dtype=torch.float64) for s in shapes]
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt.step()
        state = _reference_lars(
            [w for w, _ in state], grads, [v for _, v in state], lr, wd, eta, momentum, trust, clip_lr
        )
        for p, (w, _) in zip(params, state):
            torch.testing.assert_close(p.detach(), w, rtol=1e-12, atol=1e-12)


def test_the_two_trust_forms_differ_and_the_docstring_names_both():
    assert "||g + wd * w||" in LARS.__doc__ and "||g|| + wd * ||w||" in LARS.__doc__
    w, g = torch.ones(4, dtype=torch.float64), torch.tensor([0.3, -0.1, 0.2, 0.5], dtype=torch.float64)
    steps = {}
    for trust in ("update", "lars"):
        p = nn.Parameter(w.clone())
        p.grad = g.clone()
        LARS([{"params": [p], "weight_decay": 0.5, "lars": True}], lr=1.0, momentum=0.0, eta=0.1, trust=trust).step()
        steps[trust] = (w - p.detach()).norm().item()
    assert steps["update"] != pytest.approx(steps["lars"])


def test_lars_defaults_are_the_papers_and_old_run_configs_keep_their_form():
    cfg = build_config(None, method="byol", data="npz:/nonexistent.npz")
    assert (cfg.optim.lars_eta, cfg.optim.lars_trust, cfg.optim.lars_clip_lr) == (0.001, "update", False)
    old = load_run_config("tests/fixtures/old-runs-fef551e/stopped/config.yaml")
    assert (old.optim.lars_eta, old.optim.lars_trust, old.config_version) == (0.02, "lars", 1)


# ------------------------------------------------------------------------- 2. clipping
def test_per_parameter_clipping_leaves_small_gradients_untouched():
    small, big = nn.Parameter(torch.zeros(10)), nn.Parameter(torch.zeros(10))
    small.grad, big.grad = torch.full((10,), 0.1), torch.full((10,), 10.0)  # norms 0.32 and 31.6
    before = small.grad.clone()
    clip_gradients([small, big], 3.0, "per_param")
    assert torch.equal(small.grad, before)  # DINO's rule: under the bound, untouched
    assert big.grad.norm().item() == pytest.approx(3.0, rel=1e-5)
    small.grad, big.grad = before.clone(), torch.full((10,), 10.0)
    clip_gradients([small, big], 3.0, "global")  # the global norm scales every gradient
    assert small.grad.norm().item() < before.norm().item()


def test_dino_sit_and_gmml_clip_each_parameter_at_3_as_their_code():
    for recipe in ("dino-digits", "sit-digits", "gmml-digits", "dino-vit-fashion-mnist"):
        o = build_config(recipe).optim
        assert (o.clip_grad, o.clip_grad_mode) == (3.0, "per_param"), recipe


# ------------------------------------------------------------------------ 3. MoCo v3
def test_mocov3_on_a_resnet_has_the_authors_resnet_head():
    cls = METHODS["mocov3"]
    args = cls.Args(proj_hidden=32, proj_dim=16, pred_hidden=32)
    assert args.temperature == 1.0 and args.proj_layers == 2
    m = cls(build_backbone("resnet-small", SMALL), args)
    linears = [x for x in m.projector if isinstance(x, nn.Linear)]
    assert len(linears) == 2 and isinstance(m.projector[-1], nn.BatchNorm1d) and not m.projector[-1].affine
    last = [x for x in m.predictor if isinstance(x, nn.Linear)][-1]
    assert last.bias is None  # the authors' predictor: no bias


# ---------------------------------------------------------------------------- 4. MYOW
def test_myow_averages_the_two_view_orders_as_the_authors_trainer():
    torch.manual_seed(0)
    cls = METHODS["myow"]
    small = dict(
        proj_hidden=32,
        proj_dim=16,
        pred_hidden=32,
        mined_hidden=16,
        mined_dim=8,
        myow_warmup_epochs=0,
        myow_rampup_epochs=0,
    )
    views = [torch.rand(8, 1, 8, 8), torch.rand(8, 1, 8, 8)]
    out = {}
    for average in (True, False):
        torch.manual_seed(0)
        m = cls(build_backbone("resnet-small", SMALL), cls.Args(**small, average_directions=average))
        m.configure(4, 8)
        out[average] = m(views)
    w = 1.0  # no warm-up or ramp-up: the full weight from step 0
    aug, mined = out[False]["loss_augmented"], out[False]["loss_mined"]  # the sums over both orders
    expected = (aug / 2 + w * mined / 2) / (1 + w)
    torch.testing.assert_close(out[True]["loss"].detach(), expected)
    torch.testing.assert_close(out[False]["loss"].detach(), 2 * expected)


# --------------------------------------------------------------- 5. teachers' BatchNorm
def test_a_teacher_keeps_its_own_batchnorm_statistics():
    torch.manual_seed(0)
    cls = METHODS["dino"]
    args = cls.Args(out_dim=64, hidden_dim=32, bottleneck_dim=16, n_local=2)
    m = cls(build_backbone("resnet-small", SMALL), args)
    m.configure(4, 8)
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.1)
    views = [torch.rand(8, 1, 8, 8), torch.rand(8, 1, 8, 8)] + [torch.rand(8, 1, 4, 4) for _ in range(2)]
    teacher_stats = []
    for step in range(3):
        out = m(views)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        m.after_step(step + 1, 8)
    bn_t = [x for x in m.teacher.net[0].modules() if isinstance(x, nn.BatchNorm2d)][0]
    bn_s = [x for x in m.backbone.modules() if isinstance(x, nn.BatchNorm2d)][0]
    assert not torch.equal(bn_t.running_mean, bn_s.running_mean)  # not a copy of the student's
    teacher_stats.append(bn_t.running_mean.clone())
    # They are what the teacher's own forward passes made: replaying one moves them the same way.
    x = torch.cat(views[:2])
    with torch.no_grad():
        expected = (1 - bn_t.momentum) * bn_t.running_mean + bn_t.momentum * m.teacher.net[0].stem[0](x).mean((0, 2, 3))
        m.teacher.net[0](x)
    torch.testing.assert_close(bn_t.running_mean, expected, rtol=1e-5, atol=1e-6)
    assert m.encoder is m.teacher.net[0]  # eval_teacher: what is exported is the teacher, with its own statistics


# --------------------------------------------------------------- 6. and 7. the rest
def test_dino_recipes_say_the_head_batchnorm_is_their_own_choice():
    from importlib import resources

    for name in ("dino-digits", "dino-fashion-mnist"):
        text = (resources.files("selfsup") / "recipes" / f"{name}.yaml").read_text()
        assert "authors' ResNet setting" not in text and "use_bn_in_head off" in text


def test_simclr_projector_ends_in_a_scale_only_batchnorm_as_the_authors_code():
    cls = METHODS["simclr"]
    m = cls(build_backbone("resnet-small", SMALL), cls.Args(proj_hidden=32, proj_dim=16))
    assert isinstance(m.projector[-1], ScaleOnlyBatchNorm1d) and not m.projector[-1].bias.requires_grad
    old = cls(build_backbone("resnet-small", SMALL), cls.Args(proj_hidden=32, proj_dim=16, proj_last_bn=False))
    assert isinstance(old.projector[-1], nn.Linear)


def test_barlow_twins_trains_biases_and_norms_at_the_authors_smaller_rate():
    s = build(build_config("barlowtwins-digits", ["data.subset=256", "train.batch_size=64"], epochs=1))
    set_lr(s.optimizer, 0.2, 0.2)
    rates = sorted({g["lr"] for g in s.optimizer.param_groups})
    assert rates == pytest.approx([0.2 * 0.024, 0.2])


def test_simsiam_keeps_the_predictor_at_the_peak_rate():
    s = build(build_config("simsiam-digits", ["data.subset=256", "train.batch_size=64"], epochs=1))
    predictor = {id(p) for p in s.method.predictor.parameters()}
    set_lr(s.optimizer, 0.01, peak=0.5)
    for g in s.optimizer.param_groups:
        fixed = all(id(p) in predictor for p in g["params"])
        assert g["lr"] == (0.5 if fixed else 0.01) * g.get("lr_scale", 1.0)
    assert any(g["fixed"] for g in s.optimizer.param_groups)


def test_swav_puts_biases_and_norms_under_lars_and_weight_decay_as_its_code():
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    groups = build_optimizer("lars", model, 0.1, 1e-6, exclude_bias_norm=False).param_groups
    assert len(groups[0]["params"]) == 4 and groups[0]["lars"] and groups[1]["params"] == []
    assert build_config("swav-digits").optim.exclude_bias_norm is False


def test_the_infinite_schedule_has_its_four_phases():
    lr = [infinite_lr_at(s, 100, 10, 1.0, 20, 0.25, 20, 0.01) for s in range(100)]
    assert lr[0] == pytest.approx(0.1) and lr[9] == pytest.approx(1.0)  # warm-up
    assert lr[10] == pytest.approx(1.0) and lr[29] < 0.26 and all(a >= b for a, b in zip(lr[10:30], lr[11:31]))
    assert lr[30] == lr[79] == pytest.approx(0.25)  # constant
    assert lr[99] == pytest.approx(0.25 * (0.01 / 0.25) ** (19 / 20)) and math.isclose(lr[80], 0.25)  # anneal
