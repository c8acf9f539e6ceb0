"""A folder of real JPEG and PNG files from the command line: `selfsup data prepare`, and training from its store."""

from __future__ import annotations

import json

import pytest
import yaml

from cli_helpers import run_cli
from selfsup.data.store import open_store
from selfsup.modalities.image.prepare import default_store_dir


def one_line_error(code, err) -> str:
    assert code == 2 and err.startswith("error:") and err.count("\n") == 1, err
    return err


def test_data_prepare_writes_the_store_once_and_then_finds_it(photos, capsys):
    code, out, err = run_cli(capsys, "data", "prepare", f"folder:{photos}", "--size", 32, "--workers", 0)
    assert code == 0, err
    store = default_store_dir(photos, 32)
    assert f"store {store} (32 px)" in out and "train 12, test 4, 3x32x32, 2 classes" in out
    header = (store / "train" / "header.json").stat()
    code, out, _ = run_cli(capsys, "data", "prepare", f"folder:{photos}", "--size", 32)
    assert code == 0 and (store / "train" / "header.json").stat().st_mtime_ns == header.st_mtime_ns, "not rewritten"
    assert open_store(store / "test").count == 4


def test_data_prepare_names_a_corrupt_jpeg_or_skips_it(photos, tmp_path, capsys):
    bad = photos / "train" / "dog" / "img001.jpg"
    bad.write_bytes(bad.read_bytes()[:300])  # a download cut short
    err = one_line_error(*run_cli(capsys, "data", "prepare", f"folder:{photos}", "--workers", 0)[::2])
    assert str(bad) in err and "--skip-bad" in err
    code, out, _ = run_cli(capsys, "data", "prepare", f"folder:{photos}", "--workers", 0, "--skip-bad")
    assert code == 0 and "train 11" in out and "1 unreadable images left out" in out


def test_bad_input_to_data_prepare_is_one_line_with_status_2(photos, tmp_path, capsys):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    assert "no images" in one_line_error(*run_cli(capsys, "data", "prepare", f"folder:{tmp_path / 'empty'}")[::2])
    assert "does not exist" in one_line_error(*run_cli(capsys, "data", "prepare", f"folder:{tmp_path / 'none'}")[::2])
    (tmp_path / "taken").write_text("a file where the store folder should go")
    err = one_line_error(*run_cli(capsys, "data", "prepare", f"folder:{photos}", "--store", tmp_path / "taken")[::2])
    assert "cannot create the image store folder" in err
    assert "--bogus" in one_line_error(*run_cli(capsys, "data", "prepare", f"folder:{photos}", "--bogus")[::2])
    assert "--size" in one_line_error(*run_cli(capsys, "data", "prepare", f"folder:{photos}", "--size", "x")[::2])
    assert "storage size" in one_line_error(*run_cli(capsys, "data", "prepare", f"folder:{photos}", "--size", 0)[::2])


def test_a_store_that_can_be_neither_read_nor_rewritten_is_one_line_with_status_2(photos, tmp_path, capsys):
    code, _, _ = run_cli(capsys, "data", "prepare", f"folder:{photos}", "--size", 32, "--store", tmp_path / "s")
    assert code == 0
    samples = tmp_path / "s" / "train" / "samples.bin"
    samples.unlink()
    samples.mkdir()  # damaged beyond what a rebuild can clear (a folder where its data file was)
    err = one_line_error(
        *run_cli(capsys, "data", "prepare", f"folder:{photos}", "--size", 32, "--store", tmp_path / "s")[::2]
    )
    assert f"cannot write the image store {tmp_path / 's' / 'train'}" in err


@pytest.mark.slow
def test_train_eval_and_embed_from_a_prepared_folder(photos, tmp_path, capsys):
    run = tmp_path / "run"
    code, _, err = run_cli(
        capsys,
        "train",
        "--method",
        "simclr",
        "--data",
        f"folder:{photos}",
        "--epochs",
        1,
        "--batch-size",
        8,
        "--device",
        "cpu",
        "--out",
        run,
        "--set",
        "augment.size=16",
        "--set",
        "model.backbone=resnet-small",
    )
    assert code == 0, err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["finished"] and summary["placement"] == "host"  # read from the map, not into memory
    assert 0 <= summary["knn_top1"] <= 1 and 0 <= summary["knn_top1_raw"] <= 1
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["data"]["options"] == {"size": 24}  # 1.5 x the 16-px views, recorded for eval and resume
    assert open_store(default_store_dir(photos, 24) / "train").count == 12

    code, out, err = run_cli(capsys, "eval", run, "--protocol", "knn", "--device", "cpu")
    assert code == 0, err
    code, out, err = run_cli(capsys, "embed", run, "--data", f"folder:{photos}", "--out", tmp_path / "e.npy")
    assert code == 0 and "wrote 4 embeddings" in out, err
