"""Every method on a CPU-sized subset of Fashion-MNIST, one budget for all (a marked subset, not
the protocol of ../shared/benchmarks.md, which needs ResNet-18 at 32x32 and a GPU).

    python -m benchmarks.fashion_subset [METHOD ...] [--subset 4000] [--epochs 8] [--out runs/fmnist-subset]

Per method: its shipped ``<method>-fashion-mnist`` recipe (optimiser, loss and augmentation
settings), scaled to the CPU the same way for every method: a fixed random ``--subset`` of the
60,000 training images for pretraining, resnet-small at 16x16 (down-sampled from 28x28), 1 channel,
batch 256, 2 warm-up epochs, and the narrowed heads of the method's ``<method>-digits`` recipe (made
for resnet-small's 128-d features). Evaluation on frozen features: weighted kNN (k=200, T=0.1) and
the linear probe with the *full* training split as memory / probe training set and the full test
split as queries, next to the same protocols on raw pixels. Prints one JSON line per method and
appends it to ``<out>/results.jsonl``. ``--eval-only --protocols lowshot,cluster`` evaluates the
finished runs again with more protocols (appended the same way, marked ``"eval_only"``).
``--eval-only --protocols finetune --finetune-set labels=0.1`` fine-tunes them (add
``--finetune-set random_init_baseline=true`` for one method to get the from-scratch row).
``--random-init`` evaluates a freshly initialised encoder of the family (no pretraining).
``--short-run-lr`` takes the learning rate of the ``<method>-digits`` recipe too (made for runs of a
few hundred steps; MAE's, I-JEPA's and MP3's are 4-8x their papers' long-run rates).
``--family vit`` runs the ViT methods on ViT-Tiny at 28x28 with 7x7 patches instead.
``--table`` prints the markdown table of ``<out>/results.jsonl`` (the last result of each
method and protocol). ``--raw 16`` prints the raw-pixel kNN and linear probe at the encoder's input size (the images
resized to 16x16, antialiased), a second baseline beside the native 28x28 one.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from selfsup.config import build_config, read_recipe
from selfsup.evaluate.run import evaluate_run
from selfsup.methods import METHODS
from selfsup.training import train

RESNET_METHODS = [
    "byol",
    "simclr",
    "mocov2",
    "mocov3",
    "barlowtwins",
    "vicreg",
    "simsiam",
    "nnclr",
    "dino",
    "swav",
    "myow",
    "rotnet",
]
VIT_METHODS = ["mae", "gmml", "sit", "ijepa", "mp3", "dino-vit"]  # recipe names (dino-vit trains DINO on a ViT)

# How each family is scaled to the CPU (besides data.subset, the batch and the epochs).
FAMILY_SETS = {
    "resnet": ["model.backbone=resnet-small", "augment.size=16", "augment.channels=1"],
    # ViT-Tiny (192-d, 12 blocks) at the native 28x28 with 7x7 patches: a 4x4 grid of 16 tokens,
    # the token count that keeps a ViT step affordable on one core (the protocol's 32x32 with
    # 4x4 patches has 64).
    "vit": ["augment.size=28", "augment.channels=1", "model.patch_size=7"],
}
# Per method, where the 4x4 token grid needs it: I-JEPA's 4 target blocks leave almost no context
# on 4x4 tokens; its mask sampler's docstring asks for 2 there.
METHOD_SETS = {("vit", "ijepa"): ["method_args.num_targets=2"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("methods", nargs="*", help="recipe names without -fashion-mnist (default: the family's)")
    ap.add_argument(
        "--family",
        choices=sorted(FAMILY_SETS),
        default="resnet",
        help="resnet: the 12 joint-embedding methods on resnet-small; vit: the ViT methods on ViT-Tiny",
    )
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--subset", type=int, default=4000)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="runs/fmnist-subset")
    ap.add_argument("--protocols", default="knn,linear")
    ap.add_argument("--set", action="append", default=[], help="extra config overrides (key=value)")
    ap.add_argument(
        "--finetune-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="settings of the finetune protocol, as selfsup eval's --finetune-set",
    )
    ap.add_argument("--eval-only", action="store_true", help="evaluate finished runs, train nothing")
    ap.add_argument("--raw", type=int, default=0, help="only print raw-pixel baselines at this size")
    ap.add_argument("--table", action="store_true", help="print the results as a markdown table")
    ap.add_argument(
        "--short-run-lr",
        action="store_true",
        help="take optim.lr from the <method>-digits recipe (its short-run setting) as well",
    )
    ap.add_argument(
        "--random-init",
        action="store_true",
        help="kNN and linear probe on a freshly initialised encoder of the family (no training)",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.raw:
        return raw_baselines(args.raw)
    if args.table:
        return print_table(out / "results.jsonl")
    if args.random_init:
        return random_init_baseline(args, out)
    methods = args.methods or (VIT_METHODS if args.family == "vit" else RESNET_METHODS)
    for method in methods:
        if method.removesuffix("-vit") not in METHODS:
            raise SystemExit(f"unknown method {method}")
        if args.eval_only:
            ev = evaluate_run(out / method, device="cpu", protocols=args.protocols, finetune_args=args.finetune_set)
            row = {
                "method": method,
                "eval_only": True,
                **{
                    k: v
                    for k, v in ev.items()
                    if k.endswith(("top1", "_std", "_raw", "_random_init", "acc", "nmi", "ari"))
                },
            }
            if "finetune" in ev:
                ft = ev["finetune"]
                row["finetune"] = {
                    "labels": ft["n_fit"] + ft["n_held_out"],
                    "epochs": ft["settings"]["epochs"],
                    "best_epoch": ft["best_epoch"],
                    "seconds": ft["seconds"],
                    "sets": args.finetune_set,
                }
            append_row(out, row)
            continue
        digits = read_recipe(f"{method}-digits")
        heads = digits.get("method_args", {})
        sets = [
            f"data.subset={args.subset}",
            *FAMILY_SETS[args.family],
            "optim.warmup_epochs=2",
            "train.device=cpu",
            f"train.threads={args.threads}",
            "train.log_every=10",
            "train.checkpoint_every=100",
            "eval.diagnose_every=0",
        ]
        sets += [f"method_args.{k}={json.dumps(v) if isinstance(v, (list, dict)) else v}" for k, v in heads.items()]
        sets += METHOD_SETS.get((args.family, method), [])
        if args.short_run_lr:
            sets.append(f"optim.lr={digits['optim']['lr']}")
        cfg = build_config(f"{method}-fashion-mnist", sets + args.set, epochs=args.epochs, batch_size=args.batch_size)
        run = out / method
        start = time.time()
        summary = train(cfg, out=run)
        wall = time.time() - start
        ev = evaluate_run(run, device="cpu", protocols=args.protocols)
        row = {
            "method": method,
            "family": args.family,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "lr": cfg.optim.lr,
            "subset": args.subset,
            "train_seconds": summary["train_seconds"],
            "wall_seconds": round(wall, 1),
            "images_per_second": summary["images_per_second"],
            "knn_top1": ev["knn_top1"],
            "knn_top1_raw": ev.get("knn_top1_raw"),
            "linear_top1": ev["linear_top1"],
            "linear_top1_raw": ev.get("linear_top1_raw"),
            "threads": args.threads,
            "sets": args.set,
        }
        append_row(out, row)


def append_row(out: Path, row: dict) -> None:
    """Print a result row as one JSON line and append it to ``<out>/results.jsonl``."""
    print(json.dumps(row), flush=True)
    with open(out / "results.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")


def print_table(path: Path) -> None:
    merged: dict[str, dict] = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        merged.setdefault(row["method"], {}).update(row)
    cols = [
        ("kNN", "knn_top1"),
        ("linear", "linear_top1"),
        ("1% labels", "lowshot_1pct_top1"),
        ("10% labels", "lowshot_10pct_top1"),
        ("k-means acc", "cluster_acc"),
        ("NMI", "cluster_nmi"),
        ("ARI", "cluster_ari"),
        ("fine-tuned", "finetune_top1"),
    ]
    scratch = next((r["finetune_top1_random_init"] for r in merged.values() if "finetune_top1_random_init" in r), None)
    if scratch is not None:  # the from-scratch fine-tuning belongs to the untrained encoder's row
        merged.setdefault("random-init", {"method": "random-init"})["finetune_top1"] = scratch
    cols = [c for c in cols if any(c[1] in r for r in merged.values())]  # the protocols that were run
    print("| method | " + " | ".join(c for c, _ in cols) + " | train s | images/s |")
    print("|---" * (len(cols) + 3) + "|")

    def cell(r, key):
        if r.get(key) is None:
            return "-"
        return f"{r[key]:.3f} ± {r[key + '_std']:.3f}" if key + "_std" in r else f"{r[key]:.3f}"

    raw = {}
    # trained methods first, then the untrained floors, then raw pixels
    for method, r in sorted(merged.items(), key=lambda item: item[0].startswith("random-init")):
        print(
            f"| {method} | "
            + " | ".join(cell(r, k) for _, k in cols)
            + f" | {r.get('train_seconds', '-')} | {r.get('images_per_second', '-')} |"
        )
        for _, k in cols:  # the raw-pixel baselines, from whichever row carries them
            for key in (k, f"{k}_std"):
                if r.get(f"{key}_raw", r.get(f"{key}_raw_pixels")) is not None:  # rows written before the rename
                    raw.setdefault(key, r.get(f"{key}_raw", r.get(f"{key}_raw_pixels")))
    if raw:
        print("| raw pixels (28x28) | " + " | ".join(cell(raw, k) for _, k in cols) + " | - | - |")


def random_init_baseline(args, out: Path) -> None:
    """The floor of pretraining under the frozen protocols besides raw pixels: the same encoder,
    freshly initialised (seed 0), with the input transform training would use. Architecture of
    the recipe of the first METHOD given, else BYOL's resnet-small / MAE's ViT-Tiny (class token,
    sin-cos); the row is named after the ViT's pooling, which decides most of it."""
    from selfsup.backbones import backbone_for
    from selfsup.data.sources import load_dataset
    from selfsup.evaluate import extract_features, knn_top1
    from selfsup.evaluate.linear import linear_probe
    from selfsup.modalities.image import MODALITY

    method = args.methods[0] if args.methods else "mae" if args.family == "vit" else "byol"
    cfg = build_config(f"{method}-fashion-mnist", FAMILY_SETS[args.family] + args.set)
    m = cfg.model
    d = load_dataset("fashion-mnist")
    spec = MODALITY.input_spec(d, cfg)
    torch.manual_seed(0)
    encoder = backbone_for(cfg, spec).eval()
    transform = MODALITY.eval_transform(spec)
    train_f = extract_features(encoder, d.train, transform, 512, "cpu")
    test_f = extract_features(encoder, d.test, transform, 512, "cpu")
    name = f"random-init ({m.pool} pool)" if args.family == "vit" and m.pool != "cls" else "random-init"
    row = {
        "method": name,
        "family": args.family,
        "architecture": encoder.spec,
        "knn_top1": knn_top1(
            train_f, d.train_labels, test_f, d.test_labels, k=cfg.eval.knn_k, temperature=cfg.eval.knn_t, num_classes=10
        ),
        "linear_top1": linear_probe(train_f, d.train_labels, test_f, d.test_labels, 10, seed=0)["top1"],
    }
    append_row(out, row)


def raw_baselines(size: int) -> None:
    import torch.nn.functional as F

    from selfsup.data.sources import load_dataset
    from selfsup.evaluate.knn import knn_top1
    from selfsup.evaluate.linear import linear_probe

    d = load_dataset("fashion-mnist")

    def pixels(images):
        x = F.interpolate(images.float() / 255, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        return x.flatten(1)

    train_x, test_x = pixels(d.train), pixels(d.test)
    knn = knn_top1(train_x, d.train_labels, test_x, d.test_labels, k=200, temperature=0.1, num_classes=10)
    linear = linear_probe(train_x, d.train_labels, test_x, d.test_labels, 10, seed=0)
    print(json.dumps({"raw_pixels_size": size, "knn_top1": knn, "linear_top1": linear["top1"]}))


if __name__ == "__main__":
    main()
