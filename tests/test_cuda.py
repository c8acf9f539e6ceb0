"""The CUDA paths, checked on a GPU (skipped where there is none, as on CI).

The first command of a session with a GPU: ``python -m pytest -q tests/test_cuda.py``.

- every method's training step in bf16 (channels_last for images), through the real loop, on
  its modality's smallest real data;
- host placement (pinned batches on a side stream) against device placement;
- MoCo v2's grouped BatchNorm in bf16 against the chunked float32 passes;
- the vectorised LARS on the GPU against the CPU;
- cuDNN's algorithm search switched on;
- the step captured as one CUDA graph (train.cuda_graph): against the same step run eagerly (the
  same losses and weights with deterministic kernels, the graph really replayed), and through the
  loop against the ordinary eager step (the same epochs' losses up to rounding).

``SELFSUP_TEST_DEVICE=cpu`` runs them on the CPU instead, to check the tests themselves on a machine
without a GPU (slow: every method trains an epoch in bf16 there).
"""

import os

# cuBLAS reads this when its handle is made: deterministic matrix products for the captured-step test
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import pytest  # noqa: E402
import torch

import selfsup
from selfsup.config import build_config
from selfsup.data import load_dataset
from selfsup.data.loader import BatchLoader
from selfsup.methods import METHODS
from selfsup.optim import LARS

DEVICE = os.environ.get("SELFSUP_TEST_DEVICE", "cuda")
pytestmark = pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(), reason="no CUDA device")


def _small_recipe(method: str) -> tuple[str, list[str]]:
    """A method's smallest real run: the digits for images, scikit-learn's breast-cancer table,
    UCR's ItalyPowerDemand (67 series; $SELFSUP_DATA/ItalyPowerDemand or the aeon wheel)."""
    modality = (METHODS[method].modalities or ("image",))[0]  # None: any modality
    if modality == "image":
        return f"{method}-digits", ["train.channels_last=true"]
    if modality == "table":
        return f"{method}-breast-cancer", []
    return f"{method}-ucr", ["data.name=ucr:ItalyPowerDemand", "eval.probe_size=32"]


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_trains_an_epoch_in_bf16(method, tmp_path):
    from selfsup.errors import DataError
    from selfsup.training import build

    recipe, extra = _small_recipe(method)
    sets = ["data.subset=256", "optim.warmup_epochs=0", f"train.device={DEVICE}", "train.precision=bf16", *extra]
    cfg = build_config(recipe, sets, epochs=1, batch_size=64)
    try:
        s = build(cfg)
    except DataError as e:  # the series archive is a file to bring along (benchmarks/gpu_check.sh does)
        pytest.skip(str(e))
    assert s.amp_dtype == torch.bfloat16
    if extra == ["train.channels_last=true"]:
        assert s.memory_format == torch.channels_last
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


CAPTURED = [
    ("byol-digits", []),
    ("dino-digits", ["optim.name=adamw", "optim.lr=5e-4", "optim.final_weight_decay=0.4"]),  # two phases
    # the yardstick's views: 32 px from grey images, jitter before the channels are replicated
    ("byol-fashion-mnist", ["data.name=digits", "model.backbone=resnet-small"]),
]


@pytest.mark.parametrize("recipe,sets", CAPTURED)
def test_the_captured_step_replays_its_eager_form(recipe, sets):
    """The graph against the same static step run eagerly (the CPU tests check that form against
    the ordinary step bit for bit): same losses and weights, with deterministic kernels, over two
    epochs (DINO: both phases, two graphs)."""
    from selfsup.training import build
    from selfsup.training.graph import StaticStep

    sets = ["data.subset=1024", f"train.device={DEVICE}", "train.cuda_graph=true", "train.precision=fp32",
            "train.cudnn_benchmark=false", *sets]  # fmt: skip
    cfg = build_config(recipe, sets, epochs=2, batch_size=128)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        runs = []
        for capture in (True, False):
            s = build(cfg)
            static = StaticStep(s, torch.Generator(s.device).manual_seed(0))
            static.capture = capture and s.device.type == "cuda"
            losses, step = [], 0
            for epoch in range(2):
                for batch in s.loader.batches(epoch):
                    out, _ = static(batch, step)
                    losses.append(out["loss"].item())
                    step += 1
            runs.append((static, torch.tensor(losses), [p.detach().clone() for p in s.method.parameters()]))
    finally:
        torch.use_deterministic_algorithms(False)
    (graph, graph_losses, graph_weights), (_, eager_losses, eager_weights) = runs
    assert graph.captured == (DEVICE == "cuda")
    if recipe.startswith("dino") and DEVICE == "cuda":
        assert len(graph.graphs) == 2  # the frozen last layer's phase, then the rest
    torch.testing.assert_close(graph_losses, eager_losses, rtol=1e-5, atol=1e-6)
    for p, q in zip(graph_weights, eager_weights):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("recipe,sets", CAPTURED[:2])
def test_the_captured_loop_trains_as_the_eager_one(recipe, sets, tmp_path):
    """Through the real loop, captured against the ordinary eager step: the same training, up to the
    rounding of different kernels (an eager LARS takes host floats, the graph device tensors; the
    eager DINO runs torch's AdamW), which a few dozen chaotic steps amplify; so the epochs' mean
    losses are compared, not each step's."""
    import json

    losses = {}
    for graph in ("false", "true"):
        cfg = build_config(
            recipe,
            ["data.subset=1024", f"train.device={DEVICE}", f"train.cuda_graph={graph}", *sets],
            epochs=3,
            batch_size=128,
        )
        summary = selfsup.train(cfg, out=tmp_path / graph)
        lines = (tmp_path / graph / "metrics.jsonl").read_text().splitlines()
        losses[graph] = torch.tensor([e["loss"] for e in map(json.loads, lines) if e["event"] == "epoch"])
    assert summary["cuda_graph"] == ("captured" if DEVICE == "cuda" else "eager")
    assert len(losses["true"]) == 3 and torch.isfinite(losses["true"]).all()
    torch.testing.assert_close(losses["true"], losses["false"], rtol=0.05, atol=0.02)
