import math

import pytest
import torch
from torch import nn

from selfsup.optim import LARS, build_optimizer, lr_at, param_groups


def test_lr_warms_up_linearly_then_decays_along_a_cosine():
    peak, total, warm = 2.0, 100, 10
    assert lr_at(0, total, warm, peak) == pytest.approx(0.2)
    assert lr_at(4, total, warm, peak) == pytest.approx(1.0)
    assert lr_at(9, total, warm, peak) == pytest.approx(2.0)
    assert lr_at(10, total, warm, peak) == pytest.approx(2.0)
    assert lr_at(55, total, warm, peak) == pytest.approx(1.0)  # half-way through the decay
    assert lr_at(100, total, warm, peak) == pytest.approx(0.0)
    assert lr_at(100, total, warm, peak, final_ratio=0.1) == pytest.approx(0.2)
    mid = 10 + 90 // 3
    assert lr_at(mid, total, warm, peak) == pytest.approx(peak * (1 + math.cos(math.pi * 30 / 90)) / 2)


def test_biases_and_norm_parameters_are_excluded_from_weight_decay():
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    decay, plain = param_groups(model, 0.1)
    assert {tuple(p.shape) for p in decay["params"]} == {(8, 4), (2, 8)}
    assert {tuple(p.shape) for p in plain["params"]} == {(8,), (8,), (8,), (2,)}
    assert plain["weight_decay"] == 0.0 and plain["lars"] is False


def test_lars_update_uses_the_trust_ratio_of_you_et_al():
    w = nn.Parameter(torch.tensor([[3.0, 4.0]]))  # ||w|| = 5
    w.grad = torch.tensor([[0.0, 1.0]])  # ||g|| = 1
    opt = LARS([{"params": [w], "weight_decay": 0.1, "lars": True}], lr=0.5, momentum=0.9, eta=0.02, trust="lars")
    opt.step()
    trust = 0.02 * 5 / (1 + 0.1 * 5)
    update = (torch.tensor([[0.0, 1.0]]) + 0.1 * torch.tensor([[3.0, 4.0]])) * trust
    assert torch.allclose(w.detach(), torch.tensor([[3.0, 4.0]]) - 0.5 * update)


def test_lars_gives_each_weight_its_own_trust_ratio_and_one_where_a_norm_is_zero():
    # Several weights of different sizes, one all-zero weight and one zero gradient, over three
    # steps with momentum, against Algorithm 1 of You et al. written out per weight.
    torch.manual_seed(0)
    shapes = [(4, 3), (5,), (2, 2, 3), (3, 3)]
    params = [nn.Parameter(torch.randn(s)) for s in shapes]
    with torch.no_grad():
        params[3].zero_()
    ref = [p.detach().clone() for p in params]
    bufs = [torch.zeros_like(p) for p in ref]
    lr, wd, eta, mom = 0.3, 0.05, 0.02, 0.9
    opt = LARS([{"params": params, "weight_decay": wd, "lars": True}], lr=lr, momentum=mom, eta=eta, trust="lars")
    for _step in range(3):
        grads = [torch.randn(s) for s in shapes]
        grads[1] = torch.zeros(shapes[1])  # ||g|| = 0 -> trust ratio 1
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt.step()
        for i, (w, g) in enumerate(zip(ref, grads)):
            w_norm, g_norm = w.norm().item(), g.norm().item()
            trust = eta * w_norm / (g_norm + wd * w_norm) if w_norm > 0 and g_norm > 0 else 1.0
            bufs[i] = mom * bufs[i] + trust * (g + wd * w)
            ref[i] = w - lr * bufs[i]
    for p, w in zip(params, ref):
        assert torch.allclose(p.detach(), w, atol=1e-6)


def test_lars_leaves_excluded_groups_as_plain_sgd_with_momentum():
    b = nn.Parameter(torch.tensor([1.0, 2.0]))
    ref = nn.Parameter(b.detach().clone())
    opt = LARS([{"params": [b], "weight_decay": 0.0, "lars": False}], lr=0.1, momentum=0.9)
    sgd = torch.optim.SGD([ref], lr=0.1, momentum=0.9)
    for g in ([0.5, -1.0], [0.2, 0.3], [1.0, 1.0]):
        b.grad = torch.tensor(g)
        ref.grad = torch.tensor(g)
        opt.step()
        sgd.step()
    assert torch.allclose(b, ref)


def test_unknown_optimizer_names_the_choices():
    from selfsup.errors import UsageError

    with pytest.raises(UsageError, match="lars"):
        build_optimizer("larss", nn.Linear(2, 2), 0.1, 0.0)


def test_weight_decay_schedule_is_a_cosine_from_base_to_final_on_the_decayed_group_only():
    from selfsup.optim import set_weight_decay, wd_at

    assert wd_at(0, 101, 0.04, 0.4) == pytest.approx(0.04)
    assert wd_at(50, 101, 0.04, 0.4) == pytest.approx(0.22)
    assert wd_at(100, 101, 0.04, 0.4) == pytest.approx(0.4)
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    opt = build_optimizer("adamw", model, 1e-3, 0.04, betas=(0.9, 0.95))
    set_weight_decay(opt, 0.3)
    decays = sorted(g["weight_decay"] for g in opt.param_groups)
    assert decays == [0.0, 0.3]  # biases and norms are never decayed
    assert all(g["betas"] == (0.9, 0.95) for g in opt.param_groups)


@pytest.mark.slow
def test_gradient_clipping_and_the_weight_decay_schedule_in_the_loop(tmp_path):
    import json

    import selfsup
    from selfsup.config import build_config
    from selfsup.training import build, update_step

    sets = [
        "method_args.proj_hidden=64",
        "method_args.pred_hidden=64",
        "method_args.proj_dim=32",
        "optim.clip_grad=0.01",
        "data.subset=256",
        "train.batch_size=64",
    ]
    s = build(build_config("byol-digits", sets, epochs=1))
    views = s.views(next(s.loader.batches(0)), torch.Generator().manual_seed(0))
    update_step(s, views, 0)
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in s.method.parameters() if p.grad is not None]))
    assert norm.item() == pytest.approx(0.01, rel=1e-4)  # far above 0.01 unclipped
    # The schedule reaches the loop: logged per step, rising from weight_decay to final_weight_decay.
    cfg = build_config(
        "byol-digits",
        sets
        + ["optim.weight_decay=0.04", "optim.final_weight_decay=0.4", "train.log_every=1", "eval.diagnose_every=0"],
        epochs=2,
    )
    selfsup.train(cfg, out=tmp_path / "run")
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    decays = [r["weight_decay"] for r in records if r["event"] == "step"]
    assert decays[0] == pytest.approx(0.04) and decays[-1] == pytest.approx(0.4) and decays == sorted(decays)
