"""selfsup against lightly's documented BYOL pipeline: same model, heads, loss, optimiser, batch,
view recipe and epochs, in one run; only the data pipeline differs.

    python -m benchmarks.compare_lightly [--epochs 15] [--workers 16] [--recipe byol-fashion-mnist]

lightly side: the uint8 images as PIL images in a ``torch.utils.data.Dataset``, lightly's
``BYOLTransform`` (``BYOLView1Transform`` / ``BYOLView2Transform`` set to the recipe's view
parameters) applied per image in DataLoader workers, pinned batches copied to the GPU, then
selfsup's own training update (``update_step``) and momentum step, so model, heads, loss and LARS
are identical. selfsup side: ``selfsup.train`` with the same config. Printed: images/s, kNN top-1
(same kNN, k=200 T=0.1), peak device memory of each, and the ratios.

Installs nothing: lightly 1.6.0 (``pip install --no-deps lightly==1.6.0`` beside torch and
torchvision) and torchvision must already be importable. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

import selfsup
from selfsup.config import build_config
from selfsup.optim import lr_at, set_lr
from selfsup.training import build, update_step
from selfsup.training.monitor import evaluate_knn


def lightly_transform(cfg, mean, std):
    from lightly.transforms.byol_transform import BYOLTransform, BYOLView1Transform, BYOLView2Transform

    def view(cls, v):
        return cls(
            input_size=v.size,
            cj_prob=v.jitter_p,
            cj_strength=1.0,
            cj_bright=v.brightness,
            cj_contrast=v.contrast,
            cj_sat=v.saturation,
            cj_hue=v.hue,
            min_scale=v.crop_scale[0],
            random_gray_scale=v.grayscale_p,
            gaussian_blur=v.blur_p,
            sigmas=v.blur_sigma,
            solarization_prob=v.solarize_p,
            hf_prob=v.flip_p,
            normalize={"mean": list(mean), "std": list(std)},
        )

    v1, v2 = cfg.view_configs()
    return BYOLTransform(view_1_transform=view(BYOLView1Transform, v1), view_2_transform=view(BYOLView2Transform, v2))


class PILImages(torch.utils.data.Dataset):
    def __init__(self, images, transform, channels):
        self.images, self.transform, self.channels = images.numpy(), transform, channels

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        from PIL import Image

        arr = self.images[i]
        img = Image.fromarray(arr[0], "L") if arr.shape[0] == 1 else Image.fromarray(arr.transpose(1, 2, 0), "RGB")
        if self.channels == 3:
            img = img.convert("RGB")
        return self.transform(img)


def run_lightly(cfg, workers: int) -> dict:
    s = build(cfg)
    spec = s.input_spec
    dataset = PILImages(s.data.train, lightly_transform(cfg, spec["mean"], spec["std"]), cfg.augment.channels)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=cfg.train.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        pin_memory=True,
        persistent_workers=workers > 0,
    )
    torch.cuda.reset_peak_memory_stats(s.device)
    step, images, seconds = 0, 0, 0.0
    for epoch in range(cfg.train.epochs):
        torch.cuda.synchronize(s.device)
        start = time.perf_counter()
        for views in loader:
            views = [v.to(s.device, non_blocking=True) for v in views]
            set_lr(s.optimizer, lr_at(step, s.total_steps, s.warmup_steps, s.peak_lr, cfg.optim.final_lr_ratio))
            update_step(s, views, step)
            step += 1
            s.method.after_step(step, s.total_steps)
            images += len(views[0])
        torch.cuda.synchronize(s.device)
        seconds += time.perf_counter() - start
        print(f"lightly pipeline: epoch {epoch + 1}/{cfg.train.epochs} {images / seconds:,.0f} images/s", flush=True)
    peak = torch.cuda.max_memory_allocated(s.device)
    return {
        "images_per_second": images / seconds,
        "train_seconds": seconds,
        "knn_top1": evaluate_knn(s),
        "peak_memory_gb": peak / 2**30,
    }


def run_selfsup(cfg) -> dict:
    torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as out:
        summary = selfsup.train(cfg, out=Path(out) / "run")
    return {
        "images_per_second": summary["images_per_second"],
        "train_seconds": summary["train_seconds"],
        "knn_top1": summary["knn_top1"],
        "peak_memory_gb": torch.cuda.max_memory_allocated() / 2**30,
        "step": summary.get("cuda_graph", "eager"),
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default="byol-fashion-mnist")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--workers", type=int, default=16)
    p.add_argument("--set", action="append", default=[])
    p.add_argument(
        "--online",
        action="store_true",
        help="keep selfsup's online linear probe and kNN on (extra work lightly's side does not do)",
    )
    args = p.parse_args(argv)
    try:
        import lightly  # noqa: F401
        import torchvision  # noqa: F401
    except ImportError as e:
        sys.exit(f"compare_lightly needs lightly and torchvision importable ({e}); it installs nothing itself")
    if not torch.cuda.is_available():
        sys.exit("compare_lightly measures GPU pipelines; no CUDA device here")
    # The online probe and kNN are off on the selfsup side unless asked for: lightly's pipeline
    # has none, and the comparison is of the data pipelines doing the same training work.
    online = [] if args.online else ["eval.online=false"]
    sets = ["train.knn_every=0", "eval.diagnose_every=0"] + online
    cfg = build_config(args.recipe, sets + args.set, epochs=args.epochs, device="cuda")
    # lightly's side runs the step as its documentation does, eagerly: the step's own speed-ups
    # (train.compile, train.cuda_graph) are selfsup's, so they are not passed to it.
    step_only = ("train.compile", "train.cuda_graph")
    plain = build_config(
        args.recipe, sets + [s for s in args.set if not s.startswith(step_only)], epochs=args.epochs, device="cuda"
    )
    ours = run_selfsup(cfg)
    theirs = run_lightly(plain, args.workers)
    result = {
        "recipe": args.recipe,
        "epochs": args.epochs,
        "batch_size": cfg.train.batch_size,
        "online_eval": args.online,
        "gpu": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "lightly": __import__("lightly").__version__,
        "workers": args.workers,
        "selfsup_step": {"compile": cfg.train.compile, "cuda_graph": cfg.train.cuda_graph},
        "selfsup": ours,
        "lightly_pipeline": theirs,
        "speedup": ours["images_per_second"] / theirs["images_per_second"],
        "knn_difference": ours["knn_top1"] - theirs["knn_top1"],
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
