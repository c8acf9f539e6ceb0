"""Batched augmentation on the CPU against a per-sample Pillow pipeline of the same ops.

    python -m benchmarks.augment_cpu [--images 4096] [--batch 512] [--size 32] [--threads 2]

Both pipelines make BYOL's two views (Grill et al. 2020, Table 6: crop 0.08-1, flip 0.5, colour
jitter 0.8 x (0.4, 0.4, 0.2, 0.1), grayscale 0.2, blur 1.0 / 0.1, solarise 0 / 0.2) of 32x32 from
Fashion-MNIST's 28x28 images replicated to RGB. The Pillow reference is written here the way a
torchvision-style DataLoader applies them: one image at a time, PIL operations, then to a tensor.
Printed: images/s of each (two views per image), their ratio, and the output statistics of both
(mean, std, fraction of exactly-equal channels) so one can see they compute the same thing.
A benchmark, not a test: the figures go to BENCHMARKS.md with the machine.
"""

from __future__ import annotations

import argparse
import colorsys  # noqa: F401  (documents that hue is the HSV hue, as in the batched op)
import math
import platform
import random
import time

import numpy as np
import torch

from selfsup.data.sources import load_dataset
from selfsup.modalities.image.recipes import byol_views
from selfsup.modalities.image.views import ViewRecipe


# ------------------------------------------------------------------ the per-sample Pillow reference
def _pil_view(img, cfg, rng: random.Random, fractional_box: bool = False):
    """One view; ``fractional_box`` keeps the crop box unrounded (as the batched op) instead of
    torchvision's whole-pixel box - only to show where the two pipelines' statistics part."""
    from PIL import Image, ImageEnhance, ImageFilter, ImageOps

    w, h = img.size
    area = w * h
    for _ in range(10):  # torchvision's RandomResizedCrop rule
        target = area * rng.uniform(*cfg.crop_scale)
        ratio = math.exp(rng.uniform(math.log(cfg.crop_ratio[0]), math.log(cfg.crop_ratio[1])))
        cw, ch = math.sqrt(target * ratio), math.sqrt(target / ratio)
        if not fractional_box:
            cw, ch = int(round(cw)), int(round(ch))
        if 0 < cw <= w and 0 < ch <= h:
            if fractional_box:
                x0, y0 = rng.uniform(0, w - cw), rng.uniform(0, h - ch)
            else:
                x0, y0 = rng.randint(0, w - cw), rng.randint(0, h - ch)
            break
    else:
        cw, ch, x0, y0 = w, h, 0, 0
    img = img.resize((cfg.size, cfg.size), Image.BILINEAR, box=(x0, y0, x0 + cw, y0 + ch))
    if rng.random() < cfg.flip_p:
        img = ImageOps.mirror(img)
    if rng.random() < cfg.jitter_p:
        ops = ["b", "c", "s", "h"]
        rng.shuffle(ops)
        for op in ops:
            if op == "b":
                img = ImageEnhance.Brightness(img).enhance(rng.uniform(1 - cfg.brightness, 1 + cfg.brightness))
            elif op == "c":
                img = ImageEnhance.Contrast(img).enhance(rng.uniform(1 - cfg.contrast, 1 + cfg.contrast))
            elif op == "s":
                img = ImageEnhance.Color(img).enhance(rng.uniform(1 - cfg.saturation, 1 + cfg.saturation))
            else:
                shift = rng.uniform(-cfg.hue, cfg.hue)
                hsv = np.array(img.convert("HSV"))
                hsv[..., 0] = (hsv[..., 0].astype(np.int16) + int(shift * 255)) % 256
                img = Image.fromarray(hsv, "HSV").convert("RGB")
    if rng.random() < cfg.grayscale_p:
        img = img.convert("L").convert("RGB")
    if rng.random() < cfg.blur_p:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(*cfg.blur_sigma)))
    if rng.random() < cfg.solarize_p:
        img = ImageOps.solarize(img, int(cfg.solarize_threshold * 255))
    return img


def pillow_views(
    images_u8: np.ndarray, views, mean, std, rng: random.Random, fractional_box: bool = False
) -> list[torch.Tensor]:
    from PIL import Image

    out = [[] for _ in views]
    m = torch.tensor(mean).view(3, 1, 1)
    s = torch.tensor(std).view(3, 1, 1)
    for arr in images_u8:
        img = Image.fromarray(arr[0], "L").convert("RGB")
        for k, cfg in enumerate(views):
            v = torch.from_numpy(np.array(_pil_view(img, cfg, rng, fractional_box))).permute(2, 0, 1).float().div_(255)
            out[k].append((v - m) / s)
    return [torch.stack(o) for o in out]


def _stats(views: list[torch.Tensor], mean, std) -> str:
    x = torch.cat(views) * torch.tensor(std).view(1, 3, 1, 1) + torch.tensor(mean).view(1, 3, 1, 1)
    return f"pixel mean {x.mean():.4f}  std {x.std():.4f}  dark (<0.05) {(x < 0.05).float().mean():.3f}"


def main(argv=None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=4096)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--by-op",
        action="store_true",
        help="no timing: output statistics of both pipelines as the ops are switched on one by one",
    )
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = load_dataset("fashion-mnist")
    images = data.train[: args.images]
    views = byol_views(args.size)
    mean, std = (0.286,) * 3, (0.353,) * 3
    if args.by_op:
        return by_op(images, views, mean, std, args.batch)
    recipe = ViewRecipe(views, 3, mean, std)
    g = torch.Generator().manual_seed(0)

    recipe(images[: args.batch], g)  # warm-up
    t = time.perf_counter()
    batched = []
    for start in range(0, len(images), args.batch):
        batched.append(recipe(images[start : start + args.batch], g))
    t_batched = time.perf_counter() - t

    rng = random.Random(0)
    np_images = images.numpy()
    t = time.perf_counter()
    reference = pillow_views(np_images, views, mean, std, rng)
    t_pil = time.perf_counter() - t

    batched_views = [torch.cat([b[k] for b in batched]) for k in range(len(views))]
    print(
        f"machine: {platform.processor() or platform.machine()}, {args.threads} torch threads, "
        f"torch {torch.__version__}"
    )
    print(f"images: {len(images)} Fashion-MNIST 28x28 -> 2 BYOL views of {args.size}x{args.size}x3, batch {args.batch}")
    print(f"batched selfsup : {len(images) / t_batched:10,.0f} images/s   {_stats(batched_views, mean, std)}")
    print(f"per-sample PIL  : {len(images) / t_pil:10,.0f} images/s   {_stats(reference, mean, std)}")
    print(f"ratio           : {t_pil / t_batched:.1f}x")


def by_op(images: torch.Tensor, views, mean, std, batch: int) -> None:
    """Where the two pipelines' statistics part: the same views with the ops switched on in order."""
    import dataclasses

    off = dict(jitter_p=0.0, grayscale_p=0.0, blur_p=0.0, solarize_p=0.0)
    stages = [("crop + flip", off)]
    for name in ("jitter_p", "grayscale_p", "blur_p", "solarize_p"):
        off = {k: v for k, v in off.items() if k != name}
        stages.append((f"+ {name[:-2]}", off))
    for label, zeroed in stages:
        cfgs = [dataclasses.replace(v, **zeroed) for v in views]
        recipe = ViewRecipe(cfgs, 3, mean, std)
        g = torch.Generator().manual_seed(0)
        parts = [recipe(images[i : i + batch], g) for i in range(0, len(images), batch)]
        batched = [torch.cat([b[k] for b in parts]) for k in range(len(cfgs))]
        reference = pillow_views(images.numpy(), cfgs, mean, std, random.Random(0))
        unrounded = pillow_views(images.numpy(), cfgs, mean, std, random.Random(0), fractional_box=True)
        print(f"{label:14s} batched                  : {_stats(batched, mean, std)}")
        print(f"{'':14s} Pillow                   : {_stats(reference, mean, std)}")
        print(f"{'':14s} Pillow, unrounded crop box: {_stats(unrounded, mean, std)}", flush=True)


if __name__ == "__main__":
    main()
