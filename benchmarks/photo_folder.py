"""Photo folders of any size: generate N one-megapixel JPEGs, prepare them into a store, train from it.

    python -m benchmarks.photo_folder [--n 2000] [--seed 0] [--dir PATH] [--workers W] [--size S] [--view 64]

(1) generate: N JPEGs (quality 85) of 1024x768, 768x1024, 1200x800 and 1024x1024 in rotation, four
    classes (``class0`` ... ``class3``, in ``train/`` and, one image in 10 drawn from the seed,
    ``test/``), each a smooth random colour field with class-dependent shapes (ellipses, boxes, triangles, stripes)
    and a class-dependent tint, plus pixel noise so that JPEG has real work (about 190 KB a file,
    like the 372 MB per 2,000 photos of issue 14): reproducible from the seed, and skipped when
    ``--dir`` already holds the same N and seed.
(2) prepare: ``prepare_folder`` with ``--workers`` into a fresh store at ``--size`` (default: the
    storage size for ``--view``), in its own process, so that its peak memory is its own: images/s,
    the main process's VmHWM, ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` (the largest worker; on Linux
    this includes the parent's resident memory at the fork, which a forked worker maps, so it
    overstates a worker's own memory) and, sampled every 0.1 s from /proc, the largest private
    memory (USS: Private_Clean + Private_Dirty) any worker had.
(3) baselines, in their own process: a single-process loop over the same files producing the same
    output (Pillow open, convert to RGB, bicubic resize to S x S): once plain (full decode, what a
    hand-written loader does) and once with ``Image.draft`` (what the prepare's decode does, without
    the workers), so the two speed-ups separate draft decoding from parallelism.
    ``--baseline-files K`` times the loops on the first K files only.
(4) train, in its own process: ``selfsup.train`` of SimCLR for one epoch at ``--view`` px on the
    CPU, batch 64, ResNet-18 with its ImageNet stem (``--train-set`` overrides; see
    ``DEFAULT_TRAIN_SET``), from the store (``data.options.store``; placement auto, which is host for a
    memory-mapped store on the CPU), then its kNN and raw-pixel kNN on the test split. The store's
    pages are dropped from the page cache first (``posix_fadvise(DONTNEED)``), so the epoch reads
    them from disk and every page it maps is counted. Memory: VmHWM (the peak resident set: private
    memory plus the pages of the store mapped at the time) and, sampled every 0.05 s, the peaks of
    RssAnon (private) and RssFile (mapped files: the store, and the libraries).
(5) rate, in its own process: the same run's training step fed from the store through the host
    loader (background gather from the map) against the same rows read into memory first
    (placement device on the CPU), in alternating blocks of ``--rate-steps`` steps after a warm-up,
    so that both see the same machine; images/s of each and their ratio (host / resident).

The files were just written, so the prepare and the baselines read them from the page cache when
they fit in RAM. Prints one JSON line. Timings are only meaningful on a machine that runs nothing else.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from selfsup.modalities.image.prepare import START_METHOD, default_storage_size, prepare_folder

SIZES = [(1024, 768), (768, 1024), (1200, 800), (1024, 1024)]  # (width, height), in rotation
CLASSES = 4
TEST_EVERY = 10
GENERATOR_VERSION = 2  # 2: the test split holds every class (1: only classes 1 and 3)
MANIFEST = ".photo_folder.json"  # hidden: the folder layout skips it
TINTS = np.array([[40, -10, -30], [-30, 35, -10], [-20, -10, 45], [15, 15, -25]])  # per class, added to RGB
REPO = Path(__file__).resolve().parents[1]
# ResNet-18's ImageNet stem (7x7/2 convolution and max-pool) at 64 px: the CIFAR stem, the default,
# keeps 64 x 64 feature maps through the first stage, which makes one SimCLR step of 64 images take
# about 2.7 GiB of activations and ~6x the time on the CPU, whatever the data (measured here; see the
# issue 14 report): the benchmark measures the data side.
DEFAULT_TRAIN_SET = ("model.stem=imagenet",)


def _pillow():
    try:
        from PIL import Image, ImageDraw
    except ImportError:
        raise SystemExit("this benchmark needs Pillow: pip install 'selfsup[bench]'") from None
    return Image, ImageDraw


# --- (1) generate -----------------------------------------------------------------------------


def image_path(root: Path, i: int, seed: int) -> Path:
    """Image i's file: one image in TEST_EVERY goes to ``test/``, drawn from the seed (so every class
    and every size is in both splits)."""
    test = np.random.default_rng([seed, i, 1]).random() < 1 / TEST_EVERY
    return root / ("test" if test else "train") / f"class{i % CLASSES}" / f"img{i:06d}.jpg"


def draw_photo(i: int, seed: int):
    """Image i: class i % 4, size (i // 4) % 4 (so size tells nothing about the class)."""
    Image, ImageDraw = _pillow()
    rng = np.random.default_rng([seed, i])
    label, (width, height) = i % CLASSES, SIZES[(i // CLASSES) % len(SIZES)]
    coarse = rng.integers(30, 226, (rng.integers(4, 9), rng.integers(4, 9), 3)).astype(np.uint8)
    field = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), np.int16)
    im = Image.fromarray((field + TINTS[label]).clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    for _ in range(rng.integers(6, 13)):
        x, y = rng.integers(0, width), rng.integers(0, height)
        r = int(rng.integers(min(width, height) // 20, min(width, height) // 5))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        if label == 0:
            draw.ellipse((x - r, y - r // 2, x + r, y + r // 2), fill=colour)
        elif label == 1:
            draw.rectangle((x - r, y - r, x + r, y + r), fill=colour)
        elif label == 2:
            draw.polygon([(x, y - r), (x - r, y + r), (x + r, y + r)], fill=colour)
        else:
            for k in range(-2, 3):
                draw.line((x - 2 * r, y + k * r // 2, x + 2 * r, y + k * r // 2), fill=colour, width=max(2, r // 8))
    noise = rng.integers(-15, 16, (height, width, 3), dtype=np.int16)
    return Image.fromarray((np.asarray(im, np.int16) + noise).clip(0, 255).astype(np.uint8))


def _write_photos(job: tuple[str, int, int, int]) -> None:
    root, seed, start, stop = job
    for i in range(start, stop):
        path = image_path(Path(root), i, seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        draw_photo(i, seed).save(path, quality=85)


def generate(root: Path, n: int, seed: int, workers: int) -> float | None:
    """Write the folder unless it already holds this N and seed; seconds taken, or None when reused."""
    want = {"n": n, "seed": seed, "version": GENERATOR_VERSION}
    manifest = root / MANIFEST
    if manifest.is_file() and json.loads(manifest.read_text()) == want:
        return None
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    start = time.perf_counter()
    jobs = [(str(root), seed, lo, min(lo + 50, n)) for lo in range(0, n, 50)]
    with get_context(START_METHOD).Pool(max(1, workers)) as pool:
        pool.map(_write_photos, jobs, chunksize=1)
    manifest.write_text(json.dumps(want))
    return time.perf_counter() - start


# --- memory ------------------------------------------------------------------------------------


def _mib_from_kib(kib: int) -> float:
    return round(kib / 1024, 1)


def _status_kib(pid: int | str, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def _private_kib(pid: int) -> int:
    """Unique set size: the memory only this process holds (what a fork shares is not counted)."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        return sum(int(line.split()[1]) for line in f if line.startswith(("Private_Clean:", "Private_Dirty:")))


class WorkerMemory:
    """Samples the private memory of this process's children every 0.1 s; keeps the largest seen."""

    def __init__(self):
        self.peak_kib, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        me = os.getpid()
        while not self._stop.wait(0.1):
            try:
                with open(f"/proc/{me}/task/{me}/children") as f:
                    pids = [int(p) for p in f.read().split()]
            except OSError:
                return
            for pid in pids:
                try:
                    self.peak_kib = max(self.peak_kib, _private_kib(pid))
                except OSError:  # exited meanwhile
                    pass

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


# --- (2) prepare and (3) baselines, each run in a process of its own ---------------------------


def stage_prepare(args) -> dict:
    store = Path(args.store)
    if store.exists():
        shutil.rmtree(store)
    with WorkerMemory() as workers:
        start = time.perf_counter()
        stores = prepare_folder(args.dir, args.size, workers=args.workers, out=store, progress=not args.quiet)
        seconds = time.perf_counter() - start
    count = sum(s.count for s in stores.values())
    return {
        "images": count,
        "seconds": round(seconds, 3),
        "images_per_s": round(count / seconds, 1),
        "main_vmhwm_mib": _mib_from_kib(_status_kib("self", "VmHWM")),
        "children_maxrss_mib": _mib_from_kib(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss),
        "workers_private_peak_mib": _mib_from_kib(workers.peak_kib),
        "store_mib": round(sum((s.path / "samples.bin").stat().st_size for s in stores.values()) / 2**20, 1),
    }


def pillow_loop(paths: list[Path], size: int, draft: bool) -> np.ndarray:
    """The single-process loop the prepare is compared with: open, (draft,) RGB, resize to size x size."""
    Image, _ = _pillow()
    checksum = np.zeros(3, np.int64)
    for path in paths:
        with Image.open(path) as im:
            if draft:
                im.draft("RGB", (size, size))
            pixels = np.asarray(im.convert("RGB").resize((size, size), Image.Resampling.BICUBIC))
        checksum += pixels[0, 0]  # use the pixels, so that nothing is skipped
    return checksum


def stage_baseline(args) -> dict:
    paths = sorted(Path(args.dir).rglob("*.jpg"))[: args.baseline_files or None]
    out = {}
    for name, draft in (("plain", False), ("draft", True)):
        start = time.perf_counter()
        pillow_loop(paths, args.size, draft)
        seconds = time.perf_counter() - start
        out[name] = {"images": len(paths), "seconds": round(seconds, 3), "images_per_s": round(len(paths) / seconds, 1)}
    out["vmhwm_mib"] = _mib_from_kib(_status_kib("self", "VmHWM"))
    return out


# --- (4) training from the store, (5) host store against resident memory ------------------------


class OwnMemory:
    """Samples this process's RssAnon and RssFile every 0.05 s; keeps the peaks (KiB)."""

    def __init__(self):
        self.peak = {"RssAnon": 0, "RssFile": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while True:
            for key in self.peak:
                self.peak[key] = max(self.peak[key], _status_kib("self", key))
            if self._stop.wait(0.05):
                return

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def drop_page_cache(store: Path) -> None:
    """Ask the kernel to drop the store's cached pages, so that reading them counts from cold."""
    for path in store.glob("*/samples.bin"):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def run_config(args, method: str = "simclr", extra: tuple[str, ...] = ()):
    """The training config of the benchmark: ``method`` at ``args.view`` px from the prepared store."""
    from selfsup import build_config

    sets = [
        f"augment.size={args.view}",
        f"data.options.size={args.size}",
        f"data.options.store={args.store}",
        "train.log_every=10",
        *args.train_set,
        *extra,
    ]
    return build_config(
        None, sets, method=method, data=f"folder:{args.dir}", epochs=1, batch_size=args.batch_size, device="cpu"
    )


def train_one_epoch(args, method: str = "simclr") -> dict:
    """Train ``method`` for one epoch at ``args.view`` px from the prepared store; its kNN at the end.

    Returns the epoch's images/s and seconds, the whole run's seconds (with the final kNN and the
    raw-pixel kNN), the placement and both kNN top-1s.
    """
    from selfsup import train

    run = Path(args.store).with_name(Path(args.store).name + "-run")
    if run.exists():
        shutil.rmtree(run)
    start = time.perf_counter()
    summary = train(run_config(args, method), out=run)
    seconds = time.perf_counter() - start
    epoch = json.loads(
        next(
            line
            for line in (run / "metrics.jsonl").read_text().splitlines()
            if json.loads(line).get("event") == "epoch"
        )
    )
    return {
        "method": method,
        "placement": summary["placement"],
        "epoch_seconds": epoch["seconds"],
        "images_per_s": epoch["images_per_second"],
        "run_seconds": round(seconds, 1),
        "knn_top1": summary["knn_top1"],
        "knn_top1_raw": summary["knn_top1_raw"],
    }


def stage_train(args) -> dict:
    drop_page_cache(Path(args.store))
    with OwnMemory() as memory:
        result = train_one_epoch(args)
    return {
        **result,
        "vmhwm_mib": _mib_from_kib(_status_kib("self", "VmHWM")),
        "rss_anon_peak_mib": _mib_from_kib(memory.peak["RssAnon"]),
        "rss_file_peak_mib": _mib_from_kib(memory.peak["RssFile"]),
    }


def stage_rate(args) -> dict:
    """Training images/s from the host store against the same rows resident in memory (see (5))."""
    import torch

    from selfsup.data.loader import BatchLoader
    from selfsup.training.build import build
    from selfsup.training.step import train_step

    s = build(run_config(args))
    rows = s.data.rows("train")
    loaders = {
        "host": BatchLoader(rows, args.batch_size, s.device, "host", seed=1),
        "resident": BatchLoader(rows, args.batch_size, s.device, "device", seed=1),
    }
    assert [loader.placement for loader in loaders.values()] == ["host", "device"]
    generator = torch.Generator().manual_seed(0)
    seconds = {name: 0.0 for name in loaders}
    steps = {name: 0 for name in loaders}
    position = {name: [0, 0] for name in loaders}  # epoch, step: each loader goes on where it stopped

    def block(name: str, k: int) -> float:
        loader, (epoch, step) = loaders[name], position[name]
        start = time.perf_counter()
        done = 0
        while done < k:
            for batch in loader.batches(epoch, step):
                train_step(s, batch, generator, 0)
                done, step = done + 1, step + 1
                if done == k:
                    break
            else:
                epoch, step = epoch + 1, 0
        position[name] = [epoch, step]
        return time.perf_counter() - start

    for name in loaders:  # warm-up: first-call costs, and the store's pages into the page cache
        block(name, 3)
    for _ in range(args.rate_blocks):
        for name in loaders:
            seconds[name] += block(name, args.rate_steps)
            steps[name] += args.rate_steps
    rate = {name: round(steps[name] * args.batch_size / seconds[name], 1) for name in loaders}
    return {
        "images_per_s": rate,
        "steps_each": steps["host"],
        "host_over_resident": round(rate["host"] / rate["resident"], 3),
    }


STAGES = {"prepare": stage_prepare, "baseline": stage_baseline, "train": stage_train, "rate": stage_rate}


def run_stage(stage: str, args) -> dict:
    """Run one stage in a fresh process (its peak memory is then its own) and read its JSON line."""
    argv = [
        "--stage",
        stage,
        "--n",
        str(args.n),
        "--seed",
        str(args.seed),
        "--dir",
        args.dir,
        "--store",
        args.store,
        "--view",
        str(args.view),
        "--size",
        str(args.size),
        "--workers",
        str(args.workers),
        "--baseline-files",
        str(args.baseline_files),
        "--batch-size",
        str(args.batch_size),
        "--rate-steps",
        str(args.rate_steps),
        "--rate-blocks",
        str(args.rate_blocks),
        *(["--quiet"] if args.quiet else []),
        *(f"--train-set={item}" for item in args.train_set),
    ]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.photo_folder", *argv],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2000, help="number of JPEGs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dir", default=None, help="the photo folder (default: /tmp/selfsup-photos-N-sSEED)")
    p.add_argument("--store", default=None, help="the store folder (default: the photo folder's name + -store-Spx)")
    p.add_argument("--view", type=int, default=64, help="the training view size")
    p.add_argument("--size", type=int, default=None, help="the storage size S (default: for --view)")
    p.add_argument(
        "--workers",
        type=int,
        default=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        help="prepare worker processes",
    )
    p.add_argument("--baseline-files", type=int, default=0, help="time the Pillow loops on this many files (0: all)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--rate-steps", type=int, default=5, help="steps per block of the host/resident comparison")
    p.add_argument("--rate-blocks", type=int, default=3, help="blocks of each, alternating")
    p.add_argument(
        "--train-set",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help="a config override for the training stages, repeatable (default: model.stem=imagenet; "
        "--train-set model.stem=cifar trains issue 14's command exactly)",
    )
    p.add_argument("--skip", default="", help="comma-separated stages to leave out: baseline, train, rate")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--stage", choices=sorted(STAGES), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.train_set = args.train_set if args.train_set is not None else list(DEFAULT_TRAIN_SET)
    args.dir = str(Path(args.dir or f"/tmp/selfsup-photos-{args.n}-s{args.seed}").resolve())
    args.size = args.size or default_storage_size(args.view)
    args.store = str(Path(args.store or f"{args.dir}-store-{args.size}px").resolve())
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.stage:
        result = STAGES[args.stage](args)
        print(json.dumps(result), flush=True)
        return result
    generated = generate(Path(args.dir), args.n, args.seed, args.workers)
    skip = set(filter(None, args.skip.split(",")))
    result = {
        "n": args.n,
        "seed": args.seed,
        "dir": args.dir,
        "view": args.view,
        "size": args.size,
        "workers": args.workers,
        "train_set": args.train_set,
        "start_method": START_METHOD,
        "cpus": os.cpu_count(),
        "generate_seconds": None if generated is None else round(generated, 1),
        "prepare": run_stage("prepare", args),
    }
    if "baseline" not in skip:
        result["baseline"] = base = run_stage("baseline", args)
        rate = result["prepare"]["images_per_s"]
        result["speedup_vs_plain_loop"] = round(rate / base["plain"]["images_per_s"], 2)
        result["speedup_vs_draft_loop"] = round(rate / base["draft"]["images_per_s"], 2)
    if "train" not in skip:
        result["train"] = run_stage("train", args)
    if "rate" not in skip:
        result["rate"] = run_stage("rate", args)
    result["load_average"] = os.getloadavg()
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
