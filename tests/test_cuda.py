"""The CUDA paths, checked on a GPU (skipped where there is none, as on CI).

The first command of a session with a GPU: ``python -m pytest -q tests/test_cuda.py``.

- every method's training step in bf16 and channels_last, through the real loop;
- host placement (pinned batches on a side stream) against device placement;
- MoCo v2's grouped BatchNorm in bf16 against the chunked float32 passes;
- the vectorised LARS on the GPU against the CPU;
- cuDNN's algorithm search switched on;
- the step captured as one CUDA graph (train.cuda_graph) against the eager step: the same losses,
  and the graph really replayed.

``SELFSUP_TEST_DEVICE=cpu`` runs them on the CPU instead, to check the tests themselves on a machine
without a GPU (slow: every method trains an epoch in bf16 there).
"""

import os

import pytest
import torch

import selfsup
from selfsup.config import build_config
from selfsup.data import load_dataset
from selfsup.data.loader import BatchLoader
from selfsup.methods import METHODS
from selfsup.optim import LARS

DEVICE = os.environ.get("SELFSUP_TEST_DEVICE", "cuda")
pytestmark = pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(), reason="no CUDA device")


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_trains_an_epoch_in_bf16_channels_last(method, tmp_path):
    from selfsup.training import build

    sets = [
        "data.subset=256",
        "optim.warmup_epochs=0",
        f"train.device={DEVICE}",
        "train.precision=bf16",
        "train.channels_last=true",
    ]
    cfg = build_config(f"{method}-digits", sets, epochs=1, batch_size=128)
    s = build(cfg)
    assert s.amp_dtype == torch.bfloat16 and s.memory_format == torch.channels_last
    if DEVICE == "cuda":
        assert torch.backends.cudnn.benchmark  # train.cudnn_benchmark's default
    summary = selfsup.train(cfg, out=tmp_path / "run")
    assert summary["finished"] and 0.0 < summary["knn_top1"] <= 1.0


def test_host_placement_gives_the_batches_of_device_placement():
    images = load_dataset("digits").train
    device = torch.device(DEVICE)
    on_device = BatchLoader(images, 128, device, placement="device", seed=0)
    on_host = BatchLoader(images, 128, device, placement="host", seed=0)
    on_host.placement = "host"  # the prefetch path, also where 'device' would be chosen
    pairs = list(zip(on_device.batches(1, with_indices=True), on_host.batches(1, with_indices=True)))
    assert len(pairs) == on_device.steps_per_epoch
    for (idx_a, a), (idx_b, b) in pairs:
        assert a.device.type == b.device.type == device.type
        assert torch.equal(idx_a.cpu(), idx_b.cpu()) and torch.equal(a, b)


def test_mocov2_grouped_batchnorm_in_bf16_matches_the_chunked_float32_passes():
    from selfsup.backbones import build_backbone
    from selfsup.methods.mocov2 import grouped_batchnorm

    torch.manual_seed(0)
    net = build_backbone("resnet18", {"channels": 3}).to(DEVICE).to(memory_format=torch.channels_last)
    x = torch.randn(64, 3, 32, 32, device=DEVICE).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        reference = torch.cat([net(c) for c in x.chunk(4)])
        with torch.autocast(torch.device(DEVICE).type, dtype=torch.bfloat16), grouped_batchnorm(net, 4):
            grouped = net(x).float()
    assert torch.allclose(grouped, reference, atol=0.05, rtol=0.05)
    assert (grouped - reference).abs().mean() < 0.01 * reference.abs().mean() + 1e-3


def test_lars_on_the_device_matches_the_cpu():
    torch.manual_seed(0)
    shapes = [(64, 3, 3, 3), (128, 64), (10,), (7, 7)]
    cpu = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
    dev = [torch.nn.Parameter(p.detach().to(DEVICE).clone()) for p in cpu]
    opts = [
        LARS([{"params": ps, "weight_decay": 1e-4, "lars": True}], lr=0.5, momentum=0.9, eta=0.02) for ps in (cpu, dev)
    ]
    for _ in range(3):
        grads = [torch.randn(s) for s in shapes]
        for p, q, g in zip(cpu, dev, grads):
            p.grad, q.grad = g.clone(), g.to(DEVICE)
        for opt in opts:
            opt.step()
    for p, q in zip(cpu, dev):
        assert torch.allclose(p.detach(), q.detach().cpu(), atol=1e-5)


@pytest.mark.parametrize(
    "recipe,sets",
    [
        ("byol-digits", []),
        ("dino-digits", ["optim.name=adamw", "optim.lr=5e-4", "optim.final_weight_decay=0.4"]),  # two phases
    ],
)
def test_the_captured_step_trains_as_the_eager_one(recipe, sets, tmp_path):
    import json

    losses = {}
    for graph in ("false", "true"):
        cfg = build_config(
            recipe,
            [
                "data.subset=1024",
                "train.log_every=1",
                f"train.device={DEVICE}",
                f"train.cuda_graph={graph}",
                "train.precision=fp32",
                "train.cudnn_benchmark=false",
                *sets,
            ],  # fmt: skip
            epochs=3,
            batch_size=128,
        )
        summary = selfsup.train(cfg, out=tmp_path / graph)
        lines = (tmp_path / graph / "metrics.jsonl").read_text().splitlines()
        losses[graph] = torch.tensor([e["loss"] for e in map(json.loads, lines) if e["event"] == "step"])
    assert summary["cuda_graph"] == ("captured" if DEVICE == "cuda" else "eager")
    # the same kernels in the same order (float32, cuDNN's default algorithms): equal up to atomics
    assert torch.allclose(losses["true"], losses["false"], rtol=1e-3, atol=1e-3), (losses["true"], losses["false"])
