"""``selfsup eval --protocol layers``: kNN and linear probe on the backbone and on each projector and
predictor layer, rebuilt from the run's checkpoint; its rows, its report figure, its one-line errors."""

import json
import shutil

import pytest
import torch

import selfsup
from cli_helpers import run_cli
from selfsup.backbones import build_backbone
from selfsup.config import build_config
from selfsup.data import load_dataset
from selfsup.evaluate.protocols import PROTOCOLS, parse_protocols, result_rows
from selfsup.evaluate.protocols.layers import head_blocks
from selfsup.evaluate.run import evaluate_run
from selfsup.methods import METHODS

DIGITS = {"channels": 1, "size": 8}


def _method(name, **args):
    cls = METHODS[name]
    return cls(build_backbone("resnet-small", DIGITS, {"stem": "cifar"}), cls.Args(**args)).eval()


def _digit_images(n=32):
    return load_dataset("digits").test[:n].float().div(255).sub(0.3).div(0.37)


def test_blocks_split_each_head_at_its_linear_layers_and_chain_to_the_heads_output():
    byol = _method("byol", proj_hidden=32, proj_dim=16, pred_hidden=24)
    blocks = head_blocks(byol)
    assert [(name, ops) for name, ops, _ in blocks] == [
        ("projector.1", "Linear-BN-ReLU"),
        ("projector.2", "Linear"),
        ("predictor.1", "Linear-BN-ReLU"),
        ("predictor.2", "Linear"),
    ]
    with torch.no_grad():
        h = byol.backbone(_digit_images())
        outs = [h]
        for _, _, block in blocks:
            outs.append(block(outs[-1]))
        assert [o.shape[1] for o in outs] == [128, 32, 16, 24, 16]
        assert torch.equal(outs[2], byol.projector(h)) and torch.equal(outs[4], byol.predictor(byol.projector(h)))
    # SimCLR's output BatchNorm is part of the last block; MoCo v2's head has no BatchNorm; no
    # predictor (BYOL's ablation has an Identity) means projector blocks only.
    assert [ops for _, ops, _ in head_blocks(_method("simclr", proj_hidden=32))] == ["Linear-BN-ReLU", "Linear-BN"]
    assert [ops for _, ops, _ in head_blocks(_method("mocov2", proj_hidden=32, queue_size=64))] == [
        "Linear-ReLU",
        "Linear",
    ]
    assert [n for n, _, _ in head_blocks(_method("byol", proj_hidden=32, predictor=False))] == [
        "projector.1",
        "projector.2",
    ]


def test_layers_is_a_registered_protocol_outside_all():
    assert "layers" in PROTOCOLS and "layers" not in parse_protocols("all")
    assert parse_protocols("knn,layers") == ["knn", "layers"]


# ----------------------------------------------------------------------------- end to end, from the CLI


@pytest.fixture(scope="module")
def simclr_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("layers") / "run"
    cfg = build_config("simclr-digits", ["method_args.proj_hidden=64", "eval.diagnose_every=0"], epochs=2)
    selfsup.train(cfg, out=str(out))
    return out


@pytest.mark.slow
def test_layers_from_the_cli_probes_every_layer_beside_the_raw_input(simclr_run, capsys):
    code, out, err = run_cli(capsys, "eval", simclr_run, "--protocol", "layers", "--json")
    assert code == 0, err
    result = json.loads(out)
    layers = result["layers"]["layers"]
    assert [(r["name"], r["ops"], r["dim"]) for r in layers] == [
        ("backbone", "ResNet", 128),
        ("projector.1", "Linear-BN-ReLU", 64),
        ("projector.2", "Linear-BN", 128),
    ]
    for r in [*layers, result["layers"]["raw"]]:
        assert 0.5 < r["knn_top1"] <= 1 and 0.5 < r["linear_top1"] <= 1
        assert -4 <= r["uniformity"] <= 0 and -1 <= r["tolerance"] <= 1
    best = max(layers, key=lambda r: r["linear_top1"])
    assert result["layers_best"] == best["name"] and result["layers_best_linear_top1"] == best["linear_top1"]
    assert result["layers_best_linear_top1_raw"] == result["layers"]["raw"]["linear_top1"]
    assert result["layers"]["knn"] == {"k": 200, "t": 0.1} and result["layers"]["checkpoint_step"] > 0
    stored = json.loads((simclr_run / "summary.json").read_text())["eval"]["digits"]
    assert stored["layers"] == result["layers"]

    # The backbone layer, rebuilt from the checkpoint, is the exported encoder: the knn protocol on
    # the encoder's features gives the same numbers, and the same raw-input baseline.
    code, out, err = run_cli(capsys, "eval", simclr_run, "--protocol", "knn", "--json")
    knn = json.loads(out)
    assert layers[0]["knn_top1"] == knn["knn_top1"]
    assert layers[0]["tolerance"] == pytest.approx(knn["knn_tolerance"], rel=1e-6)
    assert layers[0]["uniformity"] == pytest.approx(knn["knn_uniformity"], rel=1e-6)
    raw = result["layers"]["raw"]
    assert raw["knn_top1"] == knn["knn_top1_raw"] and raw["tolerance"] == pytest.approx(knn["knn_tolerance_raw"])

    # Rows: four per layer, each beside the raw input's number; the stored entry reads the same.
    rows = PROTOCOLS["layers"].rows(result)
    assert [(r.protocol, r.measure) for r in rows[:4]] == [
        ("backbone ResNet 128-d", "kNN top-1"),
        ("backbone ResNet 128-d", "linear top-1"),
        ("backbone ResNet 128-d", "uniformity"),
        ("backbone ResNet 128-d", "tolerance"),
    ]
    assert len(rows) == 12 and rows[5].value == layers[1]["linear_top1"] and rows[5].baseline == raw["linear_top1"]
    assert [r.cells() for r in result_rows(stored) if r.protocol.startswith("projector")] == [
        r.cells() for r in rows[4:]
    ]


@pytest.mark.slow
def test_the_report_draws_the_layers_of_an_evaluated_run(simclr_run, tmp_path):
    pytest.importorskip("matplotlib")
    from selfsup.report import write_report

    run = tmp_path / "run"
    shutil.copytree(simclr_run, run)
    summary = json.loads((run / "summary.json").read_text())
    if "layers" not in (summary.get("eval") or {}).get("digits", {}):  # this test alone: evaluate first
        evaluate_run(run, protocols="layers")
    page = write_report([run]).read_text()
    assert "alt='layers digits'" in page and "layer by layer on digits" in page


@pytest.mark.slow
def test_a_run_without_checkpoint_is_a_one_line_error(simclr_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(simclr_run, run, ignore=shutil.ignore_patterns("checkpoints"))
    code, _, err = run_cli(capsys, "eval", run, "--protocol", "layers")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "checkpoints/last.pt is missing: the layers protocol rebuilds simclr's projector" in err


@pytest.mark.slow
def test_a_method_without_projector_is_a_one_line_error(tmp_path, capsys):
    cfg = build_config("rotnet-digits", ["data.subset=64", "eval.diagnose_every=0"], epochs=1, batch_size=32)
    selfsup.train(cfg, out=str(tmp_path / "rotnet"))
    code, _, err = run_cli(capsys, "eval", tmp_path / "rotnet", "--protocol", "layers")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "rotnet has no projection head (projector)" in err
