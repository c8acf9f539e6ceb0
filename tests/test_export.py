"""The run's encoder format (safetensors + encoder.json), and ONNX, TorchScript and safetensors
exports checked against the torch encoder on real batches (the bundled digits, the wine table, the
GunPoint series).

The trained ResNet is the fef551e fixture's encoder (an old encoder.pt: exporting it also shows the
old format still loads); the ViT and the table and series backbones are freshly initialised (what is
checked is that the exported graph computes what the torch module computes, on real inputs).
Tolerances: safetensors bit-identical; TorchScript 1e-5 and ONNX 1e-4, times max(1, max |feature|).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from selfsup.backbones import FAMILIES, backbone_for, build_backbone
from selfsup.cli import main
from selfsup.config import build_config, dump_config, load_run_config
from selfsup.data.sources import load_dataset
from selfsup.encoder import load_encoder, preprocess_fn
from selfsup.errors import UsageError
from selfsup.export import (
    TOLERANCE,
    ExportError,
    encoder_record,
    export_module,
    export_run,
    load_safetensors,
    probe_samples,
    save_safetensors,
    write_run_encoder,
)
from selfsup.modalities import get_modality
from selfsup.runs import RunFolder

FIXTURE = Path(__file__).with_name("fixtures") / "old-runs-fef551e" / "finished"


@pytest.fixture
def old_run(tmp_path):
    return Path(shutil.copytree(FIXTURE, tmp_path / "finished"))


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def digits_test_batch(encoder, n=None):
    data = load_dataset("digits", input_spec=encoder.input_spec)
    samples = data.test if n is None else data.test[:n]
    return preprocess_fn(encoder)(samples)


def close_enough(got: torch.Tensor, expected: torch.Tensor, fmt: str) -> bool:
    tolerance = TOLERANCE[fmt] * max(1.0, expected.abs().max().item())
    return got.shape == expected.shape and (got - expected).abs().max().item() <= tolerance


# ----------------------------------------------------------------------------------- safetensors


def test_safetensors_round_trip_is_bit_identical_for_every_dtype(tmp_path):
    g = torch.Generator().manual_seed(0)
    tensors = {
        "w": torch.randn(3, 4, generator=g),
        "half": torch.randn(5, generator=g).half(),
        "bf16": torch.randn(2, 3, generator=g).bfloat16(),
        "f64": torch.randn(2, generator=g).double(),
        "count": torch.tensor(7),  # BatchNorm's num_batches_tracked: a 0-d int64
        "mask": torch.tensor([True, False, True]),
        "codes": torch.arange(6, dtype=torch.int32).reshape(2, 3),
        "empty": torch.zeros(0, 4),
        "strided": torch.arange(12.0).reshape(3, 4).T,  # not contiguous
    }
    save_safetensors(tensors, tmp_path / "t.safetensors", {"note": "hello"})
    back, meta = load_safetensors(tmp_path / "t.safetensors")
    assert meta == {"note": "hello"} and back.keys() == tensors.keys()
    for k, v in tensors.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape and torch.equal(back[k], v), k


def test_our_safetensors_files_are_the_standard_format(tmp_path):
    st = pytest.importorskip("safetensors.torch")
    from safetensors import safe_open

    g = torch.Generator().manual_seed(1)
    tensors = {"a.weight": torch.randn(4, 3, generator=g), "a.bias": torch.randn(4, generator=g).bfloat16()}
    save_safetensors(tensors, tmp_path / "ours.safetensors", {"selfsup": "{}"})
    theirs = st.load_file(str(tmp_path / "ours.safetensors"))
    assert all(torch.equal(theirs[k], tensors[k]) for k in tensors)
    with safe_open(str(tmp_path / "ours.safetensors"), "pt") as f:
        assert f.metadata() == {"selfsup": "{}"}
    st.save_file(tensors, str(tmp_path / "theirs.safetensors"), metadata={"x": "y"})
    back, meta = load_safetensors(tmp_path / "theirs.safetensors")
    assert meta == {"x": "y"} and all(torch.equal(back[k], tensors[k]) for k in tensors)


def test_a_truncated_or_foreign_safetensors_file_is_a_one_line_error(tmp_path):
    save_safetensors({"w": torch.ones(100)}, tmp_path / "good.safetensors")
    raw = (tmp_path / "good.safetensors").read_bytes()
    for name, data in [("short", raw[:-10]), ("foreign", b"PK\x03\x04 not a safetensors file at all"), ("tiny", b"12")]:
        (tmp_path / name).write_bytes(data)
        with pytest.raises(UsageError, match="not a readable safetensors file") as e:
            load_safetensors(tmp_path / name)
        assert "\n" not in str(e.value)


# -------------------------------------------------------------------------------- the run format


def test_the_run_encoder_format_reloads_bit_identical_and_refuses_other_weights(tmp_path):
    old = load_encoder(FIXTURE)  # format 2: encoder.pt
    run = RunFolder(tmp_path / "run")
    run.path.mkdir()
    record = encoder_record("image", old.backbone_spec, old.feature_dim, old.input_spec, "byol", "digits")
    write_run_encoder(run, old, record)
    assert run.encoder == run.encoder_record and json.loads(run.encoder_record.read_text())["format"].endswith("/3")
    new = load_encoder(run.path)
    assert new.state_dict().keys() == old.state_dict().keys()
    assert all(torch.equal(new.state_dict()[k], v) for k, v in old.state_dict().items())
    assert new.input_spec == old.input_spec and new.backbone_spec == old.backbone_spec and new.modality == "image"
    x = digits_test_batch(old, 64)
    with torch.no_grad():
        assert torch.equal(new(x), old(x))
    # The record names its weights' hash: weights from elsewhere are refused, missing ones named.
    save_safetensors(
        {k: v + 1 if v.is_floating_point() else v for k, v in old.state_dict().items()}, run.encoder_weights
    )
    with pytest.raises(UsageError, match="SHA-256"):
        load_encoder(run.path)
    run.encoder_weights.unlink()
    with pytest.raises(UsageError, match="encoder.safetensors is missing"):
        load_encoder(run.path)


def test_an_old_run_exports_to_safetensors_that_reloads_bit_identical(old_run, capsys):
    code, out, err = run_cli(capsys, "export", old_run, "--format", "safetensors")
    assert code == 0, err
    path = old_run / "export" / "encoder.safetensors"
    assert "bit-identical" in out and "tolerance 0" in out and path.is_file()
    old, new = load_encoder(old_run), load_encoder(path)
    assert all(torch.equal(new.state_dict()[k], v) for k, v in old.state_dict().items())
    assert new.input_spec == old.input_spec and new.feature_dim == 128
    x = digits_test_batch(old)
    with torch.no_grad():
        assert torch.equal(new(x), old(x))
    meta = load_safetensors(path)[1]
    assert json.loads(meta["selfsup"])["input"]["mean"] == old.input_spec["mean"]
    assert "normalisation is not inside the graph" in meta["selfsup.preprocess"]


@pytest.mark.slow
def test_torchscript_export_of_a_trained_resnet_reproduces_it_on_another_batch(old_run, capsys):
    out_file = old_run / "resnet.pt"
    code, out, err = run_cli(capsys, "export", old_run, "--format", "torchscript", "--out", out_file)
    assert code == 0, err
    assert "checked on the run's probe batch (512 samples)" in out and "tolerance" in out
    encoder = load_encoder(old_run)
    extra = {"selfsup.json": ""}
    traced = torch.jit.load(str(out_file), _extra_files=extra)
    assert json.loads(extra["selfsup.json"])["backbone"]["name"] == "resnet-small"
    for n in (1, 37, None):  # the batch dimension is dynamic; the whole test split is 360
        x = digits_test_batch(encoder, n)
        with torch.no_grad():
            assert close_enough(traced(x), encoder(x), "torchscript")


def test_the_check_batch_is_the_runs_probe_batch():
    from selfsup.training.monitor import probe_batch

    cfg = load_run_config(FIXTURE / "config.yaml")
    data = load_dataset("digits")
    s = SimpleNamespace(cfg=cfg, data=data, device=torch.device("cpu"))
    assert torch.equal(probe_samples(cfg, data), probe_batch(s))


def test_a_wrong_export_is_refused(tmp_path):
    """The check can fail: a module whose traced graph differs from its eager forward (it reads a
    Python flag the trace freezes) is caught on the check batch."""

    class Flaky(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(64, 8)
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            return self.lin(x.flatten(1)) * (1.0 if self.calls == 1 else 2.0)

    x = torch.randn(16, 1, 8, 8)
    with pytest.raises(ExportError, match="differs from the torch encoder"):
        export_module(Flaky(), "torchscript", tmp_path / "f.pt", x, {"format": "test"})


def test_a_missing_export_dependency_is_a_one_line_error_naming_the_extra(old_run, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if it were not installed
    code, _, err = run_cli(capsys, "export", old_run, "--format", "onnx")
    assert code == 2 and "pip install 'selfsup[export]'" in err and len(err.strip().splitlines()) == 1


def test_export_mistakes_are_one_line_errors(tmp_path, old_run, capsys):
    code, _, err = run_cli(capsys, "export", tmp_path / "nothing", "--format", "onnx")
    assert code == 2 and "does not exist" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(capsys, "export", old_run, "--format", "pickle")
    assert code == 2 and "invalid choice" in err and len(err.strip().splitlines()) == 1
    (old_run / "encoder.pt").unlink()
    code, _, err = run_cli(capsys, "export", old_run, "--format", "torchscript")
    assert code == 2 and "encoder.json is missing" in err and len(err.strip().splitlines()) == 1


# --------------------------------------------------------------------------- ONNX, every family


def vit_run(tmp_path) -> Path:
    """A run folder holding a freshly initialised ViT-Tiny for the 8x8 digits (4x4 patches)."""
    cfg = build_config("dino-vit-digits", ["augment.size=8", "model.patch_size=4"])
    data = load_dataset("digits")
    spec = get_modality("image").input_spec(data, cfg)
    torch.manual_seed(0)
    encoder = backbone_for(cfg, spec)
    run = RunFolder(tmp_path / "vit")
    run.create()
    run.config.write_text(dump_config(cfg))
    write_run_encoder(run, encoder, encoder_record("image", encoder.spec, encoder.feature_dim, spec, "dino", "digits"))
    return run.path


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("which", ["resnet", "vit"])
def test_onnx_and_torchscript_of_a_resnet_and_a_vit_reproduce_the_torch_encoder(old_run, tmp_path, fmt, which):
    run = old_run if which == "resnet" else vit_run(tmp_path)
    done = export_run(run, fmt)
    assert done.max_diff <= done.tolerance and done.samples == 512
    encoder = load_encoder(run)
    assert encoder.backbone_spec["name"] == ("resnet-small" if which == "resnet" else "vit-tiny")
    for n in (1, 37, None):
        x = digits_test_batch(encoder, n)
        with torch.no_grad():
            expected = encoder(x)
        if fmt == "onnx":
            import onnx
            import onnxruntime as ort

            model = onnx.load(str(done.path))
            meta = {p.key: p.value for p in model.metadata_props}
            assert json.loads(meta["selfsup"])["input"] == encoder.input_spec
            session = ort.InferenceSession(str(done.path), providers=["CPUExecutionProvider"])
            got = torch.from_numpy(session.run(None, {"input": x.numpy()})[0])
        else:
            got = torch.jit.load(str(done.path))(x)
        assert close_enough(got, expected, fmt), (n, (got - expected).abs().max())


REAL_DATA = {"image": ("digits", "byol"), "table": ("wine", "scarf"), "series": ("ucr:GunPoint", "simclr")}


def family_cases():
    """One member of every table and series family (ResNets and ViTs are above; the custom family is
    tests/test_custom_backbone.py's), in each format."""
    cases = []
    for family in FAMILIES.values():
        if family.prefix or family.name in ("resnet", "vit"):
            continue
        member, modality = family.members[0], family.modalities[0]
        for fmt in ("torchscript", "safetensors", "onnx"):
            cases.append(pytest.param(member, modality, fmt, id=f"{member}-{fmt}"))
    return cases


@pytest.mark.slow
@pytest.mark.parametrize("member, modality, fmt", family_cases())
def test_every_table_and_series_family_exports_with_a_dynamic_batch(member, modality, fmt, tmp_path):
    data_name, method = REAL_DATA[modality]
    if modality == "series" and importlib.util.find_spec("aeon") is None:  # the GunPoint archive's package
        (pytest.fail if os.environ.get("CI") == "true" else pytest.skip)("aeon is not installed (docs/data/series.md)")
    cfg = build_config(None, [f"model.backbone={member}"], method=method, data=data_name)
    data = load_dataset(data_name)
    mod = get_modality(data.modality)
    spec = mod.input_spec(data, cfg)
    torch.manual_seed(0)
    encoder = build_backbone(member, spec, cfg.model.options).eval()
    x = mod.eval_transform(spec)(data.train[:48])
    record = encoder_record(modality, encoder.spec, encoder.feature_dim, spec, method, data_name)
    done = export_module(encoder, fmt, tmp_path / f"{member}.{fmt}", x, record)
    assert done.max_diff <= done.tolerance and done.samples == 48  # traced on 2 samples, checked on 48
