"""SimCLR's temperature against the uniformity-tolerance trade-off of Wang & Liu 2021 ("Understanding
the Behaviour of Contrastive Loss", CVPR, arXiv:2012.09740): a lower temperature should give a more
uniform embedding (lower uniformity, Wang & Isola's log E exp(-2 ||u - v||^2)) that is less tolerant
(lower mean similarity of same-class pairs), and the accuracy should peak in between.

    python -m benchmarks.temperature_sweep [--data digits,fashion] [--temperatures 0.05,0.1,0.2,0.5,1.0]
        [--fashion-epochs 24] [--subset 4000] [--out runs/temperature-sweep] [--table]

Per data set and temperature, one SimCLR run, everything else fixed:

* ``digits``: the shipped ``simclr-digits`` recipe, its full 60 epochs (1,437 training digits);
* ``fashion``: the CPU subset of ``benchmarks/fashion_subset.py`` (the ``simclr-fashion-mnist``
  recipe on a fixed random 4,000 training images, resnet-small at 16x16, 1 channel, batch 256,
  2 warm-up epochs, the 512-128 projector of ``simclr-digits``), ``--fashion-epochs`` epochs.

Evaluated with ``selfsup eval``'s ``knn`` and ``layers`` protocols on the full splits: weighted kNN
(k=200, T=0.1) and the linear probe on the backbone's features and on each projector layer, and
the uniformity (a seeded sample of at most 2,048 test images) and tolerance (every test image) of
the L2-normalised test features of each: the backbone's, and the projector's output (the
embedding the loss sees, where the paper measures them). Plus, from training, the last epoch's
diagnostics on the probe batch (512 training images). Each run's result is one JSON line in
``<out>/results.jsonl`` (a finished run is evaluated again, not retrained, when the command is
repeated); at the end everything is written to ``benchmarks/results/temperature-sweep-<date>.json``
and ``--table`` prints the markdown tables.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time
from pathlib import Path

import torch

from selfsup.config import build_config, read_recipe
from selfsup.errors import TrainingError
from selfsup.evaluate.run import evaluate_run
from selfsup.training import train

from .fashion_subset import FAMILY_SETS

RESULTS = Path(__file__).resolve().parent / "results"


def config(data: str, temperature: float, args):
    """The run's config: the shipped recipe, only the temperature changed (and, for the Fashion-MNIST
    subset, the CPU scaling of benchmarks/fashion_subset.py)."""
    common = [f"method_args.temperature={temperature}", "train.device=cpu", f"train.threads={args.threads}"]
    common += ["eval.diagnose_every=1", "train.checkpoint_every=1000", "train.log_every=10"]
    if data == "digits":
        return build_config("simclr-digits", common)
    heads = read_recipe("simclr-digits")["method_args"]
    sets = [
        f"data.subset={args.subset}",
        *FAMILY_SETS["resnet"],
        "optim.warmup_epochs=2",
        f"method_args.proj_hidden={heads['proj_hidden']}",
        f"method_args.proj_dim={heads['proj_dim']}",
    ]
    return build_config("simclr-fashion-mnist", sets + common, epochs=args.fashion_epochs, batch_size=256)


def run_one(data: str, temperature: float, args, out: Path) -> dict:
    run = out / f"{data}-t{temperature:g}"
    cfg = config(data, temperature, args)
    start = time.time()
    summary_path = run / "summary.json"
    if not (summary_path.is_file() and json.loads(summary_path.read_text()).get("finished")):
        try:
            train(cfg, out=run)
        except TrainingError as e:  # a non-finite loss: the temperature's result, recorded
            return {"data": data, "temperature": temperature, "epochs": cfg.train.epochs, "failed": str(e)}
    wall = time.time() - start
    summary = json.loads(summary_path.read_text())
    ev = evaluate_run(run, device="cpu", protocols="knn,layers")
    layers = {layer["name"]: layer for layer in ev["layers"]["layers"]}
    proj = [name for name in layers if name.startswith("projector.")]
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    diag = [m for m in metrics if m.get("event") == "diagnostics"]
    losses = [m["loss"] for m in metrics if m.get("event") == "epoch" and "loss" in m]
    keep = ("uniformity", "tolerance", "proj_uniformity", "proj_tolerance", "alignment")
    return {
        "data": data,
        "temperature": temperature,
        "epochs": cfg.train.epochs,
        "steps": summary["epochs_done"] * summary["steps_per_epoch"],
        "subset": cfg.data.subset,
        "knn_top1": ev["knn_top1"],
        "knn_top1_raw": ev.get("knn_top1_raw"),
        "linear_top1": layers["backbone"]["linear_top1"],
        "backbone": {k: layers["backbone"][k] for k in ("knn_top1", "linear_top1", "uniformity", "tolerance")},
        "projector_output": {k: layers[proj[-1]][k] for k in ("knn_top1", "linear_top1", "uniformity", "tolerance")},
        "layers": ev["layers"]["layers"],
        "raw": ev["layers"].get("raw"),
        "probe_batch_last_epoch": {k: diag[-1][k] for k in keep if diag and k in diag[-1]},
        "final_epoch_loss": losses[-1] if losses else None,
        "train_seconds": summary["train_seconds"],
        "images_per_second": summary["images_per_second"],
        "wall_seconds": round(wall, 1),
        "eval_seconds": ev["seconds"],
        "load_average": [round(x, 1) for x in os.getloadavg()],
    }


def table(rows: list[dict]) -> str:
    lines = []
    for data in dict.fromkeys(r["data"] for r in rows):
        mine = sorted((r for r in rows if r["data"] == data), key=lambda r: r["temperature"])
        r0 = next((r for r in mine if "failed" not in r), mine[0])
        budget = f"{r0['epochs']} epochs, {r0.get('steps')} steps" + (
            f", {r0['subset']} images" if r0.get("subset") else ""
        )
        lines += [
            f"**{data}** ({budget}); uniformity: lower is more uniform; tolerance: mean cosine similarity of "
            "same-class test pairs",
            "",
            "| T | kNN | linear | backbone uniformity | backbone tolerance | projector kNN | projector linear "
            "| projector uniformity | projector tolerance | train s |",
            "|---" * 10 + "|",
        ]
        for r in mine:
            if "failed" in r:
                lines.append(f"| {r['temperature']:g} | failed: {r['failed']} |" + " |" * 8)
                continue
            b, p = r["backbone"], r["projector_output"]
            lines.append(
                f"| {r['temperature']:g} | {r['knn_top1']:.3f} | {r['linear_top1']:.3f} | {b['uniformity']:.3f} "
                f"| {b['tolerance']:.3f} | {p['knn_top1']:.3f} | {p['linear_top1']:.3f} | {p['uniformity']:.3f} "
                f"| {p['tolerance']:.3f} | {r['train_seconds']:.0f} |"
            )
        raw = r0.get("raw")
        if raw:
            lines.append(
                f"| raw pixels | {raw['knn_top1']:.3f} | {raw['linear_top1']:.3f} | {raw['uniformity']:.3f} "
                f"| {raw['tolerance']:.3f} | | | | | |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="digits,fashion", help="comma-separated: digits, fashion")
    ap.add_argument("--temperatures", default="0.05,0.1,0.2,0.5,1.0")
    ap.add_argument("--fashion-epochs", type=int, default=24)
    ap.add_argument("--subset", type=int, default=4000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="runs/temperature-sweep")
    ap.add_argument("--table", action="store_true", help="print the tables of <out>/results.jsonl, run nothing")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "results.jsonl"
    if args.table:
        print(table(latest(log)))
        return
    for data in [d.strip() for d in args.data.split(",") if d.strip()]:
        if data not in ("digits", "fashion"):
            raise SystemExit(f"unknown data {data!r}: choose digits or fashion")
        for t in [float(x) for x in args.temperatures.split(",")]:
            row = run_one(data, t, args, out)
            print(json.dumps({k: v for k, v in row.items() if k != "layers"}), flush=True)
            with open(log, "a") as f:
                f.write(json.dumps(row) + "\n")
    rows = latest(log)  # this command's and earlier ones' (another --data given to a second process)
    date = datetime.date.today().isoformat()
    record = {
        "command": "python -m benchmarks.temperature_sweep",
        "arguments": {k: v for k, v in vars(args).items() if k != "table"},
        "date": date,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "note": "2-core CPU shared with other jobs: times move; each row holds the load average after it",
        },
        "rows": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"temperature-sweep-{date}.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    print(table(rows))
    print(f"wrote {path}")


def latest(log: Path) -> list[dict]:
    """The last result of each (data, temperature) in ``log``."""
    rows = {}
    for line in log.read_text().splitlines():
        r = json.loads(line)
        rows[(r["data"], r["temperature"])] = r
    return sorted(rows.values(), key=lambda r: (r["data"], r["temperature"]))


if __name__ == "__main__":
    main()
