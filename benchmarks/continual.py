"""Continual pretraining in two stages: repeated cosine against the infinite schedule, same budget.

    python -m benchmarks.continual [--method simclr] [--epochs 8] [--subset 4000] [--out runs/continual]

Fashion-MNIST split by class: stage A pretrains on classes 0-4, stage B continues on classes 5-9
(``--init-from`` the stage-A run), each on a fixed random ``--subset`` of its half's training
images, at the CPU scaling of ``benchmarks/fashion_subset.py`` (resnet-small at 16x16, 1 channel,
batch 256, the method's digits heads). Two schedules over the same epochs:

* ``cosine``: each stage a full warm-up + cosine decay (the repeated cosine of continual
  pretraining: stage B warms up again from its peak);
* ``infinite`` (Singh et al., "Beyond Cosine Decay", the infinite schedule): stage A warms up,
  cools down to a constant rate and stays there (no anneal); stage B continues at that constant
  rate without a new warm-up and anneals over its last quarter.

After each stage, weighted kNN (k=200, T=0.1) of the stage's encoder on each half's test split
(the half's full training split as memory), so the table shows learning on B and forgetting of A.
Writes one JSON line per (schedule, stage) to ``<out>/results.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from selfsup.config import build_config, read_recipe
from selfsup.data.sources import load_dataset
from selfsup.encoder import load_encoder, preprocess_fn
from selfsup.evaluate.features import extract_features
from selfsup.evaluate.knn import knn_top1
from selfsup.training import train

HALVES = {"A": range(0, 5), "B": range(5, 10)}
SCALE = ["model.backbone=resnet-small", "augment.size=16", "augment.channels=1", "eval.diagnose_every=0"]


def write_halves(out: Path) -> dict[str, Path]:
    """Fashion-MNIST's two halves by class as npz files (real images, labels kept)."""
    d = load_dataset("fashion-mnist")
    paths = {}
    for name, classes in HALVES.items():
        path = out / f"fashion-{name}.npz"
        if not path.exists():
            tr = torch.isin(d.train_labels, torch.tensor(list(classes)))
            te = torch.isin(d.test_labels, torch.tensor(list(classes)))
            np.savez(
                path,
                x_train=d.train[tr, 0].numpy(),
                y_train=d.train_labels[tr].numpy(),
                x_test=d.test[te, 0].numpy(),
                y_test=d.test_labels[te].numpy(),
            )
        paths[name] = path
    return paths


def knn_on_halves(run: Path, halves: dict[str, Path]) -> dict[str, float]:
    encoder = load_encoder(run)
    out = {}
    for name, path in halves.items():
        d = load_dataset(f"npz:{path}")
        f = preprocess_fn(encoder)
        train_f = extract_features(encoder, d.train, f, 512, "cpu")
        test_f = extract_features(encoder, d.test, f, 512, "cpu")
        out[f"knn_{name}"] = knn_top1(train_f, d.train_labels, test_f, d.test_labels, k=200, temperature=0.1)
    return out


def schedule_sets(schedule: str, stage: str, epochs: int) -> list[str]:
    warm = "optim.warmup_epochs=2"
    if schedule == "cosine":
        return [warm]
    cooldown = max(1, epochs // 2)
    if stage == "A":  # warm-up, cool-down to the constant rate, constant: no anneal
        return [warm, "optim.schedule=infinite", f"optim.cooldown_epochs={cooldown}", "optim.anneal_epochs=0"]
    return [
        "optim.warmup_epochs=0",
        "optim.schedule=infinite",
        "optim.cooldown_epochs=0",
        f"optim.anneal_epochs={max(1, epochs // 4)}",
        "optim.final_lr_ratio=0.01",
    ]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default="simclr")
    ap.add_argument("--epochs", type=int, default=8, help="epochs per stage")
    ap.add_argument("--subset", type=int, default=4000, help="training images per stage")
    ap.add_argument("--schedules", default="cosine,infinite")
    ap.add_argument("--out", default="runs/continual")
    ap.add_argument("--set", action="append", default=[])
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    halves = write_halves(out)
    results = out / "results.jsonl"
    recorded = {}
    if results.exists():
        for line in results.read_text().splitlines():
            r = json.loads(line)
            recorded[(r["method"], r["schedule"], r["stage"], r["epochs"], r["subset"])] = r
    digits = read_recipe(f"{args.method}-digits").get("method_args", {})
    heads = [f"method_args.{k}={v}" for k, v in digits.items() if "hidden" in k or k.endswith("_dim")]
    for schedule in args.schedules.split(","):
        previous = None
        for stage in ("A", "B"):
            run = out / f"{args.method}-{schedule}-{stage}"
            sets = [
                f"data.name=npz:{halves[stage]}",
                f"data.subset={args.subset}",
                *SCALE,
                *heads,
                *schedule_sets(schedule, stage, args.epochs),
                *args.set,
            ]
            cfg = build_config(
                f"{args.method}-fashion-mnist",
                sets,
                epochs=args.epochs,
                batch_size=256,
                init_from=str(previous) if previous else None,
            )
            key = (args.method, schedule, stage, args.epochs, args.subset)
            if key in recorded and (run / "summary.json").exists():
                # A stage finished and recorded earlier: say so once, do not record it again.
                print(json.dumps(recorded[key]), flush=True)
                previous = run
                continue
            start = time.perf_counter()
            summary = (
                train(cfg, out=run)
                if not (run / "summary.json").exists()
                else json.loads((run / "summary.json").read_text())
            )
            row = {
                "method": args.method,
                "schedule": schedule,
                "stage": stage,
                "epochs": args.epochs,
                "subset": args.subset,
                "train_seconds": summary.get("train_seconds"),
                "wall_seconds": round(time.perf_counter() - start, 1),
                **knn_on_halves(run, halves),
            }
            print(json.dumps(row), flush=True)
            with open(results, "a") as f:
                f.write(json.dumps(row) + "\n")
            previous = run


if __name__ == "__main__":
    main()
