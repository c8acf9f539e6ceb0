"""G-SimCLR against SimCLR: the same recipe, seed and budget, only the batch order differs.

    python -m benchmarks.gsimclr [--data digits] [--seeds 0,1,2] [--epochs N] [--out runs/gsimclr]
                                 [--set key=value ...]

For each seed, ``simclr-<data>`` and ``gsimclr-<data>`` (the same network, loss, views and
optimiser; G-SimCLR adds the pseudo-label batches: a denoising autoencoder, k-means of its codes
into as many clusters as a batch holds, batches that cycle through the clusters) are trained and
evaluated with weighted kNN (k=200, T=0.1, the recipes' setting) and the linear probe on the
data's test split. The autoencoder's time is part of G-SimCLR's training time. One JSON line per
run goes to ``<out>/results.jsonl``; a finished run folder is evaluated again without training.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

import selfsup
from selfsup.config import build_config
from selfsup.evaluate.run import evaluate_run
from selfsup.runs import RunFolder


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="digits", help="digits or fashion-mnist (the recipes' data)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=None, help="default: the recipes' epochs")
    ap.add_argument("--out", default="runs/gsimclr")
    ap.add_argument("--set", action="append", default=[], help="overrides for both methods")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    machine = {
        "cpu": platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    for seed in [int(s) for s in args.seeds.split(",")]:
        for method in ("simclr", "gsimclr"):
            run = out / f"{method}-{args.data}-seed{seed}"
            cfg = build_config(f"{method}-{args.data}", [f"seed={seed}", *args.set], epochs=args.epochs)
            start = time.perf_counter()
            if not RunFolder(run).encoder.is_file():
                selfsup.train(cfg, out=str(run))
            summary = json.loads((run / "summary.json").read_text())
            res = evaluate_run(run, protocols=("knn", "linear"), device="cpu", write_summary=False)
            row = {
                "method": method,
                "data": args.data,
                "seed": seed,
                "epochs": cfg.train.epochs,
                "batch_size": cfg.train.batch_size,
                "train_seconds": summary.get("train_seconds"),
                "wall_seconds": round(time.perf_counter() - start, 1),
                "knn_top1": res["knn_top1"],
                "linear_top1": res["linear_top1"],
                "knn_top1_raw": res.get("knn_top1_raw"),
                "linear_top1_raw": res.get("linear_top1_raw"),
                "sets": args.set,
                "machine": machine,
            }
            print(json.dumps(row), flush=True)
            with open(out / "results.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
