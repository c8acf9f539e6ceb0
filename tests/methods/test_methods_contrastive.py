"""SimCLR, MoCo v2, MoCo v3, Barlow Twins, VICReg, SimSiam and NNCLR: what one optimisation step
trains (and what it must not), the queues and support sets, checkpoints, and a CLI run each."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from selfsup import losses
from selfsup.backbones import build_backbone
from selfsup.cli import main
from selfsup.methods import METHODS
from selfsup.methods.parts.heads import ScaleOnlyBatchNorm1d

SMALL = {
    "simclr": dict(proj_hidden=32, proj_dim=16),
    "mocov2": dict(proj_hidden=32, proj_dim=16, queue_size=32),
    "mocov3": dict(proj_hidden=32, proj_dim=16, pred_hidden=32),
    "barlowtwins": dict(proj_hidden=32, proj_dim=32),
    "vicreg": dict(proj_hidden=32, proj_dim=32),
    "simsiam": dict(proj_hidden=32, proj_dim=32, pred_hidden=8),
    "nnclr": dict(proj_hidden=32, proj_dim=16, pred_hidden=32, queue_size=32),
}
# Trained by the optimiser / never trained (momentum encoders), per method.
TRAINED = {
    "simclr": ["backbone", "projector"],
    "mocov2": ["backbone", "projector"],
    "mocov3": ["backbone", "projector", "predictor"],
    "barlowtwins": ["backbone", "projector"],
    "vicreg": ["backbone", "projector"],
    "simsiam": ["backbone", "projector", "predictor"],
    "nnclr": ["backbone", "projector", "predictor"],
}
MOMENTUM = {"mocov2": "key_encoder", "mocov3": "momentum_encoder"}
BUFFERS = {"mocov2": "queue.rows", "nnclr": "support.rows"}
N = 8


def build(name, **kw):
    cls = METHODS[name]
    return cls(build_backbone("resnet-small", {"channels": 1}), cls.Args(**{**SMALL[name], **kw}))


def views(seed=0, n=N):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, 1, 8, 8, generator=g), torch.randn(n, 1, 8, 8, generator=g)]


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _changed(before, module):
    after = module.state_dict()
    return [k for k in before if not torch.equal(before[k], after[k])]


@pytest.mark.parametrize("name", sorted(SMALL))
def test_one_step_trains_the_online_modules_and_only_them(name):
    torch.manual_seed(0)
    method = build(name)
    method.configure(steps_per_epoch=5, total_steps=10)
    trainable = [p for p in method.parameters() if p.requires_grad]
    opt = torch.optim.SGD(trainable, lr=0.1)
    frozen = [p for p in method.parameters() if not p.requires_grad]
    # Frozen: a teacher's weights, and the shift of an output BatchNorm that has none (SimCLR's).
    no_shift = {id(m.bias) for m in method.modules() if isinstance(m, ScaleOnlyBatchNorm1d)}
    assert (len([p for p in frozen if id(p) not in no_shift]) > 0) == (name in MOMENTUM)
    before = {part: _snapshot(getattr(method, part)) for part in TRAINED[name]}
    teacher_before = _snapshot(getattr(method, MOMENTUM[name]).net) if name in MOMENTUM else None

    out = method(views())
    loss = out["loss"]
    assert loss.ndim == 0 and loss.dtype == torch.float32 and math.isfinite(loss.item())
    loss.backward()
    assert all(p.grad is None for p in frozen)
    assert all(p.grad is not None for p in trainable)
    opt.step()
    for part in TRAINED[name]:
        weights = [k for k in before[part] if "running" not in k and "num_batches" not in k]
        assert set(weights) & set(_changed(before[part], getattr(method, part))), f"{part} did not train"
    if name in MOMENTUM:
        teacher = getattr(method, MOMENTUM[name]).net
        weights = [k for k, _ in teacher.named_parameters()]
        assert not set(weights) & set(_changed(teacher_before, teacher)), "the optimiser moved the teacher"
        logged = method.after_step(1, 10)
        assert set(weights) <= set(_changed(teacher_before, teacher)), "after_step did not move the teacher"
        assert logged
    else:
        method.after_step(1, 10)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_state_dict_holds_the_queue_and_the_momentum_encoder_once(name):
    keys = build(name).state_dict().keys()
    if name in MOMENTUM:
        assert any(k.startswith(MOMENTUM[name] + ".net.0.") for k in keys)  # its backbone copy
    if name in BUFFERS:
        assert BUFFERS[name] in keys and BUFFERS[name].replace("rows", "ptr") in keys
    assert not any(k.startswith("_") for k in keys)


def _keys(method, v):
    with torch.no_grad():
        return F.normalize(method.key_encoder(v), dim=1)


def test_mocov2_contrasts_with_earlier_keys_and_enqueues_this_steps_keys_after_the_step():
    torch.manual_seed(0)
    method = build("mocov2")
    queue = method.queue
    assert int(queue.filled) == queue.size and int(queue.ptr) == 0  # starts full of random unit keys
    first = None
    for step, seed in enumerate([1, 2], start=1):
        v1, v2 = views(seed)
        rows_before = queue.rows.clone()
        expected_keys = _keys(method, v2)
        q = F.normalize(method.projector(method.backbone(v1)), dim=1)
        out = method([v1, v2])
        # The loss is InfoNCE against the queue as it was before this step.
        assert out["loss"].item() == pytest.approx(
            losses.infonce(q, expected_keys, 0.2, negatives=rows_before).item(), rel=1e-5
        )
        assert torch.equal(queue.rows, rows_before)  # forward does not touch the queue
        method.after_step(step, 10)
        assert int(queue.ptr) == step * N
        new = queue.rows[(step - 1) * N : step * N]
        assert torch.allclose(new, expected_keys, atol=1e-6)
        assert torch.equal(queue.rows[step * N :], rows_before[step * N :])  # the rest is untouched
        if step == 2:  # the first step's keys are still there
            assert torch.equal(queue.rows[:N], first)
        first = queue.rows[:N].clone()


def test_mocov2_symmetric_enqueues_both_views_and_averages_both_orders():
    torch.manual_seed(0)
    method = build("mocov2", symmetric=True)
    v1, v2 = views(3)
    negatives = method.queue.rows.clone()
    k1, k2 = _keys(method, v1), _keys(method, v2)
    q1 = method.projector(method.backbone(v1))
    q2 = method.projector(method.backbone(v2))
    expected = (losses.infonce(q1, k2, 0.2, negatives) + losses.infonce(q2, k1, 0.2, negatives)) / 2
    assert method([v1, v2])["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    method.after_step(1, 10)
    assert int(method.queue.ptr) == 2 * N
    assert torch.allclose(method.queue.rows[: 2 * N], torch.cat([k2, k1]), atol=1e-6)


def test_mocov2_shuffled_bn_encodes_keys_in_groups_of_a_permutation_and_restores_the_order():
    torch.manual_seed(0)
    method = build("mocov2", bn_splits=2)
    x = views(4)[0]
    torch.manual_seed(7)
    keys = method._key(x)
    torch.manual_seed(7)
    perm = torch.randperm(N)
    with torch.no_grad():
        parts = torch.cat([method.key_encoder(c) for c in x[perm].chunk(2)])
    assert torch.allclose(keys, F.normalize(parts[torch.argsort(perm)], dim=1), atol=1e-6)
    assert not torch.allclose(keys, _keys(method, x), atol=1e-4)  # statistics differ from one group


def test_mocov2_grouped_batchnorm_is_the_network_run_on_each_chunk_in_one_pass():
    # Shuffling BN's arithmetic (statistics per chunk) without a pass per chunk: the same outputs
    # and gradients as running the network on each chunk, in float64 and in channels_last.
    from selfsup.methods.mocov2 import grouped_batchnorm

    torch.manual_seed(0)
    net = build_backbone("resnet-small", {"channels": 3}).double().to(memory_format=torch.channels_last)
    x = torch.randn(12, 3, 8, 8, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    grads = []
    for grouped in (False, True):
        net.zero_grad()
        xi = x.clone().requires_grad_(True)
        if grouped:
            with grouped_batchnorm(net, 3):
                out = net(xi)
        else:
            out = torch.cat([net(c) for c in xi.chunk(3)])
        (out * torch.linspace(-1, 1, out.shape[1], dtype=out.dtype)).sum().backward()
        grads.append((out.detach(), xi.grad, [p.grad.clone() for p in net.parameters()]))
    (out_a, gx_a, gp_a), (out_b, gx_b, gp_b) = grads
    assert torch.allclose(out_a, out_b, atol=1e-10)
    assert torch.allclose(gx_a, gx_b, atol=1e-10)
    assert all(torch.allclose(a, b, atol=1e-10) for a, b in zip(gp_a, gp_b))
    assert not torch.allclose(out_a, net(x), atol=1e-4)  # one group's statistics differ
    assert all("forward" not in vars(m) for m in net.modules())  # the block leaves the modules as they were


def test_mocov2_grouped_batchnorm_running_statistics_average_the_groups_updates():
    # The MoCo authors' CIFAR demo's SplitBatchNorm: each group updates its own copy of the running
    # statistics (momentum 0.1, unbiased variance), and the copies are averaged.
    from selfsup.methods.mocov2 import grouped_batchnorm

    torch.manual_seed(0)
    bn = torch.nn.BatchNorm2d(4)
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    before_mean, before_var = bn.running_mean.clone(), bn.running_var.clone()
    x = torch.randn(6, 4, 3, 3) * 2 + 1
    with grouped_batchnorm(bn, 2):
        bn(x)
    chunks = x.chunk(2)
    mean = torch.stack([c.mean(dim=(0, 2, 3)) for c in chunks]).mean(0)
    var = torch.stack([c.var(dim=(0, 2, 3), unbiased=True) for c in chunks]).mean(0)
    assert torch.allclose(bn.running_mean, 0.9 * before_mean + 0.1 * mean, atol=1e-6)
    assert torch.allclose(bn.running_var, 0.9 * before_var + 0.1 * var, atol=1e-6)
    assert int(bn.num_batches_tracked) == 1
    bn.eval()
    with grouped_batchnorm(bn, 2):  # evaluation uses the running statistics, whole batch
        assert torch.allclose(
            bn(x),
            torch.nn.functional.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False),
            atol=1e-6,
        )


def test_mocov2_cosine_momentum_schedule_is_an_option():
    method = build("mocov2", momentum_schedule="cosine", momentum=0.9)
    method(views())
    assert method.after_step(1, 4)["momentum"] == pytest.approx(0.9)
    assert method.after_step(3, 4)["momentum"] == pytest.approx(1 - 0.1 * (math.cos(math.pi / 2) + 1) / 2)
    constant = build("mocov2", momentum=0.9)
    constant(views())
    assert constant.after_step(3, 4)["momentum"] == 0.9


def test_mocov3_loss_is_algorithm_1_with_the_two_tau_factor():
    torch.manual_seed(0)
    method = build("mocov3", temperature=0.3)
    v1, v2 = views(5)
    online = torch.nn.Sequential(method.backbone, method.projector)
    q1, q2 = method.predictor(online(v1)), method.predictor(online(v2))
    k1, k2 = method.momentum_encoder(v1), method.momentum_encoder(v2)
    expected = 2 * 0.3 * (losses.infonce(q1, k2, 0.3) + losses.infonce(q2, k1, 0.3))
    assert method([v1, v2])["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    method.configure(1, 100)
    assert method.after_step(1, 100)["tau"] == pytest.approx(0.99)
    assert method.after_step(101, 100)["tau"] == pytest.approx(1.0)


def test_nnclr_nearest_neighbour_is_the_most_cosine_similar_support_row():
    torch.manual_seed(0)
    method = build("nnclr")
    rows = F.normalize(torch.randn(32, 16), dim=1)
    method.support.rows.copy_(rows)
    # Constructed: z_i is a scaled, slightly perturbed copy of row 3 * i, so that row is nearest.
    z = 5 * rows[::3][:8] + 0.05 * torch.randn(8, 16)
    assert torch.equal(method.nearest_neighbour(z), rows[::3][:8])
    # Random queries against a brute-force loop.
    z = torch.randn(8, 16)
    found = method.nearest_neighbour(z)
    for i in range(8):
        sims = [F.cosine_similarity(z[i], rows[j], dim=0).item() for j in range(32)]
        assert torch.equal(found[i], rows[max(range(32), key=sims.__getitem__)])


def test_nnclr_support_set_receives_the_first_views_projections_after_the_step():
    torch.manual_seed(0)
    method = build("nnclr")
    v1, v2 = views(6)
    before = method.support.rows.clone()
    z1 = method.projector(method.backbone(v1))
    z2 = method.projector(method.backbone(v2))
    p1, p2 = method.predictor(z1), method.predictor(z2)
    nn1, nn2 = method.nearest_neighbour(z1), method.nearest_neighbour(z2)
    expected = losses.infonce(nn1, p2, 0.1) / 2 + losses.infonce(nn2, p1, 0.1) / 2
    out = method([v1, v2])
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert torch.equal(method.support.rows, before)
    method.after_step(1, 10)
    assert int(method.support.ptr) == N
    assert torch.allclose(method.support.rows[:N], F.normalize(z1.detach(), dim=1), atol=1e-6)
    assert torch.equal(method.support.rows[N:], before[N:])


def test_simsiam_loss_is_the_symmetrised_negative_cosine_with_stop_gradient():
    torch.manual_seed(0)
    method = build("simsiam")
    v1, v2 = views(7)
    loss = method([v1, v2])["loss"]
    assert -1.0 <= loss.item() <= 1.0
    z1 = method.projector(method.backbone(v1))
    z2 = method.projector(method.backbone(v2))
    expected = (
        losses.negative_cosine(method.predictor(z1), z2) / 2 + losses.negative_cosine(method.predictor(z2), z1) / 2
    )
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("name", ["simclr", "barlowtwins", "vicreg"])
def test_symmetric_losses_do_not_depend_on_the_view_order(name):
    torch.manual_seed(0)
    method = build(name)
    v = views(8)
    assert method(v)["loss"].item() == pytest.approx(method(v[::-1])["loss"].item(), rel=1e-4)


# Heads narrowed and 256 training images: the CLI runs each method's digits recipe in seconds.
CLI_SETS = {
    "simclr": ["method_args.proj_hidden=64", "method_args.proj_dim=32"],
    "mocov2": ["method_args.proj_hidden=64", "method_args.proj_dim=32", "method_args.queue_size=256"],
    "mocov3": ["method_args.proj_hidden=64", "method_args.proj_dim=32", "method_args.pred_hidden=64"],
    "barlowtwins": ["method_args.proj_hidden=64", "method_args.proj_dim=64"],
    "vicreg": ["method_args.proj_hidden=64", "method_args.proj_dim=64"],
    "simsiam": ["method_args.proj_hidden=64", "method_args.proj_dim=64", "method_args.pred_hidden=16"],
    "nnclr": [
        "method_args.proj_hidden=64",
        "method_args.proj_dim=32",
        "method_args.pred_hidden=64",
        "method_args.queue_size=256",
    ],
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CLI_SETS))
def test_cli_trains_the_digits_recipe(name, tmp_path, capsys):
    argv = ["train", f"{name}-digits", "--epochs", "1", "--out", str(tmp_path / "run")]
    for item in CLI_SETS[name] + ["train.batch_size=128", "data.subset=256", "optim.warmup_epochs=0"]:
        argv += ["--set", item]
    assert main(argv) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["method"] == name and summary["finished"] is True
    assert 0.0 < summary["knn_top1"] <= 1.0


@pytest.mark.slow
def test_mocov2_interrupted_and_resumed_equals_an_uninterrupted_run(tmp_path):
    # The queue (and its pointer) is checkpointed; no key is left pending between steps.
    import selfsup
    from selfsup.config import build_config

    sets = CLI_SETS["mocov2"] + [
        "train.batch_size=128",
        "data.subset=256",
        "optim.warmup_epochs=0",
        "train.checkpoint_every=1",
    ]
    selfsup.train(build_config("mocov2-digits", sets, epochs=2), out=tmp_path / "straight")
    part = selfsup.train(build_config("mocov2-digits", sets + ["train.stop_after=1"], epochs=2), out=tmp_path / "split")
    assert part["finished"] is False
    selfsup.train(resume=tmp_path / "split")
    a = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=False)["method"]
    b = torch.load(tmp_path / "split" / "checkpoints" / "last.pt", weights_only=False)["method"]
    assert a.keys() == b.keys() and "queue.rows" in a
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_mocov2_shuffled_bn_takes_a_batch_its_splits_do_not_divide():
    # 9 images in 2 groups: uneven chunks (5 + 4), each with its own statistics, as before.
    torch.manual_seed(0)
    method = build("mocov2", bn_splits=2)
    x = views(0, 9)[0]
    q, h = method._query(x)
    online = torch.nn.Sequential(method.backbone, method.projector)
    expected = F.normalize(torch.cat([online(x[:5]), online(x[5:])]), dim=1)
    assert torch.allclose(q, expected, atol=1e-5)
