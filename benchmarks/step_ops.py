"""How many tensor operations one training step issues, by part: a proxy for kernel launches.

    python -m benchmarks.step_ops [RECIPE] [--set k=v ...]

On a GPU a ResNet-18 step at 32x32 is bound by kernel launches, not by arithmetic (the H100
profile in BENCHMARKS.md: 28 ms of kernels in a 58 ms step), so the number of operations a step
issues is what decides its speed there. It does not depend on the machine, so it can be counted on
a CPU: the recipe runs on tiny inputs (8x8 views, batch 16, 1 thread) under ``torch.profiler`` and
the top-level ``aten::`` calls of 5 steps (after 3 warm-up steps) are counted per part: forward and
backward, the optimiser step, the method's ``after_step`` (momentum teachers), and the online probe
and kNN. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from selfsup.config import build_config
from selfsup.training import build, train_step

STEPS = 5


def count_aten(events, prefix: str) -> float:
    """Top-level aten calls under every event whose name starts with ``prefix``, per step."""
    total = 0
    for top in (e for e in events if e.name.startswith(prefix)):
        stack = list(top.cpu_children)
        while stack:
            e = stack.pop()
            if e.name.startswith("aten::"):
                total += 1  # its own children are the implementation of this one call
            else:
                stack.extend(e.cpu_children)
    return total / STEPS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("recipe", nargs="?", default="byol-fashion-mnist")
    ap.add_argument("--set", action="append", default=[])
    args = ap.parse_args()
    cfg = build_config(
        args.recipe,
        ["data.subset=512", "augment.size=8", "train.device=cpu", "train.threads=1", *args.set],
        batch_size=16,
    )
    s = build(cfg)
    generator = torch.Generator().manual_seed(0)
    batches = s.loader.batches(0, with_indices=True)

    def one(i: int) -> None:
        idx, batch = next(batches)
        with record_function("#forward-backward-optimiser"):
            out = train_step(s, batch, generator, i)
        with record_function("#after_step"):
            s.method.after_step(i + 1, 1000)
        with record_function("#online"):
            if s.online is not None:
                s.online.step(idx, out.get("features"))

    for i in range(3):
        one(i)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(3, 3 + STEPS):
            one(i)
    ev = prof.events()
    whole = count_aten(ev, "#forward-backward-optimiser")
    optimiser = count_aten(ev, "Optimizer.step")
    row = {
        "recipe": args.recipe,
        "torch": torch.__version__,
        "forward_backward": whole - optimiser,
        "optimiser_step": optimiser,
        "after_step": count_aten(ev, "#after_step"),
        "online_eval": count_aten(ev, "#online"),
    }
    row["total"] = sum(v for k, v in row.items() if isinstance(v, float))
    print(json.dumps(row))


if __name__ == "__main__":
    main()
