"""Every method under the Fashion-MNIST protocol of ../shared/benchmarks.md, one epoch budget for all.

    python -m benchmarks.fashion_protocol [METHOD ...] [--epochs 15] [--warmup-epochs 2] [--out runs/fmnist-protocol]
    python -m benchmarks.fashion_protocol --table [--out runs/fmnist-protocol]

Per method: its shipped ``<method>-fashion-mnist`` recipe unchanged (ResNet-18 with the CIFAR stem,
32x32 views, 3 channels, batch 512, the recipe's optimiser, heads and augmentations) on the full
60,000 training images, with only the epoch budget and the warm-up set here, the same for every
method (a 10-epoch warm-up, as most recipes carry for 200 epochs, would be most of a short run).
Schedules a recipe states in epochs inside its method settings (DINO's teacher-temperature
warm-up, MYOW's mining warm-up and ramp-up, SwAV's queue start and prototype freezing) are scaled
by budget / recipe epochs (at least 1), so that each method runs the same phases in a short run as
in its recipe; the row records the scaled values.
A method whose run folder already holds an unfinished run (``--stop-after N`` stops each run after
N epochs with a checkpoint) is continued from it; a finished one is only evaluated again.
Evaluation on frozen backbone features: weighted kNN (k=200, T=0.1) and the linear probe, the full
training split as memory / probe set and the test split as queries, with the same protocols on raw
pixels. One JSON line per method is printed and appended to ``<out>/results.jsonl``: accuracies,
training seconds, training images/s, peak device memory (of training and the run's closing kNN),
device and versions. Meant for a GPU; it
runs anywhere, slowly. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from fashion_subset import RESNET_METHODS, append_row, print_table
from selfsup.config import build_config, read_recipe
from selfsup.evaluate.run import evaluate_run
from selfsup.methods import METHODS
from selfsup.training import train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("methods", nargs="*", help="recipe names without -fashion-mnist (default: all 12 ResNet methods)")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--warmup-epochs", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default="runs/fmnist-protocol")
    ap.add_argument("--protocols", default="knn,linear")
    ap.add_argument("--set", action="append", default=[], help="extra config overrides (key=value), every method")
    ap.add_argument("--table", action="store_true", help="print the results as a markdown table")
    ap.add_argument(
        "--stop-after",
        type=int,
        default=0,
        help="stop each run after this many epochs (a checkpoint is kept); running the same command "
        "again continues it: long runs in fixed-length device slots",
    )
    ap.add_argument(
        "--deadline",
        type=float,
        default=0,
        help="seconds from start: start no method that would end past it at the longest time one took so far "
        "(for fixed-length slots on a shared GPU)",
    )
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.table:
        return print_table(out / "results.jsonl")
    methods = args.methods or RESNET_METHODS
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise SystemExit(f"unknown method {unknown[0]}; known: {', '.join(sorted(METHODS))}")
    started, longest = time.time(), 0.0
    for method in methods:
        if args.deadline and time.time() - started + longest > args.deadline:
            print(f"deadline: not starting {', '.join(methods[methods.index(method) :])}", flush=True)
            break
        sets = [
            f"optim.warmup_epochs={args.warmup_epochs}",
            "train.knn_every=0",
            "eval.diagnose_every=0",
            f"train.checkpoint_every={args.epochs}",
            f"train.stop_after={args.stop_after}",
        ]
        scaled = scaled_schedules(read_recipe(f"{method}-fashion-mnist"), args.epochs)
        sets += [f"method_args.{k}={v}" for k, v in scaled.items()]
        cfg = build_config(f"{method}-fashion-mnist", sets + args.set, epochs=args.epochs, device=args.device)
        cuda = torch.cuda.is_available() and cfg.train.device != "cpu"
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        run = out / method
        before = json.loads((run / "summary.json").read_text()) if (run / "summary.json").is_file() else None
        start = time.time()
        if before is None:
            summary = train(cfg, out=run)
        elif not before.get("finished"):  # a run stopped by --stop-after (or interrupted): continue it
            print(f"{method}: continuing {run} from epoch {before.get('epochs_done', '?')}", flush=True)
            summary = train(resume=run)
        else:
            summary = before  # finished earlier: evaluate again only
        wall = time.time() - start
        if not summary.get("finished"):
            print(
                f"{method}: {summary.get('epochs_done')} of {args.epochs} epochs done; the same command continues it",
                flush=True,
            )
            longest = max(longest, time.time() - start)
            continue
        peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
        ev = evaluate_run(out / method, device=args.device, protocols=args.protocols)
        row = {
            "method": method,
            "epochs": args.epochs,
            "warmup_epochs": args.warmup_epochs,
            "batch_size": cfg.train.batch_size,
            "lr": cfg.optim.lr,
            "train_seconds": summary["train_seconds"],
            "wall_seconds": round(wall, 1),
            "images_per_second": summary["images_per_second"],
            "peak_memory_gb": round(peak, 2) if peak is not None else None,
            "knn_top1": ev["knn_top1"],
            "knn_top1_raw": ev.get("knn_top1_raw"),
            "linear_top1": ev.get("linear_top1"),
            "linear_top1_raw": ev.get("linear_top1_raw"),
            "final_loss": last_epoch_loss(out / method),
            "hardware": torch.cuda.get_device_name() if cuda else platform.processor() or platform.machine(),
            "torch": torch.__version__,
            "scaled": scaled,
            "sets": args.set,
            "evaluated_again": bool(before and before.get("finished")),
        }
        append_row(out, row)
        longest = max(longest, time.time() - start)


def scaled_schedules(recipe: dict, epochs: int) -> dict:
    """The recipe's epoch-valued method settings, scaled to an ``epochs`` budget (at least 1)."""
    full = recipe["train"]["epochs"]
    return {
        k: max(1, round(v * epochs / full))
        for k, v in recipe.get("method_args", {}).items()
        if k.endswith(("_epochs", "_epoch")) and isinstance(v, int) and v > 0 and epochs < full
    }


def last_epoch_loss(run: Path) -> float | None:
    """The mean loss of the last epoch, from the run's metrics.jsonl."""
    losses = [
        r["loss"]
        for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
        if r.get("event") == "epoch"
    ]
    return losses[-1] if losses else None


if __name__ == "__main__":
    main()
