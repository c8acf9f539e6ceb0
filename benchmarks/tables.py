"""Self-supervised learning on tables against raw features and gradient boosting (issue 15).

    python -m benchmarks.tables [--datasets adult,california] [--methods scarf,vime,subtab,tjepa,vicreg,dae]
                                [--seeds 5] [--runs runs/bench-tables] [--out benchmarks/results]
                                [--protocols linear,mlp,hgb] [--mlp-search]

Per dataset (its seeded 70/10/20 split, every scaler and vocabulary fitted on the training rows):
the raw input (numeric columns scaled, categorical columns one-hot) and, per method, the frozen
representation of the encoder its shipped ``<method>-<dataset>`` recipe trains, each under

* the linear probe (classification: ``linear``, logistic regression with its weight decay chosen on
  10% of the training split) or ridge regression (regression: ``ridge``, its penalty chosen the same
  way);
* T-JEPA's downstream MLP (``mlp``: early-stopped on 10% of the training split, ``--seeds`` seeds,
  mean and std; with ``--mlp-search`` its learning rate, dropout and width are chosen for each
  representation, raw input included, on the first seed's validation split);
* scikit-learn's HistGradientBoosting (``hgb``);

accuracy on the test split for classification, RMSE in target-std units and in the target's units
for regression; training and evaluation wall time; RankMe and the collapse alarm's last reading.
A run folder that already holds an encoder is evaluated again without training. Results go to
``<out>/tables-<date>.json`` (rewritten after every method) and a markdown section to
``<out>/tables.md``. One thread (``torch.set_num_threads(1)``): the figures are measured on shared
CPUs and are not speed claims.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import asdict
from datetime import date
from pathlib import Path

import torch

import selfsup
from selfsup.config import build_config
from selfsup.encoder import load_encoder, preprocess_fn
from selfsup.evaluate.features import extract_features
from selfsup.evaluate.linear import linear_probe
from selfsup.evaluate.protocols.hgb import hgb_protocol
from selfsup.evaluate.protocols.mlp import MLPSettings, mlp_protocol
from selfsup.evaluate.protocols.ridge import ridge_probe
from selfsup.modalities.table import raw_onehot, sources
from selfsup.runs import RunFolder

METHODS = ("scarf", "vime", "subtab", "tjepa", "vicreg", "dae")
DATASETS = ("adult", "california")
# The T-JEPA repository's own figures (github.com/jose-melo/t-jepa): its README's MLP row and the
# stored summaries of its +T-JEPA MLP runs (results/<data>/mlp/summary.json).
TJEPA_REPO = {
    "adult": {"readme_raw": 0.825, "readme_tjepa": 0.866, "summary": (0.8658, 0.0020), "measure": "accuracy"},
    "california": {"readme_raw": 0.518, "readme_tjepa": 0.468, "summary": (0.4681, 0.0375), "measure": "RMSE (std)"},
}


PROTOCOLS = ("linear", "mlp", "hgb")


def mlp_settings(seeds: int, search: bool = False) -> MLPSettings:
    return MLPSettings(seeds=seeds, search=search)


def evaluate(train_x, train_y, test_x, test_y, classes, seeds: int, protocols=PROTOCOLS, search=False) -> dict:
    """The protocols (linear, mlp, hgb) on one representation."""
    out, start = {}, time.perf_counter()
    if "linear" in protocols and classes:
        res = linear_probe(train_x, train_y, test_x, test_y, classes, seed=0)
        out["linear"] = {"top1": res["top1"], "weight_decay": res["weight_decay"]}
    elif "linear" in protocols:
        res = ridge_probe(train_x, train_y, test_x, test_y, seed=0)
        out["linear"] = {k: res[k] for k in ("rmse", "rmse_scaled", "alpha")}
    if "mlp" in protocols:
        res = mlp_protocol(train_x, train_y, test_x, test_y, classes, mlp_settings(seeds, search), seed=0)
        out["mlp"] = {k: v for k, v in res.items() if k != "runs"}
        out["mlp"]["epochs"] = [r["best_epoch"] for r in res["runs"]]
    if "hgb" in protocols:
        out["hgb"] = hgb_protocol(train_x, train_y, test_x, test_y, classes, seed=0)
    out["eval_seconds"] = round(time.perf_counter() - start, 1)
    return out


def last_diagnostics(run: Path) -> dict:
    """RankMe (and its fraction of the possible rank), normalised std and uniformity of the last
    diagnostics event of a run, and whether the collapse alarm rang."""
    diag, alarms = {}, 0
    for line in (run / "metrics.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event.get("event") == "diagnostics":
            diag = {k: event.get(k) for k in ("epoch", "rankme", "rankme_fraction", "norm_std_ratio", "uniformity")}
        alarms += event.get("event") == "collapse"
    return {**diag, "collapse_events": alarms}


def run_method(method: str, dataset: str, data, runs: Path, seeds: int, protocols=PROTOCOLS, search=False) -> dict:
    folder = runs / f"{method}-{dataset}"
    cfg = build_config(f"{method}-{dataset}", ["train.threads=1"])
    row = {"method": method, "recipe": f"{method}-{dataset}", "epochs": cfg.train.epochs}
    if not RunFolder(folder).encoder.is_file():  # not trained, or stopped part-way: continue it
        start = time.perf_counter()
        if (folder / "summary.json").is_file():  # its own clock holds the earlier sessions' seconds
            row["train_seconds"] = selfsup.train(resume=str(folder))["train_seconds"]
        else:
            selfsup.train(cfg, out=str(folder))
            row["train_seconds"] = round(time.perf_counter() - start, 1)
    else:
        row["train_seconds"] = json.loads((folder / "summary.json").read_text()).get("train_seconds")
    encoder = load_encoder(folder)
    feats = {
        s: extract_features(encoder, getattr(data, s), preprocess_fn(encoder), 2048, "cpu") for s in ("train", "test")
    }
    row["feature_dim"] = encoder.feature_dim
    row.update(
        evaluate(
            feats["train"],
            data.train_labels,
            feats["test"],
            data.test_labels,
            data.num_classes,
            seeds,
            protocols,
            search,
        )
    )
    row["diagnostics"] = last_diagnostics(folder)
    return row


def machine() -> dict:
    return {
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "selfsup": selfsup.__version__ if hasattr(selfsup, "__version__") else "",
        "note": "2 CPU cores shared with other jobs: wall times are not speed claims",
    }


def fmt(v, digits: int = 4) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def chosen(mlp: dict) -> str:
    """The MLP settings the search chose for a representation, or '-'."""
    c = mlp.get("chosen")
    return "-" if not c else f"{c['lr']:g} / {c['dropout']:g} / {c['hidden']}"


def markdown(results: dict, command: str) -> str:
    mlp = results["mlp_settings"]
    lines = [
        f"## Tables: self-supervised encoders against raw features ({results['date']})",
        "",
        f"Command: `{command}`. Machine: {results['machine']['cpu']}, torch {results['machine']['torch']}, "
        "one thread; wall times taken while other jobs shared the 2 cores (not speed claims).",
        "Protocol: each table's seeded 70/10/20 split (seed 0, stratified for classes), every scaler, vocabulary "
        "and target statistic fitted on the training rows only, pre-training on the training rows only; "
        "raw = numeric columns scaled, categorical columns one-hot. Linear = logistic regression (classes) or "
        "ridge (regression), penalty chosen on 10% of the training split; MLP = T-JEPA's downstream MLP "
        + (
            f"({mlp['depth']} layers, AdamW, up to "
            if mlp.get("search")
            else f"({mlp['depth']} layers of {mlp['hidden']}, dropout {mlp['dropout']}, AdamW at {mlp['lr']}, up to "
        )
        + f"{mlp['epochs']} epochs with early stopping (patience {mlp['patience']}) on 10% of the training split, "
        f"{results['seeds']} seeds, mean ± std"
        + (
            "; learning rate, dropout and width chosen per representation from a grid of 12 on the first seed's "
            "validation split, the column 'MLP lr / dropout / width'); "
            if mlp.get("search")
            else "); "
        )
        + "HGB = scikit-learn's HistGradientBoosting, early-stopped on 10% of the training split.",
        "",
    ]
    for dataset, block in results["datasets"].items():
        classes = block["task"] == "classification"
        search = bool(mlp.get("search"))
        extra = " MLP lr / dropout / width |" if search else ""
        lines.append(f"### {dataset} ({block['n_train']} train / {block['n_test']} test rows, {block['task']})")
        lines.append("")
        if classes:
            lines.append("| representation | dim | epochs | train s | linear | MLP | HGB | RankMe | eval s |" + extra)
            lines.append("|---|---|---|---|---|---|---|---|---|" + "---|" * search)
        else:
            lines.append(
                "| representation | dim | epochs | train s | ridge RMSE (std / units) | MLP RMSE (std) "
                "| MLP RMSE (units) | HGB RMSE (std / units) | RankMe | eval s |" + extra
            )
            lines.append("|---|---|---|---|---|---|---|---|---|---|" + "---|" * search)
        for row in ([block["raw"]] if "raw" in block else []) + block["methods"]:
            name = row.get("method", "raw features")
            diag = row.get("diagnostics") or {}
            rank = "-" if not diag else f"{diag.get('rankme', 0):.1f} ({diag.get('rankme_fraction', 0):.3f})"
            head = f"| {name} | {row['feature_dim']} | {row.get('epochs', '-')} | {row.get('train_seconds', '-')} "
            m, lin, h = row.get("mlp", {}), row.get("linear", {}), row.get("hgb", {})
            tail = f" {chosen(m)} |" if search else ""
            if classes:
                lines.append(
                    head + f"| {fmt(lin.get('top1'))} | {fmt(m.get('mean'))} ± {fmt(m.get('std'))} | "
                    f"{fmt(h.get('top1'))} | {rank} | {row['eval_seconds']} |" + tail
                )
            else:
                lines.append(
                    head + f"| {fmt(lin.get('rmse_scaled'))} / {fmt(lin.get('rmse'))} | {fmt(m.get('mean_scaled'))} ± "
                    f"{fmt(m.get('std_scaled'))} | {fmt(m.get('mean'))} ± {fmt(m.get('std'))} | "
                    f"{fmt(h.get('rmse_scaled'))} / {fmt(h.get('rmse'))} | {rank} | {row['eval_seconds']} |" + tail
                )
        repo = TJEPA_REPO.get(dataset)
        if repo:
            lines += [
                "",
                f"The T-JEPA repository's own MLP figures ({repo['measure']}): README raw {repo['readme_raw']} -> "
                f"+T-JEPA {repo['readme_tjepa']}; stored summary of its +T-JEPA MLP runs {repo['summary'][0]} ± "
                f"{repo['summary'][1]}.",
            ]
        lines.append("")
    return "\n".join(lines)


def merge(files: list[str], out: Path) -> None:
    """One result file and markdown section from the files of separate runs (their datasets joined)."""
    parts = [json.loads(Path(f).read_text()) for f in files]
    results = {**parts[0], "datasets": {}}
    results["command"] = " && ".join(p["command"] for p in parts)
    for part in parts:
        for name, block in part["datasets"].items():
            if name not in results["datasets"]:
                results["datasets"][name] = block
                continue
            results["datasets"][name]["methods"] += block["methods"]
            if "raw" in block:
                results["datasets"][name]["raw"] = block["raw"]
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"tables-{results['date']}.json"
    path.write_text(json.dumps(results, indent=1))
    (out / "tables.md").write_text(markdown(results, results["command"]))
    print(f"wrote {path} and {out / 'tables.md'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--runs", default="runs/bench-tables")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--skip-raw", action="store_true", help="leave out the raw-input rows (another run has them)")
    ap.add_argument("--protocols", default=",".join(PROTOCOLS), help="a subset of linear,mlp,hgb")
    ap.add_argument(
        "--mlp-search",
        action="store_true",
        help="choose the MLP's learning rate, dropout and width per representation on a validation split",
    )
    ap.add_argument(
        "--merge",
        nargs="+",
        metavar="JSON",
        help="only combine result files of separate runs (e.g. one process per dataset) into --out",
    )
    args = ap.parse_args()
    if args.merge:
        merge(args.merge, Path(args.out))
        return
    protocols = args.protocols.split(",")
    unknown = set(protocols) - set(PROTOCOLS)
    if unknown:
        ap.error(f"unknown protocol(s) {', '.join(sorted(unknown))}: choose from {', '.join(PROTOCOLS)}")
    torch.set_num_threads(1)
    command = "python -m benchmarks.tables " + " ".join(
        f"--{k.replace('_', '-')}" + ("" if v is True else f" {v}")
        for k, v in vars(args).items()
        if v != ap.get_default(k)
    )
    out, runs = Path(args.out), Path(args.runs)
    out.mkdir(parents=True, exist_ok=True)
    today = date.today().isoformat()
    results = {
        "date": today,
        "command": command.strip(),
        "machine": machine(),
        "seeds": args.seeds,
        "mlp_settings": asdict(mlp_settings(args.seeds, args.mlp_search)),
        "protocols": protocols,
        "datasets": {},
    }
    path = out / f"tables-{today}.json"
    for dataset in args.datasets.split(","):
        data = sources.load_named(dataset).to_dataset()
        spec = selfsup.modalities.get_modality("table").input_spec(data)
        raw = {s: raw_onehot(getattr(data, s), spec) for s in ("train", "test")}
        block = {
            "task": data.task,
            "n_train": len(data.train),
            "n_test": len(data.test),
            "target_std": float(data.train_labels.double().std(unbiased=False)) if data.task == "regression" else None,
            "methods": [],
        }
        if not args.skip_raw:
            print(f"{dataset}: raw features", flush=True)
            block["raw"] = {"feature_dim": raw["train"].shape[1]}
            block["raw"].update(
                evaluate(
                    raw["train"],
                    data.train_labels,
                    raw["test"],
                    data.test_labels,
                    data.num_classes,
                    args.seeds,
                    protocols,
                    args.mlp_search,
                )
            )
        results["datasets"][dataset] = block
        path.write_text(json.dumps(results, indent=1))
        for method in args.methods.split(","):
            print(f"{dataset}: {method}", flush=True)
            block["methods"].append(run_method(method, dataset, data, runs, args.seeds, protocols, args.mlp_search))
            path.write_text(json.dumps(results, indent=1))
            (out / "tables.md").write_text(markdown(results, results["command"]))
            print(json.dumps({k: block["methods"][-1].get(k) for k in ("method", "linear", "hgb")}), flush=True)
    (out / "tables.md").write_text(markdown(results, results["command"]))
    print(f"wrote {path} and {out / 'tables.md'}")


if __name__ == "__main__":
    main()
