"""The ``selfsup`` command: argument parsing and user-facing errors only; the work is in the API.

Every mistake a user can make ends in one line on stderr and exit status 2; a training failure in
one line and status 1; an interruption (Ctrl-C, SIGTERM) after a checkpoint in status 130.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from .errors import Interrupted, TrainingError, UsageError, closest_first, unknown

COMMANDS = {
    "demo": "BYOL on the bundled digits, on the CPU, in about a minute",
    "train": "pretrain an encoder (a recipe, a method, a dataset)",
    "eval": "evaluate a run's encoder (kNN, linear, low-shot, clustering)",
    "embed": "write a run's embeddings of a dataset to a .npy file",
    "report": "write report.html about one or more runs",
    "data": "list the data sources and where each was found; `data prepare` prepares one (a photo folder)",
    "methods": "list the methods and their papers",
    "recipes": "list the shipped recipes",
    "export": "write a run's encoder as ONNX, TorchScript or safetensors, checked against the torch encoder",
    "neighbors": "the nearest training items of test items or files (CSV)",
    "duplicates": "near-duplicate pairs of a dataset's items by embedding similarity (CSV)",
    "select": "a diverse subset of a dataset by greedy k-center on the embeddings (CSV)",
}


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        # No abbreviations: `--epoch 3` is a typo to point out, not a guess to act on.
        super().__init__(*args, allow_abbrev=False, **kwargs)

    def error(self, message):
        raise UsageError(f"{self.prog}: {message}")

    def unknown_options(self, extra: list[str]) -> UsageError:
        options = [o for a in self._actions for o in a.option_strings if o.startswith("--")]
        return UsageError(
            f"unknown option {extra[0]}; valid options for {self.prog}: " + ", ".join(closest_first(extra[0], options))
        )


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="selfsup", description="Self-supervised representation learning.")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)

    demo = sub.add_parser("demo", help=COMMANDS["demo"], prog="selfsup demo")
    demo.add_argument("--epochs", type=int, default=None, help="override the demo's epoch count")
    demo.add_argument("--out", default=None, help="run folder (default runs/demo-<timestamp>)")
    demo.add_argument("--device", default="cpu")

    train = sub.add_parser("train", help=COMMANDS["train"], prog="selfsup train")
    train.add_argument("recipe", nargs="?", help="a shipped recipe name (see `selfsup recipes`) or a YAML file")
    train.add_argument("--method")
    train.add_argument("--data", help="a data source: digits | fashion-mnist | folder:PATH | ... (see `selfsup data`)")
    train.add_argument("--data-dir", help="where the dataset's files are")
    train.add_argument("--epochs", type=int)
    train.add_argument("--batch-size", type=int)
    train.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    train.add_argument("--out", help="run folder (default runs/<method>-<data>-<timestamp>)")
    train.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config key, e.g. --set optim.lr=0.5 (repeatable)",
    )
    train.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    train.add_argument(
        "--init-from",
        metavar="RUN_DIR",
        help="start from a finished run's weights (encoder, heads, teacher) on this config's data: continual "
        "pretraining (see optim.schedule=infinite)",
    )

    ev = sub.add_parser("eval", help=COMMANDS["eval"], prog="selfsup eval")
    ev.add_argument("run_dir")
    ev.add_argument("--data", help="evaluate on another labelled dataset (default: the run's)")
    ev.add_argument("--data-dir")
    ev.add_argument("--device", default="auto")
    ev.add_argument(
        "--protocol",
        default="knn",
        metavar="P[,P...]",
        help="comma-separated protocols: knn, linear, lowshot, cluster, finetune (end-to-end, trains a "
        "copy of the encoder), or all (the four frozen-feature ones; default knn)",
    )
    ev.add_argument(
        "--knn-k", type=int, default=20, help="k of the majority-vote kNN (the weighted kNN keeps the run's eval.knn_k)"
    )
    ev.add_argument("--seed", type=int, default=0, help="seed of the held-out split, low-shot subsets and k-means")
    ev.add_argument(
        "--no-raw",
        "--no-raw-pixels",
        dest="no_raw",
        action="store_true",
        help="skip the raw-input baselines (raw pixels for images)",
    )
    ev.add_argument(
        "--cache-features",
        action="store_true",
        help="keep the features in the run folder (features_<data>_<split>.pt) and reuse them",
    )
    ev.add_argument(
        "--finetune-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting of the finetune protocol (repeatable): epochs, batch_size, lr, weight_decay, "
        "layer_decay, warmup_epochs, label_smoothing, held_out, labels (fraction of the labels "
        "to use, e.g. 0.1), crop_scale (e.g. [0.8,1]; default: the run's first view's), drop_path (ViT "
        "stochastic depth), random_init_baseline (true: also fine-tune a fresh encoder)",
    )
    ev.add_argument(
        "--mlp-search",
        action="store_true",
        help="tune the mlp protocol's learning rate, dropout and width for the "
        "embeddings and for the raw input separately, on a validation split of the training rows",
    )
    ev.add_argument(
        "--pool",
        choices=("flatten", "mean", "max"),
        help="read an encoder with a pooling choice (tstcc-cnn) out another way than it was trained with; "
        "the weights stay, the results are kept apart in the summary",
    )
    ev.add_argument("--json", action="store_true", help="print JSON instead of a table")

    em = sub.add_parser("embed", help=COMMANDS["embed"], prog="selfsup embed")
    em.add_argument("run_dir")
    em.add_argument("--data", required=True)
    em.add_argument("--data-dir")
    em.add_argument("--split", default="test", choices=["train", "test"])
    em.add_argument("--out", required=True, help="output .npy file")
    em.add_argument("--device", default="auto")

    rep = sub.add_parser("report", help=COMMANDS["report"], prog="selfsup report")
    rep.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    rep.add_argument("--out", help="output file (default RUN_DIR/report.html of the first run)")
    rep.add_argument("--device", default="auto")

    data = sub.add_parser("data", help=COMMANDS["data"], prog="selfsup data")
    data.add_argument("--data-dir")
    data_sub = data.add_subparsers(dest="data_command", parser_class=_Parser)
    prep = data_sub.add_parser(
        "prepare",
        prog="selfsup data prepare",
        help="prepare a source once (a folder of images: decode it in parallel into its memory-mapped store)",
    )
    prep.add_argument("spec", metavar="DATA", help="a data source, e.g. folder:PATH")
    prep.add_argument(
        "--size",
        type=int,
        help="storage size S in pixels (default 48, for the default 32-px views; for views of V px training "
        "uses 1.5 V rounded up to a multiple of 8: 96 for 64, 336 for 224)",
    )
    prep.add_argument("--workers", type=int, help="decoding processes (default: every usable CPU)")
    prep.add_argument("--skip-bad", action="store_true", help="leave unreadable images out (named and counted)")
    prep.add_argument(
        "--store", help="write the store here (default under ~/.cache/selfsup/stores); train with data.options.store"
    )
    prep.add_argument("--data-dir", help="where a named dataset's files are")
    sub.add_parser("methods", help=COMMANDS["methods"], prog="selfsup methods")
    sub.add_parser("recipes", help=COMMANDS["recipes"], prog="selfsup recipes")
    _encoder_parsers(sub)
    return p


# ------------------------------------------------------------- the encoder elsewhere: export, neighbors, ...


def _encoder_parsers(sub) -> None:
    ex = sub.add_parser("export", help=COMMANDS["export"], prog="selfsup export")
    ex.add_argument("run_dir")
    ex.add_argument("--format", required=True, choices=["onnx", "torchscript", "safetensors"])
    ex.add_argument("--out", help="output file (default RUN_DIR/export/encoder.onnx, .torchscript.pt, .safetensors)")
    ex.add_argument("--data", help="check on this data's training split (default: the run's data)")
    ex.add_argument("--data-dir")

    nb = sub.add_parser("neighbors", help=COMMANDS["neighbors"], prog="selfsup neighbors")
    nb.add_argument("run_dir")
    nb.add_argument("--data", required=True, help="the data whose training split is searched (and queried)")
    nb.add_argument("--data-dir")
    nb.add_argument("--split", default="test", choices=["train", "test"], help="the split queries come from")
    nb.add_argument("--k", type=int, default=10, help="neighbours per query (default 10)")
    nb.add_argument(
        "--query",
        nargs="+",
        metavar="ITEM",
        help="item indices of the split (3, 10-12, comma-separated) or image files and folders (default: every item)",
    )
    nb.add_argument("--out", help="output CSV (default RUN_DIR/neighbors.csv)")
    nb.add_argument("--device", default="auto")

    dup = sub.add_parser("duplicates", help=COMMANDS["duplicates"], prog="selfsup duplicates")
    dup.add_argument("run_dir")
    dup.add_argument("--data", required=True)
    dup.add_argument("--data-dir")
    dup.add_argument(
        "--threshold", type=float, required=True, help="cosine similarity at or above which a pair is kept"
    )
    dup.add_argument(
        "--split", default="train", choices=["train", "test", "all"], help="all: train and test together (leaks)"
    )
    dup.add_argument("--max-pairs", type=int, default=1_000_000, help="keep at most this many, the most similar")
    dup.add_argument("--out", help="output CSV (default RUN_DIR/duplicates.csv)")
    dup.add_argument("--device", default="auto")

    sel = sub.add_parser("select", help=COMMANDS["select"], prog="selfsup select")
    sel.add_argument("run_dir")
    sel.add_argument("--data", required=True)
    sel.add_argument("--data-dir")
    sel.add_argument("--n", type=int, required=True, help="how many items to select")
    sel.add_argument("--split", default="train", choices=["train", "test"])
    sel.add_argument("--seed", type=int, default=0, help="picks the first item")
    sel.add_argument("--out", help="output CSV (default RUN_DIR/selection.csv)")
    sel.add_argument("--device", default="auto")


def _cmd_export(args) -> int:
    from .export import ExportError, export_run

    try:
        done = export_run(args.run_dir, args.format, out=args.out, data=args.data, data_dir=args.data_dir)
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    check = "bit-identical" if done.max_diff == 0 else f"max |difference| {done.max_diff:.3g}"
    print(f"wrote {done.path} ({done.format}, {done.exporter}; dynamic batch; input normalised outside, see metadata)")
    print(
        f"checked on the run's probe batch ({done.samples} samples): {check} against the torch encoder, "
        f"tolerance {done.tolerance:.3g}"
    )
    return 0


def _cmd_neighbors(args) -> int:
    from pathlib import Path

    from .embeddings import neighbors_csv

    out = args.out or Path(args.run_dir) / "neighbors.csv"
    done = neighbors_csv(args.run_dir, args.data, out, args.split, args.k, args.query, args.data_dir, args.device)
    n, k, memory = done["queries"], done["k"], done["memory"]
    print(f"wrote {done['path']}: the {k} nearest of {memory} training items for each of {n} queries")
    return 0


def _cmd_duplicates(args) -> int:
    from pathlib import Path

    from .embeddings import duplicates_csv

    out = args.out or Path(args.run_dir) / "duplicates.csv"
    done = duplicates_csv(
        args.run_dir, args.data, out, args.threshold, args.split, args.data_dir, args.device, max_pairs=args.max_pairs
    )
    more = f" (the {done['pairs']} most similar; more were found: raise --threshold)" if done["truncated"] else ""
    print(
        f"wrote {done['path']}: {done['pairs']} pairs of {done['items']} items at similarity >= {args.threshold}{more}"
    )
    return 0


def _cmd_select(args) -> int:
    from pathlib import Path

    from .embeddings import select_csv

    out = args.out or Path(args.run_dir) / "selection.csv"
    done = select_csv(args.run_dir, args.data, out, args.n, args.split, args.seed, args.data_dir, args.device)
    print(
        f"wrote {done['path']}: {done['selected']} of {done['items']} items (greedy k-center); every item lies within "
        f"{done['radius']:.4f} of a selected one (Euclidean, normalised embeddings)"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console
    from rich.markup import escape

    err = Console(stderr=True, highlight=False)
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and not argv[0].startswith("-") and argv[0] not in COMMANDS:
            raise unknown("command", argv[0], COMMANDS)
        parser = _parser()
        args, extra = parser.parse_known_args(argv)
        if extra:
            commands = parser._subparsers._group_actions[0].choices
            command = commands[args.command] if args.command else parser
            if getattr(args, "data_command", None):
                command = command._subparsers._group_actions[0].choices[args.data_command]
            raise command.unknown_options(extra)
        if args.command is None:
            _parser().print_help()
            return 2
        return globals()[f"_cmd_{args.command}"](args) or 0
    except UsageError as e:
        err.print(f"[red]error{_rank_tag()}:[/] {escape(str(e))}", soft_wrap=True)  # "selfsup[export]" is text
        return 2
    except TrainingError as e:
        err.print(f"[red]training stopped{_rank_tag()}:[/] {e}", soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    except Exception as e:  # only the Interrupted signal path is expected here
        if isinstance(e, Interrupted):
            err.print(f"[yellow]interrupted{_rank_tag()}:[/] {e}", soft_wrap=True)
            return 130
        import torch.distributed as dist

        if _rank_tag() and isinstance(e, (dist.DistError, RuntimeError)):
            # A collective failed: another process died or timed out. Its own error is above.
            first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
            err.print(
                f"[red]error{_rank_tag()}:[/] lost another process of the job ({first}); see the failing "
                "rank's message; the last checkpoint is kept",
                soft_wrap=True,
            )
            return 1
        raise


def _rank_tag() -> str:
    """' (rank r of w)' inside a torchrun job of several processes, else ''."""
    import os

    world = int(os.environ.get("WORLD_SIZE", "1"))
    return f" (rank {os.environ.get('RANK', '0')} of {world})" if world > 1 else ""


def _train_with_progress(cfg=None, out=None, resume=None) -> dict:
    from .progress import ConsoleReporter
    from .training import train

    reporter = ConsoleReporter()
    try:
        return train(cfg, out=out, resume=resume, reporter=reporter)
    finally:
        reporter.close()


def _cmd_demo(args) -> int:
    from .config import build_config

    cfg = build_config("byol-digits", device=args.device, epochs=args.epochs)
    out = args.out or f"runs/{_stamp('demo')}"
    summary = _train_with_progress(cfg, out=out)
    print(
        f"\nBYOL on digits: {summary['epochs']} epochs in {summary['train_seconds']:.0f} s "
        f"({summary['images_per_second']:,.0f} images/s on {summary['versions']['device']})"
    )
    print(f"kNN top-1 (k={cfg.eval.knn_k}, T={cfg.eval.knn_t}) on the digits test split:")
    print(f"  BYOL encoder  {summary['knn_top1']:.4f}")
    print(f"  {summary['raw_name']:<13} {summary['knn_top1_raw']:.4f}")
    print(f"run folder: {summary['run_dir']}  (selfsup eval {summary['run_dir']})")
    return 0


def _cmd_train(args) -> int:
    from .config import build_config

    if args.resume:
        given = (
            [
                f"--{k.replace('_', '-')}"
                for k in ("method", "data", "epochs", "batch_size", "device", "out", "init_from")
                if getattr(args, k) is not None
            ]
            + (["RECIPE"] if args.recipe else [])
            + (["--set"] if args.set else [])
        )
        if given:
            raise UsageError(f"--resume continues a run with its own config; drop {', '.join(given)}")
        summary = _train_with_progress(resume=args.resume)
    else:
        cfg = build_config(
            args.recipe,
            args.set,
            method=args.method,
            data=args.data,
            data_dir=args.data_dir,
            epochs=args.epochs,
            batch_size=args.batch_size,
            device=args.device,
            init_from=args.init_from,
        )
        summary = _train_with_progress(cfg, out=args.out)
    if _rank_tag() and os.environ.get("RANK", "0") != "0":
        return 0  # rank 0 reports for the job
    if summary.get("finished"):
        print(f"kNN top-1 {summary['knn_top1']}" if summary.get("knn_top1") is not None else "no labels: kNN skipped")
        print(f"run folder: {summary['run_dir']}")
    else:
        print(
            f"stopped after epoch {summary['epochs_done']} of {summary['epochs']} (train.stop_after); continue with: "
            f"selfsup train --resume {args.out or args.resume}"
        )
    return 0


def _cmd_eval(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from .evaluate.protocols import result_rows
    from .evaluate.run import evaluate_run

    result = evaluate_run(
        args.run_dir,
        data=args.data,
        data_dir=args.data_dir,
        device=args.device,
        protocols=args.protocol,
        knn_k=args.knn_k,
        seed=args.seed,
        raw=not args.no_raw,
        cache_features=args.cache_features,
        finetune_args=args.finetune_set,
        mlp_search=args.mlp_search,
        pool=args.pool,
    )
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    raw = not args.no_raw
    table = Table(title=f"{result['run_dir']}: {result['method']} on {result['dataset']}")
    for column in ("protocol", "measure", "encoder") + ((result["raw_name"],) if raw else ()):
        table.add_column(column, justify="left" if column in ("protocol", "measure") else "right")
    for row in result_rows(result):
        value, baseline = row.cells()
        table.add_row(row.protocol, row.measure, value, *((baseline,) if raw else ()))
    Console().print(table)
    timing = ", ".join(f"{k} {v:.1f} s" for k, v in result["seconds"].items())
    d = result["data"]
    seeds = f", low-shot mean ± std over {len(result['lowshot']['seeds'])} seeds" if "lowshot" in result else ""
    print(f"{d['n_train']} train / {d['n_test']} test samples, {d['feature_dim']}-d features{seeds}; {timing}")
    return 0


def _cmd_embed(args) -> int:
    from .encoder import embed

    array = embed(args.run_dir, args.data, split=args.split, out=args.out, data_dir=args.data_dir, device=args.device)
    print(f"wrote {array.shape[0]} embeddings of dimension {array.shape[1]} to {args.out}")
    return 0


def _cmd_report(args) -> int:
    from .device import resolve_device
    from .report import write_report

    path = write_report(args.run_dirs, out=args.out, device=resolve_device(args.device))
    print(f"wrote {path}")
    return 0


def _cmd_data(args) -> int:
    from .data.sources import describe_sources

    if args.data_command == "prepare":
        return _cmd_data_prepare(args)
    for source in describe_sources(args.data_dir):
        state = "available" if source["available"] else "not found"
        print(f"{source['name']:<15} {state:<10} {source['location']}  {source.get('note', '')}".rstrip())
    return 0


def _cmd_data_prepare(args) -> int:
    """Load the source once with its options: a folder is prepared into its store (or found ready)."""
    import time

    from .data.sources import load_dataset

    given = {"size": args.size, "workers": args.workers, "store": args.store}
    start = time.perf_counter()
    data = load_dataset(
        args.spec,
        data_dir=args.data_dir,
        skip_bad=args.skip_bad,
        options={k: v for k, v in given.items() if v is not None},
    )
    parts = [f"{data!r} ready in {time.perf_counter() - start:.1f} s"]
    if data.skipped:
        parts.append(f"{data.skipped} unreadable images left out")
    if "store" in data.meta:
        parts.append(f"store {data.meta['store']} ({data.meta['storage_size']} px)")
    print("; ".join(parts))
    return 0


def _cmd_methods(args) -> int:
    from .methods import METHODS, fits
    from .modalities import MODALITIES

    for name, cls in METHODS.items():
        data = ", ".join(m for m, modality in MODALITIES.items() if fits(cls, modality))
        print(f"{name:<12} {cls.paper}  [{data}]")
    return 0


def _cmd_recipes(args) -> int:
    from .config import recipe_names

    print("\n".join(recipe_names()))
    return 0


def _stamp(prefix: str) -> str:
    import time

    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"


if __name__ == "__main__":
    sys.exit(main())
