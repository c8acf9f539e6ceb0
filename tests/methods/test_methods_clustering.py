"""DINO, SwAV, MYOW and RotNet: their state updates, schedules and gradient flow, on real tensors,
and each trained for one epoch from the command line on the bundled digits."""

import json

import pytest
import torch
import torch.nn.functional as F

from selfsup.backbones import build_backbone
from selfsup.cli import main
from selfsup.config import build_config
from selfsup.losses import dino_loss
from selfsup.methods import METHODS
from selfsup.methods.myow import mine_neighbours
from selfsup.methods.parts.multicrop import forward_multicrop
from selfsup.methods.parts.sinkhorn import sinkhorn
from selfsup.methods.rotnet import rotations
from selfsup.modalities.image.recipes import multicrop_views, recipe_for

B = 8


def _method(name, steps_per_epoch=3, total_steps=30, **kw):
    torch.manual_seed(0)
    cls = METHODS[name]
    method = cls(build_backbone("resnet-small", {"channels": 1}), cls.Args(**kw))
    method.configure(steps_per_epoch, total_steps)
    return method


def _views(method, n=B):
    configs = recipe_for(method.view_plan(method.args), 8)
    return [torch.randn(n, 1, c.size, c.size) for c in configs]


def _snapshot(module):
    return {k: p.detach().clone() for k, p in module.named_parameters()}


def _changed(before, module):
    return {k for k, p in module.named_parameters() if not torch.equal(before[k], p)}


def _train(method, steps, start=0, lr=0.5):
    """The loop's order of calls (train.py): forward, backward, before_optimizer_step, step, after_step."""
    opt = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=lr)
    views = _views(method)
    for step in range(start, start + steps):
        out = method(views)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        method.before_optimizer_step(step)
        opt.step()
        method.after_step(step + 1, method.total_steps)
    return out


# ------------------------------------------------------------------------------------------ shared


def test_multicrop_views_are_two_asymmetric_globals_then_locals():
    views = multicrop_views(32, 16, 3, (0.4, 1.0), (0.05, 0.4))
    assert [v.size for v in views] == [32, 32, 16, 16, 16]
    assert [v.blur_p for v in views] == [1.0, 0.1, 0.5, 0.5, 0.5]
    assert [v.solarize_p for v in views] == [0.0, 0.2, 0.0, 0.0, 0.0]
    assert views[0].crop_scale == (0.4, 1.0) and views[4].crop_scale == (0.05, 0.4)


def test_forward_multicrop_batches_each_resolution_once_and_keeps_view_order():
    calls = []

    class Probe(torch.nn.Module):
        def forward(self, x):
            calls.append(tuple(x.shape))
            return x.mean(dim=(1, 2, 3))[:, None]

    views = [torch.full((2, 1, 8, 8), float(i)) for i in range(2)] + [
        torch.full((2, 1, 4, 4), float(i)) for i in range(2, 5)
    ]
    out = forward_multicrop(Probe(), views)
    assert calls == [(4, 1, 8, 8), (6, 1, 4, 4)]
    assert out[:, 0].tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]


# -------------------------------------------------------------------------------------------- DINO

DINO_SMALL = dict(out_dim=24, hidden_dim=32, bottleneck_dim=16, n_local=2)


def test_dino_center_moves_with_momentum_towards_the_teacher_batch_mean():
    method = _method("dino", **DINO_SMALL)
    views = _views(method)
    c0 = torch.randn(1, 24)
    method.center.copy_(c0)
    teacher_out = method.teacher(torch.cat(views[:2]))  # train-mode BN: the same as inside forward
    method(views)
    assert torch.allclose(method.center, 0.9 * c0 + 0.1 * teacher_out.mean(dim=0, keepdim=True), atol=1e-6)
    method.eval()
    frozen = method.center.clone()
    method(views)
    assert torch.equal(method.center, frozen)  # evaluation does not touch the centre


def test_dino_loss_uses_the_centre_and_the_scheduled_teacher_temperature():
    method = _method("dino", **DINO_SMALL)
    method.after_step(1, 30)  # warm-up temperature of step 1 of 30 epochs * 3 steps
    views = _views(method)
    c0 = torch.randn(1, 24) * 0.1
    method.center.copy_(c0)
    with torch.no_grad():
        student = method.head(forward_multicrop(method.backbone, views)).chunk(len(views))
        teacher = method.teacher(torch.cat(views[:2])).chunk(2)
        loss = method(views)["loss"]
    expected = dino_loss(student, teacher, c0, 0.1, 0.04 + 0.03 * 1 / 90)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_dino_teacher_gets_no_gradient_and_moves_only_in_after_step():
    method = _method("dino", **DINO_SMALL)
    teacher_before = _snapshot(method.teacher)
    out = method(_views(method))
    out["loss"].backward()
    assert all(p.grad is None and not p.requires_grad for p in method.teacher.parameters())
    assert method.backbone.stem[0].weight.grad is not None
    with torch.no_grad():
        for p in method.parameters():
            if p.requires_grad:
                p.add_(0.1)
    assert not _changed(teacher_before, method.teacher)
    method.after_step(1, 30)
    assert _changed(teacher_before, method.teacher) == set(teacher_before)


def test_dino_teacher_temperature_warms_up_linearly_then_stays():
    method = _method(
        "dino",
        steps_per_epoch=10,
        total_steps=1000,
        warmup_teacher_temp=0.04,
        teacher_temp=0.07,
        warmup_teacher_temp_epochs=30,
        **DINO_SMALL,
    )
    assert method.teacher_temp_now.item() == pytest.approx(0.04)
    assert method.teacher_temp_at(0) == pytest.approx(0.04)
    assert method.teacher_temp_at(150) == pytest.approx(0.055)
    assert method.teacher_temp_at(300) == pytest.approx(0.07)
    assert method.teacher_temp_at(900) == pytest.approx(0.07)
    logged = method.after_step(150, 1000)
    assert logged["teacher_temp"] == pytest.approx(0.055)
    assert method.teacher_temp_now.item() == pytest.approx(0.055)
    # the schedule's position is checkpointed
    other = _method("dino", steps_per_epoch=10, total_steps=1000, **DINO_SMALL)
    other.load_state_dict(method.state_dict())
    assert other.teacher_temp_now.item() == pytest.approx(0.055)


def test_dino_last_layer_is_frozen_for_the_first_epoch_and_the_rest_trains():
    method = _method("dino", steps_per_epoch=2, total_steps=20, **DINO_SMALL)
    last = method.head.last_layer
    assert [n for n, _ in last.named_parameters()] == ["weight_v"]  # norm_last_layer: g fixed at 1
    last_before, head_before, bb_before = _snapshot(last), _snapshot(method.head.mlp), _snapshot(method.backbone)
    _train(method, steps=2)  # the whole first epoch
    assert not _changed(last_before, last)
    assert _changed(head_before, method.head.mlp) == set(head_before)
    assert _changed(bb_before, method.backbone)
    _train(method, steps=1, start=2)
    assert _changed(last_before, last) == {"weight_v"}


def test_dino_exports_the_teacher_backbone_by_default():
    method = _method("dino", **DINO_SMALL)
    assert method.encoder is method.teacher.net[0]
    assert _method("dino", eval_teacher=False, **DINO_SMALL).encoder is not None


def test_dino_refuses_views_that_do_not_match_n_local():
    method = _method("dino", **DINO_SMALL)
    with pytest.raises(ValueError, match="n_local=2"):
        method(_views(method)[:3])


# -------------------------------------------------------------------------------------------- SwAV

SWAV_SMALL = dict(proj_hidden=32, proj_dim=16, n_prototypes=12, n_local=2)


def test_swav_prototypes_are_unit_rows_frozen_for_the_first_epoch_then_trained():
    method = _method("swav", steps_per_epoch=2, total_steps=20, **SWAV_SMALL)
    assert torch.allclose(method.prototypes.weight.norm(dim=1), torch.ones(12))
    protos, proj, bb = _snapshot(method.prototypes), _snapshot(method.projector), _snapshot(method.backbone)
    _train(method, steps=2)
    # unchanged but for the renormalisation after every step (rounding of a unit vector's norm)
    assert torch.allclose(protos["weight"], method.prototypes.weight, atol=1e-6)
    assert _changed(proj, method.projector) == set(proj) and _changed(bb, method.backbone)
    opt = torch.optim.SGD(method.parameters(), lr=5.0)
    method(_views(method))["loss"].backward()
    method.before_optimizer_step(2)
    opt.step()
    assert not torch.allclose(method.prototypes.weight.norm(dim=1), torch.ones(12), atol=1e-3)
    method.after_step(3, 20)
    assert _changed(protos, method.prototypes) == {"weight"}
    assert torch.allclose(method.prototypes.weight.norm(dim=1), torch.ones(12), atol=1e-6)


def test_swav_codes_are_sinkhorn_of_the_global_views_and_the_loss_swaps_them():
    method = _method("swav", **SWAV_SMALL)
    views = _views(method)
    with torch.no_grad():
        z = F.normalize(method.projector(forward_multicrop(method.backbone, views)), dim=1)
        scores = method.prototypes(z).chunk(len(views))
        out = method(views)
    codes = [sinkhorn(scores[i], 0.05, 3) for i in range(2)]
    total = 0.0
    for i in range(2):
        others = [v for v in range(len(views)) if v != i]
        total += sum(-(codes[i] * F.log_softmax(scores[v] / 0.1, dim=1)).sum(1).mean() for v in others) / 3
    assert out["loss"].item() == pytest.approx(total.item() / 2, rel=1e-5)


def test_swav_queue_starts_after_its_epoch_fills_and_then_joins_the_sinkhorn():
    method = _method(
        "swav",
        steps_per_epoch=2,
        total_steps=20,
        queue_size=2 * B,
        queue_start_epoch=1,
        freeze_prototypes_epochs=0,
        **SWAV_SMALL,
    )
    queues = method.queues
    _train(method, steps=2)  # epoch 0: the queue is not started
    assert [int(q.filled) for q in queues] == [0, 0]
    method.eval()
    method(_views(method))  # evaluation never pushes
    method.train()
    assert [int(q.filled) for q in queues] == [0, 0]
    _train(method, steps=1, start=2)
    assert [int(q.filled) for q in queues] == [B, B]
    assert torch.allclose(queues[0].items().norm(dim=1), torch.ones(B))  # normalised projections
    _train(method, steps=1, start=3)
    assert [int(q.filled) for q in queues] == [2 * B, 2 * B]
    # full: the next codes come from the Sinkhorn over queue + batch
    scores = torch.randn(B, 12)
    with torch.no_grad():
        past = method.prototypes(queues[0].items())
    expected = sinkhorn(torch.cat([past, scores]))[-B:]
    got = method.codes(0, scores, F.normalize(torch.randn(B, 16), dim=1))
    assert torch.allclose(got, expected, atol=1e-6)
    assert not torch.allclose(got, sinkhorn(scores), atol=1e-3)
    # the position in the schedule is checkpointed
    other = _method("swav", steps_per_epoch=2, total_steps=20, queue_size=2 * B, **SWAV_SMALL)
    other.load_state_dict(method.state_dict())
    assert other._steps_done == 4 and int(other.queues[1].filled) == 2 * B


# -------------------------------------------------------------------------------------------- MYOW


def test_mine_neighbours_finds_the_true_nearest_other_sample():
    torch.manual_seed(0)
    anchors = torch.randn(10, 6)
    pool = anchors + 0.01 * torch.randn(10, 6)  # the same samples, another view: self is nearest
    got = mine_neighbours(anchors, pool)
    a, p = F.normalize(anchors, dim=1), F.normalize(pool, dim=1)
    for i in range(10):
        best = max((j for j in range(10) if j != i), key=lambda j: float(a[i] @ p[j]))
        assert got[i].item() == best
    assert (got != torch.arange(10)).all()
    assert torch.equal(mine_neighbours(anchors, pool, exclude_self=False), torch.arange(10))
    # k > 1: always one of the k nearest others, never the sample itself
    sims = (a @ p.T).fill_diagonal_(float("-inf"))
    top3 = sims.topk(3, dim=1).indices
    for _ in range(5):
        picked = mine_neighbours(anchors, pool, k=3)
        assert all(picked[i] in top3[i] for i in range(10)) and (picked != torch.arange(10)).all()


MYOW_SMALL = dict(proj_hidden=32, proj_dim=16, pred_hidden=32, mined_hidden=16, mined_dim=8)


def test_myow_weight_is_zero_during_warm_up_then_ramps_linearly():
    method = _method(
        "myow",
        steps_per_epoch=10,
        total_steps=500,
        myow_weight=2.0,
        myow_warmup_epochs=5,
        myow_rampup_epochs=10,
        **MYOW_SMALL,
    )
    assert [method.weight_at(s) for s in (0, 49, 50, 100, 150, 400)] == [0.0, 0.0, 0.0, 1.0, 2.0, 2.0]
    assert method.after_step(100, 500)["myow_weight"] == 1.0 and method.myow_weight_now.item() == 1.0


def test_myow_loss_mixes_augmented_and_mined_terms():
    method = _method("myow", myow_weight=0.5, myow_warmup_epochs=0, myow_rampup_epochs=0, **MYOW_SMALL)
    out = method(_views(method))
    expected = (out["loss_augmented"] + 0.5 * out["loss_mined"]) / 1.5
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert 0 < out["loss_mined"].item() < 8


def test_myow_step_trains_every_online_module_and_not_the_target():
    method = _method("myow", myow_warmup_epochs=0, myow_rampup_epochs=0, **MYOW_SMALL)
    online = {
        n: _snapshot(getattr(method, n)) for n in ("backbone", "projector", "predictor", "projector_m", "predictor_m")
    }
    target = _snapshot(method.target)
    opt = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.1)
    method(_views(method))["loss"].backward()
    assert all(p.grad is None for p in method.target.parameters())
    opt.step()
    for name, before in online.items():
        assert _changed(before, getattr(method, name)), name
    assert not _changed(target, method.target)
    method.after_step(1, 30)
    assert _changed(target, method.target)


# ------------------------------------------------------------------------------------------ RotNet


def test_rotations_are_the_four_counter_clockwise_quarter_turns_with_their_labels():
    x = torch.arange(9.0).reshape(1, 1, 3, 3)
    rotated, labels = rotations(torch.cat([x, x + 10]))
    assert rotated.shape == (8, 1, 3, 3) and labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert rotated[0, 0].tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert rotated[2, 0].tolist() == [[2, 5, 8], [1, 4, 7], [0, 3, 6]]  # 90 degrees
    assert rotated[4, 0].tolist() == [[8, 7, 6], [5, 4, 3], [2, 1, 0]]  # 180
    assert rotated[6, 0].tolist() == [[6, 3, 0], [7, 4, 1], [8, 5, 2]]  # 270
    assert rotated[3, 0, 0, 0].item() == 12.0  # the second image's 90-degree copy
    with pytest.raises(ValueError, match="square"):
        rotations(torch.zeros(1, 1, 3, 4))


def test_rotnet_loss_is_the_rotation_cross_entropy_and_a_step_trains_backbone_and_classifier():
    method = _method("rotnet", head_hidden=0)
    (x,) = _views(method)
    with torch.no_grad():
        rotated, labels = rotations(x)
        logits = method.classifier(method.backbone(rotated))
    nll = [-torch.log_softmax(logits[i], 0)[labels[i]].item() for i in range(len(labels))]
    out = method([x])
    assert out["loss"].item() == pytest.approx(sum(nll) / len(nll), rel=1e-5)
    before = _snapshot(method)
    opt = torch.optim.SGD(method.parameters(), lr=0.1)
    out["loss"].backward()
    opt.step()
    assert _changed(before, method) == set(before)


# ---------------------------------------------------------------------------------- CLI, end to end

FAST_SETS = {
    "dino": ["method_args.out_dim=64", "method_args.hidden_dim=64", "method_args.bottleneck_dim=32"],
    "swav": ["method_args.n_prototypes=20", "method_args.proj_hidden=64"],
    "myow": ["method_args.proj_hidden=64", "method_args.pred_hidden=64", "method_args.mined_hidden=32"],
    "rotnet": [],
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FAST_SETS))
def test_digits_recipe_trains_from_the_command_line(name, tmp_path):
    sets = ["train.batch_size=128", "train.log_every=5"] + FAST_SETS[name]
    argv = ["train", f"{name}-digits", "--epochs", "1", "--out", str(tmp_path / name)]
    for s in sets:
        argv += ["--set", s]
    assert main(argv) == 0
    summary = json.loads((tmp_path / name / "summary.json").read_text())
    assert summary["method"] == name and 0 < summary["knn_top1"] <= 1


@pytest.mark.parametrize("name", sorted(FAST_SETS))
def test_fashion_mnist_recipe_resolves(name):
    cfg = build_config(f"{name}-fashion-mnist")
    assert cfg.method == name and cfg.model.backbone == "resnet18" and cfg.augment.size == 32
    assert cfg.train.batch_size == 512 and cfg.train.epochs == 200


def test_forward_multicrop_keeps_batchnorm_running_statistics_of_the_global_views_only():
    torch.manual_seed(0)
    backbone = build_backbone("resnet-small", {"channels": 1})
    bn = backbone.stem[1]
    globals_ = [torch.randn(4, 1, 8, 8) + 3.0 for _ in range(2)]
    backbone(torch.cat(globals_))  # the running statistics of the global views alone
    expected = bn.running_mean.clone()
    bn.reset_running_stats()
    forward_multicrop(backbone, globals_ + [torch.randn(4, 1, 4, 4) - 3.0 for _ in range(2)])
    assert torch.allclose(bn.running_mean, expected)
    assert bn.momentum == 0.1  # restored
