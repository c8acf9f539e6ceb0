"""The step written for a CUDA graph (train.cuda_graph): device-tensor schedules equal the float
ones, the optimisers and the EMA take the same steps with tensors as with floats, and on the CPU
(where the step runs eagerly) a run gives the ordinary step's losses bit for bit. The capture
itself needs a GPU: tests/test_cuda.py."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import selfsup
from selfsup.cli import main
from selfsup.config import build_config
from selfsup.methods.parts.teacher import MomentumTeacher
from selfsup.optim import LARS, AdamW, build_optimizer
from selfsup.training.build import build
from selfsup.training.schedules import ScheduleTable, group_rate, learning_rate, weight_decay

SMALL = ["data.subset=512", "train.batch_size=128", "eval.diagnose_every=0", "train.log_every=1", "train.threads=1"]


def _net(seed=1):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(20, 48), nn.BatchNorm1d(48), nn.ReLU(), nn.Linear(48, 7))


def _train_pair(make, hyper, steps=25, freeze=4, net=_net):
    """Two copies of a net stepped side by side; ``hyper(k, tensors)`` sets the groups' numbers."""
    x = torch.randn(64, 20, generator=torch.Generator().manual_seed(0))
    nets, opts = [], []
    for tensors in (False, True):
        model = net()
        opt = make(model, tensors)
        nets.append(model)
        opts.append(opt)
    for k in range(steps):
        for tensors, net, opt in zip((False, True), nets, opts):
            hyper(opt, k, tensors)
            opt.zero_grad()
            net(x).pow(2).mean().backward()
            if k < freeze:  # a parameter without gradients early on (DINO's frozen last layer)
                net[3].weight.grad = None
            opt.step()
    return nets, opts


def _same(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def _set(opt, k, tensors, lr0=0.3, wd0=1e-4):
    lr, wd = lr0 * (k + 1) / 9, wd0 * (1 + k / 5)
    as_ = (lambda v: torch.tensor(v, dtype=torch.float64)) if tensors else (lambda v: v)
    for g in opt.param_groups:
        g["lr"] = as_(lr * g.get("lr_scale", 1.0))
        if g.get("decayed"):
            g["weight_decay"] = as_(wd)


@pytest.mark.parametrize("trust,clip", [("update", False), ("lars", False), ("lars", True)])
def test_lars_with_tensor_hyperparameters_takes_the_float_steps(trust, clip):
    def make(net, tensors):
        return build_optimizer("lars", net, 0.3, 1e-4, lars_eta=0.02, lars_trust=trust, lars_clip_lr=clip,
                               bias_lr_scale=0.024)  # fmt: skip

    (a, b), _ = _train_pair(make, _set)
    assert _same(a, b)


def test_sgd_made_capturable_takes_torch_sgds_steps():
    def make(net, tensors):
        return build_optimizer("sgd", net, 0.05, 5e-4, capturable=tensors)

    (a, b), (oa, ob) = _train_pair(make, _set)
    assert isinstance(oa, torch.optim.SGD) and isinstance(ob, LARS)
    assert _same(a, b)


def test_adamw_with_tensor_hyperparameters_takes_torch_adamws_steps_and_reads_its_state():
    def make(net, tensors):
        return build_optimizer("adamw", net, 1e-3, 0.04, betas=(0.9, 0.95), capturable=tensors)

    (a, b), (oa, ob) = _train_pair(lambda n, t: make(n, t), lambda o, k, t: _set(o, k, t, lr0=1e-3, wd0=0.04))
    assert isinstance(oa, torch.optim.AdamW) and isinstance(ob, AdamW)
    assert _same(a, b)
    # either optimiser resumes the other's state
    twin = make(_net(), True)
    twin.load_state_dict(oa.state_dict())
    assert set(twin.state_dict()["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}


def test_adamw_in_its_gpu_form_takes_torch_adamws_steps_up_to_rounding(monkeypatch):
    monkeypatch.setattr(AdamW, "fold_step_size", True)  # the step size divided into the denominator

    def make(net, tensors):
        return build_optimizer("adamw", net, 1e-3, 0.04, betas=(0.9, 0.95), capturable=tensors)

    def net():  # no BatchNorm after a bias: Adam would scale its rounding-noise gradient to full steps
        torch.manual_seed(1)
        return nn.Sequential(nn.Linear(20, 48), nn.LayerNorm(48), nn.ReLU(), nn.Linear(48, 7))

    (a, b), _ = _train_pair(make, lambda o, k, t: _set(o, k, t, lr0=1e-3, wd0=0.04), net=net)
    for p, q in zip(a.state_dict().values(), b.state_dict().values()):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6)  # rounding apart; bit for bit is the CPU form's


def test_teacher_update_with_a_tensor_weight_equals_the_float_one():
    online = _net(2)
    a, b = MomentumTeacher(_net(1), 0.99), MomentumTeacher(_net(1), 0.99)
    for step in range(1, 6):
        tau = a.tau_at(step - 1, 10)
        a.update(online, tau)
        b.update_weight(online, torch.tensor(1.0 - tau, dtype=torch.float64))
    assert _same(a, b)


@pytest.mark.parametrize(
    "recipe,sets",
    [
        ("dino-digits", ["optim.final_weight_decay=0.4", "method_args.warmup_teacher_temp_epochs=2"]),
        ("simsiam-digits", []),  # SimSiam's fixed-rate predictor group
        ("byol-digits", ["optim.schedule=infinite", "optim.cooldown_epochs=1", "optim.anneal_epochs=1"]),
    ],
)
def test_schedule_table_rows_are_the_float_schedules(recipe, sets):
    cfg = build_config(recipe, [*SMALL, *sets, "train.cuda_graph=true"], epochs=4)
    s = build(cfg)
    table = ScheduleTable(s)
    table.bind(s.optimizer)
    scalars = s.method.step_scalars()
    assert bool(scalars) == (recipe != "simsiam-digits")  # the teachers' EMA weights (and DINO's temperature)
    table.start_at(0)
    for k in range(s.total_steps):
        table.advance()
        lr = learning_rate(s, k)
        for group in s.optimizer.param_groups:
            assert group["lr"].item() == group_rate(group, lr, s.peak_lr)
            if group.get("decayed") and weight_decay(s, k) is not None:
                assert group["weight_decay"].item() == weight_decay(s, k)
        for name, value in table.scalars().items():
            assert value.item() == scalars[name](k + 1), (name, k)
    assert int(table.counter) == s.total_steps


def _losses(run) -> list[float]:
    events = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [e["loss"] for e in events if e["event"] == "step"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "recipe,sets",
    [
        ("byol-digits", []),  # LARS, the cosine EMA
        ("dino-digits", ["optim.name=adamw", "optim.lr=5e-4", "optim.final_weight_decay=0.4"]),  # frozen layer
        ("simsiam-digits", []),  # SGD, fixed-rate predictor
    ],
)
def test_the_capture_ready_step_gives_the_ordinary_steps_losses_bit_for_bit(tmp_path, recipe, sets):
    runs = {}
    for graph in ("false", "true"):
        runs[graph] = tmp_path / graph
        selfsup.train(build_config(recipe, [*SMALL, *sets, f"train.cuda_graph={graph}"], epochs=3), out=runs[graph])
    assert _losses(runs["true"]) == _losses(runs["false"])
    assert len(_losses(runs["true"])) == 12
    a, b = (selfsup.load_encoder(runs[g]) for g in ("false", "true"))
    assert _same(a, b)
    summary = json.loads((runs["true"] / "summary.json").read_text())
    assert summary["cuda_graph"] == "eager"  # no CUDA here: the same step, not captured


@pytest.mark.slow
def test_a_resumed_capture_ready_run_continues_at_the_right_row(tmp_path):
    sets = [*SMALL, "train.cuda_graph=true", "train.checkpoint_every=1"]
    selfsup.train(build_config("byol-digits", sets, epochs=3), out=tmp_path / "whole")
    selfsup.train(build_config("byol-digits", [*sets, "train.stop_after=1"], epochs=3), out=tmp_path / "parts")
    for _ in range(2):  # train.stop_after=1 is kept in the run's config: one epoch per invocation
        selfsup.train(resume=tmp_path / "parts")
    assert _losses(tmp_path / "parts") == _losses(tmp_path / "whole")
    # the checkpoint holds plain numbers, as an ordinary run's
    ckpt = torch.load(tmp_path / "parts" / "checkpoints" / "last.pt", weights_only=True)
    assert all(isinstance(g["lr"], float) for g in ckpt["optimizer"]["param_groups"])


def test_methods_with_host_state_are_refused_in_one_line(tmp_path, capsys):
    args = ["train", "mocov2-digits", "--set", "train.cuda_graph=true", "--out", str(tmp_path / "r")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot be captured" in err[0]
    assert not (tmp_path / "r").exists()


# What a CUDA graph cannot hold, as the operators that reach the dispatcher: a tensor made from
# host numbers (on a GPU, a copy from pageable memory), a read of a device number on the host (a
# sync), shapes that depend on the data, and foreach updates whose per-tensor values must be a host
# tensor. On the CPU nothing fails, so the capture-ready step is checked for them directly.
_NOT_CAPTURABLE = {
    "aten.lift_fresh.default": "a tensor made from host numbers (torch.tensor in the step)",
    "aten.lift_fresh_copy.default": "a tensor made from host numbers (torch.tensor in the step)",
    "aten._local_scalar_dense.default": "a device number read on the host (.item(), float(), bool())",
    "aten.nonzero.default": "a data-dependent shape (nonzero)",
    "aten.masked_select.default": "a data-dependent shape (masked_select)",
    "aten._foreach_addcdiv_.Tensor": "per-tensor values that must be a host tensor (_foreach_addcdiv_)",
    "aten._foreach_addcmul_.Tensor": "per-tensor values that must be a host tensor (_foreach_addcmul_)",
}


class _Calls(torch.utils._python_dispatch.TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.found: dict[str, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func)
        if name in _NOT_CAPTURABLE:
            self.found[name] = self.found.get(name, 0) + 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize(
    "recipe,sets",
    [
        ("byol-digits", []),
        ("simclr-digits", []),
        ("simsiam-digits", []),
        ("barlowtwins-digits", []),
        ("vicreg-digits", []),
        ("mocov3-digits", []),
        ("dino-digits", ["optim.name=adamw", "optim.lr=5e-4"]),
        # the yardstick's views: 32 px from grey images, jitter before the channels are replicated
        ("byol-fashion-mnist", ["data.name=digits", "model.backbone=resnet-small"]),
    ],
)
def test_the_capture_ready_step_does_nothing_a_cuda_graph_cannot_hold(recipe, sets, monkeypatch):
    """The steps after the warm-up (the ones a GPU captures) under a dispatcher mode that records
    the operators a capture refuses: views, forward, backward, optimiser, EMA and schedules."""
    from selfsup.training.graph import StaticStep

    monkeypatch.setattr(AdamW, "fold_step_size", True)  # the form AdamW takes on a GPU

    cfg = build_config(recipe, [*SMALL, "data.subset=256", "train.batch_size=32", "train.cuda_graph=true", *sets])
    s = build(cfg)
    static = StaticStep(s, torch.Generator().manual_seed(0))
    batches = s.loader.batches(0)
    for step in range(static.warmup):  # the eager warm-up: optimiser state is made here
        static(next(batches), step)
    calls = _Calls()
    with calls:
        for step in range(static.warmup, static.warmup + 2):
            out, _ = static(next(batches), step)
    assert torch.isfinite(out["loss"])
    assert not calls.found, "; ".join(f"{_NOT_CAPTURABLE[k]}: {k} x{n}" for k, n in calls.found.items())
