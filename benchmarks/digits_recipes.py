"""The digits recipes trained by two versions of the library: what a change of numerics moved.

    python -m benchmarks.digits_recipes --src /tmp/old/src --tag fef551e [RECIPE ...]   # before
    python -m benchmarks.digits_recipes --src src --tag HEAD [RECIPE ...]               # after
    python -m benchmarks.digits_recipes --table                                         # both

Each recipe runs as a user runs it, through the command line of the library found at ``--src``
(a checkout's ``src``, e.g. a ``git worktree`` of the older commit):

    selfsup train <recipe> --set train.threads=1 --set seed=0 --out <out>/<tag>/<recipe>

with the recipe's full budget, and its summary (weighted kNN top-1 on the test digits, raw pixels,
training seconds) is appended as one JSON line to ``<out>/results.jsonl``. A finished run is read
again, not retrained. One seed: the seed-to-seed spread of the demo recipe is about 0.014
(BENCHMARKS.md), so a difference smaller than that is not a finding.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

# The digits recipes whose method or recipe issue 17 changed (optimiser forms, heads, losses).
DEFAULT = ["simclr", "barlowtwins", "mocov3", "dino", "myow", "byol", "vicreg", "swav", "nnclr", "simsiam"]


def commit_of(src: Path) -> str:
    out = subprocess.run(["git", "-C", str(src), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def run(recipe: str, src: Path, tag: str, out: Path) -> dict:
    folder = out / tag / recipe
    summary = folder / "summary.json"
    if not (summary.is_file() and json.loads(summary.read_text()).get("finished")):
        cmd = [sys.executable, "-m", "selfsup", "train", recipe, "--set", "train.threads=1", "--set", "seed=0"]
        cmd += ["--resume", str(folder)] if summary.is_file() else ["--out", str(folder)]
        env = {**os.environ, "PYTHONPATH": str(src.resolve()), "OMP_NUM_THREADS": "1"}
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            return {"recipe": recipe, "tag": tag, "error": (done.stderr.strip().splitlines() or ["?"])[-1]}
    s = json.loads(summary.read_text())
    return {
        "recipe": recipe,
        "tag": tag,
        "commit": commit_of(src),
        "knn_top1": s.get("knn_top1"),
        "knn_top1_raw": s.get("knn_top1_raw"),
        "epochs": s.get("epochs"),
        "train_seconds": s.get("train_seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, 1 thread",
    }


def table(lines: list[dict]) -> str:
    latest: dict[tuple[str, str], dict] = {}
    for r in lines:
        if "error" not in r:
            latest[(r["recipe"], r["tag"])] = r
    tags = list(dict.fromkeys(t for _, t in latest))
    recipes = list(dict.fromkeys(r for r, _ in latest))
    head = "| recipe | " + " | ".join(f"kNN top-1, {t}" for t in tags) + " | change |"
    rows = [head, "|---|" + "---:|" * (len(tags) + 1)]
    for recipe in recipes:
        vals = [latest.get((recipe, t), {}).get("knn_top1") for t in tags]
        cells = [f"{v:.4f}" if v is not None else "" for v in vals]
        change = f"{vals[-1] - vals[0]:+.4f}" if len(vals) > 1 and None not in (vals[0], vals[-1]) else ""
        rows.append(f"| {recipe} | " + " | ".join(cells) + f" | {change} |")
    return "\n".join(rows)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("recipes", nargs="*", help="method names (their -digits recipe) or recipe names")
    ap.add_argument("--src", default="src", help="the library's source folder to run")
    ap.add_argument("--tag", default=None, help="a name for this version (default: its commit)")
    ap.add_argument("--out", default="runs/digits-recipes")
    ap.add_argument("--table", action="store_true", help="print the table of <out>/results.jsonl, run nothing")
    args = ap.parse_args(argv)
    out = Path(args.out)
    log = out / "results.jsonl"
    if args.table:
        print(table([json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []))
        return
    src = Path(args.src)
    tag = args.tag or commit_of(src)
    out.mkdir(parents=True, exist_ok=True)
    for name in args.recipes or DEFAULT:
        recipe = name if name.endswith("-digits") else f"{name}-digits"
        row = run(recipe, src, tag, out)
        print(json.dumps(row), flush=True)
        with log.open("a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
