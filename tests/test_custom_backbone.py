"""Your own backbone: from Python (``selfsup.train(cfg, backbone=module)``) and from the config
(``model.backbone: module:package.path:factory`` + ``model.options``), trained on the digits,
exported and reloaded; the feature-dimension rule; one-line errors for what a user can get wrong."""

from __future__ import annotations

import json
import textwrap
import uuid

import pytest
import torch
from torch import nn

import selfsup
from selfsup.backbones import build_backbone, family_of
from selfsup.backbones.custom import adopt, declared_dim
from selfsup.cli import main
from selfsup.config import build_config, load_run_config
from selfsup.errors import UsageError
from selfsup.export import export_run

FAST = [
    "augment.size=8",
    "data.subset=256",
    "method_args.proj_hidden=64",
    "method_args.pred_hidden=64",
    "method_args.proj_dim=32",
    "train.batch_size=128",
    "train.log_every=1",
    "eval.diagnose_every=0",
    "optim.warmup_epochs=0",
]
SPEC = {"size": 8, "channels": 1, "mean": [0.3], "std": [0.4]}


class SmallNet(nn.Module):
    """A plain module that declares nothing: its feature dimension is found by one forward."""

    def __init__(self, channels: int = 1, width: int = 24):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(16, width),
        )

    def forward(self, x):
        return self.body(x)


NETS = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, channels, width, declare):
        super().__init__()
        self.conv = nn.Conv2d(channels, 8, 3, padding=1)
        self.head = nn.Linear(8, width)
        if declare:
            self.feature_dim = width

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def make(width=16, declare=False, input_spec=None):
    return Net(input_spec["channels"], width, declare)


def spatial(input_spec=None):
    return nn.Conv2d(input_spec["channels"], 4, 3)  # (N, 4, H, W): not features


class Liar(nn.Module):
    feature_dim = 99  # declares 99, gives 8

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(64, 8)

    def forward(self, x):
        return self.lin(x.flatten(1))
"""


@pytest.fixture
def nets(tmp_path, monkeypatch):
    """An importable module of backbones, written as a user would (a file on sys.path)."""
    name = f"mynets_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(NETS))
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


# ------------------------------------------------------------------------------ fast: the rules


def test_the_feature_dimension_is_what_the_module_declares_else_one_forward():
    class Declares(nn.Module):
        num_features = 7

        def forward(self, x):
            raise AssertionError("no forward is needed when the module declares its dimension")

    assert adopt(Declares()).feature_dim == 7
    net = SmallNet(width=24)
    assert declared_dim(net) is None
    calls = []
    adopted = adopt(net, lambda: calls.append(1) or torch.zeros(1, 1, 8, 8))
    assert adopted is net and net.feature_dim == 24 and calls == [1] and net.training  # mode restored
    assert net.spec["name"] == f"python:{SmallNet.__module__}.SmallNet"
    with pytest.raises(UsageError, match="set feature_dim"):
        adopt(SmallNet())  # nothing declared, no sample to run


def test_module_backbones_build_from_the_config_and_rebuild_from_their_spec(nets):
    cfg = build_config("byol-digits", FAST + [f"model.backbone=module:{nets}:make", "model.options={width: 12}"])
    assert family_of(cfg.model.backbone).name == "custom" and cfg.model.to_dict()["options"] == {"width": 12}
    net = build_backbone(cfg.model.backbone, SPEC, cfg.model.options)
    assert net.feature_dim == 12 and net.spec == {"name": f"module:{nets}:make", "options": {"options": {"width": 12}}}
    again = selfsup.backbones.rebuild(net.spec, SPEC)
    assert type(again).__name__ == "Net" and again.feature_dim == 12
    assert build_backbone(f"module:{nets}:make", SPEC, {"options": {"declare": True, "width": 5}}).feature_dim == 5


@pytest.mark.parametrize(
    "backbone, options, match",
    [
        ("module:no_such_package_xyz.nets:make", "{}", "cannot import no_such_package_xyz.nets (ModuleNotFoundError"),
        ("module:{nets}:nothing", "{}", "has no attribute nothing"),
        ("module:{nets}", "{}", "must be written module:package.path:factory"),
        ("module:{nets}:make", "{depth: 3}", "failed (make() got an unexpected keyword argument 'depth')"),
        ("module:{nets}:spatial", "{}", "to features of shape (1, 4, 6, 6), not (1, D)"),
    ],
)
def test_module_backbone_mistakes_are_one_line_errors(nets, capsys, tmp_path, backbone, options, match):
    code = main(
        ["train", "byol-digits", "--out", str(tmp_path / "run"), "--epochs", "1"]
        + [a for s in FAST for a in ("--set", s)]
        + ["--set", f"model.backbone={backbone.format(nets=nets)}", "--set", f"model.options={options}"]
    )
    err = capsys.readouterr().err
    assert code == 2 and match in err and len(err.strip().splitlines()) == 1, err


def test_a_declared_dimension_that_is_wrong_is_caught_at_the_first_forward(nets):
    net = build_backbone(f"module:{nets}:Liar", SPEC, {})
    with pytest.raises(UsageError, match=r"to features of shape \(3, 8\), not \(3, 99\)") as e:
        net(torch.zeros(3, 1, 8, 8))
    assert "\n" not in str(e.value)


def test_a_python_module_whose_output_is_not_n_by_d_is_a_one_line_error():
    cfg = build_config("byol-digits", FAST, epochs=1)
    with pytest.raises(UsageError, match=r"features of shape \(1, 4, 6, 6\), not \(1, D\)") as e:
        selfsup.train(cfg, backbone=nn.Conv2d(1, 4, 3))
    assert "\n" not in str(e.value)


# --------------------------------------------------------------------- slow: train, export, reload


@pytest.mark.slow
def test_a_python_backbone_trains_on_digits_exports_and_reloads(tmp_path):
    cfg = build_config("byol-digits", FAST, epochs=1)
    torch.manual_seed(0)
    summary = selfsup.train(cfg, out=tmp_path / "run", backbone=SmallNet(width=24))
    assert summary["finished"] and 0.0 < summary["knn_top1"] <= 1.0
    record = json.loads((tmp_path / "run" / "encoder.json").read_text())
    assert record["feature_dim"] == 24 and record["backbone"]["name"].endswith("SmallNet")
    with pytest.raises(UsageError, match="backbone=<a fresh instance>"):
        selfsup.load_encoder(tmp_path / "run")
    encoder = selfsup.load_encoder(tmp_path / "run", backbone=SmallNet(width=24))
    assert encoder.feature_dim == 24 and not encoder.training
    trained = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)["method"]
    assert all(torch.equal(v, trained[f"backbone.{k}"]) for k, v in encoder.state_dict().items())
    for fmt in ("torchscript", "onnx", "safetensors"):
        done = export_run(tmp_path / "run", fmt, backbone=SmallNet(width=24))
        assert done.max_diff <= done.tolerance and done.samples == 256


@pytest.mark.slow
def test_a_module_backbone_trains_exports_and_reloads_from_its_record(nets, tmp_path, capsys):
    run = tmp_path / "run"
    code = main(
        ["train", "byol-digits", "--out", str(run), "--epochs", "1"]
        + [a for s in FAST for a in ("--set", s)]
        + ["--set", f"model.backbone=module:{nets}:make", "--set", "model.options={width: 20}"]
    )
    assert code == 0, capsys.readouterr().err
    assert load_run_config(run / "config.yaml").model.to_dict() == {
        "backbone": f"module:{nets}:make",
        "options": {"width": 20},
    }
    encoder = selfsup.load_encoder(run)  # rebuilt from the record alone
    assert type(encoder).__name__ == "Net" and encoder.feature_dim == 20
    for fmt in ("torchscript", "onnx"):
        code = main(["export", str(run), "--format", fmt])
        out = capsys.readouterr().out
        assert code == 0 and "checked on the run's probe batch" in out
    x = torch.randn(5, 1, 8, 8)
    traced = torch.jit.load(str(run / "export" / "encoder.torchscript.pt"))
    with torch.no_grad():
        torch.testing.assert_close(traced(x), encoder(x), rtol=0, atol=1e-5)
    done = export_run(run, "safetensors")
    reloaded = selfsup.load_encoder(done.path)
    with torch.no_grad():
        assert torch.equal(reloaded(x), encoder(x))
