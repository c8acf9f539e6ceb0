"""Training throughput of a recipe: end to end against the compute-only ceiling, in one run.

    python -m benchmarks.throughput byol-fashion-mnist [--steps 50] [--device cuda] [--set k=v ...]

(a) ceiling: the same training step (forward, backward, optimiser, EMA) on views that are already
    on the device (random tensors of the view shape, no sampling, no augmentation);
(b) end to end: the real loop's work per step (index sampling from the device-resident uint8
    dataset, the method's batched augmentations, the same step);
(c) their ratio; (d) peak device memory of the end-to-end run.
Both are timed after warm-up, back to back in the same process, synchronising only at the ends.
With ``--set train.cuda_graph=true`` both run as captured CUDA graphs (:mod:`selfsup.training.graph`):
the ceiling's graph holds the step on the fixed views, the end-to-end one also the augmentations.
This is a benchmark, not a test: the figures go to BENCHMARKS.md with the machine they ran on.
"""

from __future__ import annotations

import argparse
import collections
import json
import platform
import time

import torch

from selfsup.config import build_config
from selfsup.training import build, train_step, update_step
from selfsup.training.graph import StaticStep


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, steps: int, warmup: int, device) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync(device)
    return time.perf_counter() - start


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("recipe", nargs="?", default="byol-fashion-mnist")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--device", default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="STEPS",
        help="after timing, profile this many end-to-end steps: kernels, launch calls and kernel time per step",
    )
    args = p.parse_args(argv)

    cfg = build_config(args.recipe, args.set, device=args.device, batch_size=args.batch_size)
    s = build(cfg)
    gen = torch.Generator(s.device).manual_seed(0)
    batch_size = cfg.train.batch_size
    n_views = len(cfg.view_configs())
    counter = [0]

    # (a) the ceiling: the recipe's own step, minus sampling and augmentation.
    views = [v.clone() for v in s.views(next(s.loader.batches(0)), gen)]

    def ceiling():
        update_step(s, views, counter[0])
        counter[0] += 1
        s.method.after_step(counter[0], s.total_steps)

    # (b) end to end: device-resident uint8 data, index sampling, augmentation, step.
    batches = _endless(s.loader)

    def end_to_end():
        train_step(s, next(batches), gen, counter[0])
        counter[0] += 1
        s.method.after_step(counter[0], s.total_steps)

    if cfg.train.cuda_graph:  # the same two, each captured (warm-up steps included in --warmup)
        first = next(s.loader.batches(0))
        fixed = StaticStep(s, gen, make_views=lambda batch: views)

        def ceiling():
            fixed(first, counter[0])
            counter[0] += 1

        def end_to_end():
            if not hasattr(end_to_end, "static"):  # built when first called: rebinds the optimiser
                end_to_end.static = StaticStep(s, gen)
            end_to_end.static(next(batches), counter[0])
            counter[0] += 1

    t_ceiling = _timed(ceiling, args.steps, args.warmup, s.device)
    if s.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(s.device)
    t_e2e = _timed(end_to_end, args.steps, args.warmup, s.device)
    peak = torch.cuda.max_memory_allocated(s.device) if s.device.type == "cuda" else None
    result = {
        "recipe": args.recipe,
        "method": cfg.method,
        "backbone": cfg.model.backbone,
        "batch_size": batch_size,
        "views": n_views,
        "input": s.input_spec,
        "device": str(s.device),
        "hardware": torch.cuda.get_device_name(s.device)
        if s.device.type == "cuda"
        else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "compile": cfg.train.compile,
        "cuda_graph": cfg.train.cuda_graph,
        "precision": "bf16" if s.amp_dtype else "fp32",
        "placement": s.loader.placement,
        "steps": args.steps,
        "ceiling_images_per_second": round(args.steps * batch_size / t_ceiling, 1),
        "end_to_end_images_per_second": round(args.steps * batch_size / t_e2e, 1),
        "ratio": round(t_ceiling / t_e2e, 3),
        "peak_memory_gb": round(peak / 2**30, 3) if peak is not None else None,
    }
    if args.profile:
        result["profile"] = _profile(end_to_end, args.profile, s.device)
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>28}: {v}")
    return result


def _profile(fn, steps: int, device) -> dict:
    """Per step of ``fn``: device kernels run, host launch calls made, device kernel time (ms) and
    host wall time (ms), from ``torch.profiler`` over ``steps`` steps (after the timed ones, so
    warm). A captured step shows one graph launch for all its kernels."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    try:
        _sync(device)
        start = time.perf_counter()
        with profile(activities=activities) as prof:
            for _ in range(steps):
                fn()
            _sync(device)
        wall = time.perf_counter() - start
        events = prof.events()
        # device-side events, less the ranges the profiler draws over them (the optimiser's step
        # shows as a CUDA event spanning its kernels, which are counted themselves)
        device = [e for e in events if e.device_type == DeviceType.CUDA]
        ranges = [e for e in device if getattr(e, "is_user_annotation", False) or "#" in e.name]
        kernels = [e for e in device if e not in ranges]
        launches = [e for e in events if e.device_type == DeviceType.CPU and "LaunchKernel" in e.name]
        graph_launches = [e for e in events if e.device_type == DeviceType.CPU and "GraphLaunch" in e.name]
        top = collections.Counter()
        for e in kernels:
            top[e.name[:60]] += e.time_range.elapsed_us()
        total = sum(top.values())
        return {
            "steps": steps,
            "kernels_per_step": round(len(kernels) / steps, 1),
            "ranges_left_out": sorted({e.name[:60] for e in ranges}),
            "kernel_launch_calls_per_step": round(len(launches) / steps, 1),
            "graph_launches_per_step": round(len(graph_launches) / steps, 2),
            "kernel_ms_per_step": round(total / 1000 / steps, 3),
            "profiled_wall_ms_per_step": round(wall * 1000 / steps, 3),
            "top_kernels_ms_per_step": {k: round(v / 1000 / steps, 3) for k, v in top.most_common(8)},
        }
    except Exception as e:  # the timings above stand without a profile
        return {"error": f"{type(e).__name__}: {e}"}


def _endless(loader):
    epoch = 0
    while True:
        yield from loader.batches(epoch)
        epoch += 1


if __name__ == "__main__":
    main()
