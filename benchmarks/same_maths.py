"""Same maths: every step's loss of the digits recipes, recorded once and compared bit for bit.

    python -m benchmarks.same_maths record benchmarks/results/same-maths-fef551e.json [RECIPE ...]
    python -m benchmarks.same_maths check  benchmarks/results/same-maths-fef551e.json [RECIPE ...]

Each recipe runs as a user would run it, through the command line:

    selfsup train <recipe> --epochs 2 --set train.threads=1 --set train.log_every=1 --set seed=0

and the per-step losses are read back from the run's ``metrics.jsonl`` (JSON floats round-trip
float64 exactly, so "equal" here is bit-identical). A refactoring that claims to change no
numerics must pass ``check`` on the machine that recorded the reference: float kernels differ
between CPU instruction sets, so a reference is only meaningful on the machine that wrote it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

DEFAULT_RECIPES = [
    "byol-digits",
    "simclr-digits",
    "vicreg-digits",
    "barlowtwins-digits",
    "dino-digits",
    "swav-digits",
    "mocov2-digits",
    "mae-digits",
    "ijepa-digits",
    # beyond the nine: every other shipped digits recipe
    "mocov3-digits",
    "nnclr-digits",
    "simsiam-digits",
    "myow-digits",
    "rotnet-digits",
    "gmml-digits",
    "sit-digits",
    "mp3-digits",
    "dino-vit-digits",
]
ARGS = ["--epochs", "2", "--set", "train.threads=1", "--set", "train.log_every=1", "--set", "seed=0"]


def step_losses(recipe: str) -> list[float]:
    """Train ``recipe`` for two epochs in a fresh process; the loss of every step, in order."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "selfsup", "train", recipe, *ARGS, "--out", str(out)]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            raise SystemExit(f"{recipe}: training failed ({done.returncode}): {done.stderr.strip()[-500:]}")
        events = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [e["loss"] for e in events if e["event"] == "step"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("action", choices=["record", "check"])
    p.add_argument("reference", type=Path)
    p.add_argument("recipes", nargs="*", default=None)
    args = p.parse_args(argv)
    recipes = args.recipes or DEFAULT_RECIPES

    if args.action == "record":
        import torch

        ref = {
            "command": "selfsup train RECIPE " + " ".join(ARGS),
            "machine": platform.processor() or platform.machine(),
            "torch": torch.__version__,
            "losses": {},
        }
        for recipe in recipes:
            ref["losses"][recipe] = step_losses(recipe)
            print(f"{recipe:<22} {len(ref['losses'][recipe])} steps, last loss {ref['losses'][recipe][-1]!r}")
        args.reference.parent.mkdir(parents=True, exist_ok=True)
        args.reference.write_text(json.dumps(ref, indent=1) + "\n")
        return 0

    ref = json.loads(args.reference.read_text())["losses"]
    failed = 0
    for recipe in recipes:
        if recipe not in ref:
            print(f"{recipe:<22} not in the reference")
            failed += 1
            continue
        got, want = step_losses(recipe), ref[recipe]
        first = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), None)
        if len(got) != len(want) or first is not None:
            where = f"step {first + 1}: {got[first]!r} != {want[first]!r}" if first is not None else "step counts"
            print(f"{recipe:<22} DIFFERS ({len(got)} vs {len(want)} steps; first difference at {where})")
            failed += 1
        else:
            print(f"{recipe:<22} identical ({len(got)} steps)")
    print("all identical" if not failed else f"{failed} recipe(s) differ")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
