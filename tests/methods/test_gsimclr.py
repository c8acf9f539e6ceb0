"""G-SimCLR: the loader keeps the pseudo labels apart within a batch; the labels are made once and
kept in the checkpoint, so a resumed run trains on the same batches as an uninterrupted one."""

import json

import pytest
import torch

from cli_helpers import run_cli
from selfsup.data.loader import BatchLoader, epoch_permutation
from selfsup.data.sources import load_dataset


def test_loader_with_groups_keeps_them_apart_and_stays_a_function_of_seed_and_epoch():
    data = load_dataset("digits")
    groups = data.train_labels  # ten real groups, about 135 digits each
    loader = BatchLoader(data.train, 10, torch.device("cpu"), seed=4)
    assert torch.equal(loader.indices(0), epoch_permutation(loader.n, 4, 0)[: loader.steps_per_epoch * 10])
    loader.set_groups(groups)
    idx = loader.indices(1)
    assert torch.equal(idx, loader.indices(1)) and not torch.equal(idx, loader.indices(2))
    assert len(set(idx.tolist())) == len(idx) == loader.steps_per_epoch * 10
    distinct = [groups[b].unique().numel() for b in idx.split(10)]
    # every batch holds ten different digits until the smallest class is used up
    assert all(d == 10 for d in distinct[: int(torch.bincount(groups).min())])
    loader.set_groups(None)
    assert torch.equal(loader.indices(0), epoch_permutation(loader.n, 4, 0)[: loader.steps_per_epoch * 10])
    with pytest.raises(ValueError):
        loader.set_groups(groups[:-1])


SETS = [
    "method_args.proj_hidden=64",
    "method_args.proj_dim=32",
    "method_args.dae_epochs=2",
    "method_args.clusters=16",
    "train.batch_size=64",
    "data.subset=512",
    "optim.warmup_epochs=0",
    "train.checkpoint_every=1",
]


@pytest.mark.slow
def test_gsimclr_digits_trains_and_resumes_on_the_same_pseudo_label_batches(tmp_path):
    import selfsup
    from selfsup.config import build_config

    selfsup.train(build_config("gsimclr-digits", SETS, epochs=2), out=tmp_path / "straight")
    part = selfsup.train(
        build_config("gsimclr-digits", SETS + ["train.stop_after=1"], epochs=2), out=tmp_path / "split"
    )
    assert part["finished"] is False
    summary = selfsup.train(resume=tmp_path / "split")
    assert summary["finished"] is True and 0.0 < summary["knn_top1"] <= 1.0
    events = [json.loads(line) for line in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    made = [e for e in events if e.get("event") == "batch_groups"]
    assert len(made) == 2 and all(e["groups"] == 16 and e["samples"] == 512 for e in made)
    a = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=False)["method"]
    b = torch.load(tmp_path / "split" / "checkpoints" / "last.pt", weights_only=False)["method"]
    labels = a["_extra_state"]["pseudo_labels"]
    assert labels.shape == (512,) and labels.unique().numel() == 16
    for k in a:
        if k == "_extra_state":
            assert torch.equal(labels, b[k]["pseudo_labels"])
        else:
            assert torch.equal(a[k], b[k]), k


def test_gsimclr_from_the_command_line_trains_then_evaluates(tmp_path, capsys):
    run = tmp_path / "run"
    sets = [a for s in SETS for a in ("--set", s)]
    code, _, err = run_cli(capsys, "train", "gsimclr-digits", "--epochs", "1", *sets, "--out", run)
    assert code == 0, err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["finished"] is True and summary["method"] == "gsimclr"
    events = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [e["groups"] for e in events if e.get("event") == "batch_groups"] == [16]
    code, out, err = run_cli(capsys, "eval", run, "--protocol", "knn")
    assert code == 0, err
    assert "knn" in out.lower()
