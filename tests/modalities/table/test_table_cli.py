"""Tables from the command line: every table method trains, evaluates, embeds and reports end to end
on a small real table; a user's own CSV is pretrained on and new rows embedded with the training
fit; bad tables are one-line errors with exit status 2."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from cli_helpers import run_cli
from selfsup.data.sources import load_dataset
from selfsup.encoder import load_encoder
from selfsup.modalities.table import sources

TABLE_METHODS = ("scarf", "vime", "subtab", "tjepa", "dae", "vicreg")


def cancer_csv(path, rows=None) -> list[int]:
    """scikit-learn's breast-cancer rows (the real file) written as a user's CSV."""
    table = sources.TABLES["breast-cancer"]
    raw = sources.read_named(table, sources.find(table))
    rows = list(range(raw.n_rows)) if rows is None else rows
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(raw.names)
        for i in rows:
            w.writerow([c[i] for c in raw.columns])
    return rows


@pytest.mark.parametrize(
    "content, options, match",
    [
        ("a,b,y\n", [], "has a header but no rows"),
        ("a,b,y\n1,2,0\n3,4,1\n", ["--set", "data.target=label"], "has no column 'label' to use as the target"),
        (
            "a,b,y\n1,x,0\n3,4,1\n",
            ["--set", "data.target=y", "--set", "data.options.types={b: numeric}"],
            "column 'b' cannot be numeric: it holds 'x'",
        ),
    ],
)
def test_a_bad_table_is_a_one_line_error(capsys, tmp_path, content, options, match):
    (tmp_path / "t.csv").write_text(content)
    code, _, err = run_cli(capsys, "train", "--method", "scarf", "--data", f"table:{tmp_path / 't.csv'}", *options)
    assert code == 2 and match in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_methods_that_do_not_fit_tables_are_named(capsys):
    code, _, err = run_cli(capsys, "train", "--method", "dino", "--data", "breast-cancer")
    assert code == 2 and "dino does not work on table data" in err and "scarf" in err and "tjepa" in err


@pytest.mark.slow
@pytest.mark.parametrize("method", TABLE_METHODS)
def test_every_table_method_trains_evaluates_embeds_and_reports(capsys, tmp_path, method):
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", f"{method}-breast-cancer", "--out", run)
    assert code == 0, err
    diagnostics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any(e.get("event") == "diagnostics" and e.get("rankme", 0) > 1 for e in diagnostics)
    code, out, err = run_cli(capsys, "eval", run, "--protocol", "knn,linear,lowshot,mlp,hgb", "--json")
    assert code == 0, err
    result = json.loads(out)
    for key in ("knn_top1", "linear_top1", "lowshot_1pct_top1", "lowshot_10pct_top1", "mlp_top1", "hgb_top1"):
        assert 0 <= result[key] <= 1 and f"{key}_raw" in result, key
    assert result["raw_name"] == "raw features" and result["linear_top1_raw"] > 0.9
    code, out, err = run_cli(capsys, "embed", run, "--data", "breast-cancer", "--out", tmp_path / "e.npy")
    assert code == 0, err
    emb = np.load(tmp_path / "e.npy")
    encoder = load_encoder(run)
    data = load_dataset("breast-cancer", input_spec=encoder.input_spec)
    assert emb.shape == (len(data.test), encoder.feature_dim)
    with torch.no_grad():
        assert np.allclose(emb, encoder(data.test.float()).numpy(), atol=1e-5)
    code, out, err = run_cli(capsys, "report", run, "--out", tmp_path / "report.html")
    assert code == 0, err
    page = (tmp_path / "report.html").read_text()
    assert "alt='views'" in page and "alt='map'" in page


@pytest.mark.slow
def test_pretrain_on_your_own_csv_then_embed_new_rows_with_the_training_fit(capsys, tmp_path):
    cancer_csv(tmp_path / "mine.csv")
    new_rows = cancer_csv(tmp_path / "new.csv", rows=[3, 1, 4, 1, 5])
    run = tmp_path / "run"
    code, _, err = run_cli(
        capsys,
        "train",
        "scarf-breast-cancer",
        "--data",
        f"table:{tmp_path / 'mine.csv'}",
        "--set",
        "data.target=diagnosis",
        "--out",
        run,
    )
    assert code == 0, err
    code, out, err = run_cli(capsys, "eval", run, "--protocol", "linear,mlp", "--mlp-search", "--json")
    assert code == 0 and json.loads(out)["linear_top1"] > 0.85, err
    mlp = json.loads(out)["mlp"]  # tuned for the embeddings and for the raw columns separately
    assert len(mlp["search"]) == len(mlp["raw"]["search"]) == 12 and "chosen" in mlp["raw"]
    code, out, err = run_cli(
        capsys,
        "embed",
        run,
        "--data",
        f"table:{tmp_path / 'new.csv'}",
        "--split",
        "train",
        "--out",
        tmp_path / "new.npy",
    )
    assert code == 0, err
    emb = np.load(tmp_path / "new.npy")
    # The same rows as the training table encodes them (its fit), in the new file's order.
    encoder = load_encoder(run)
    whole = load_dataset(
        f"table:{tmp_path / 'mine.csv'}", options={"target": "diagnosis", "split": "all"}, input_spec=encoder.input_spec
    )
    with torch.no_grad():
        expected = encoder(whole.train[new_rows].float()).numpy()
    assert emb.shape == (5, encoder.feature_dim) and np.allclose(emb, expected, atol=1e-5)
    code, _, err = run_cli(capsys, "embed", run, "--data", f"table:{tmp_path / 'new.csv'}", "--out", tmp_path / "x.npy")
    assert code == 2 and "use --split train" in err
