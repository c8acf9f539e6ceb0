"""selfsup's TS2Vec against the authors' code (github.com/yuezhihan/ts2vec) on the same machine.

    git -C MIRROR archive b0088e1 | tar -x -C /tmp/ts2vec-ref     # the authors' repository, unmodified
    python -m benchmarks.peer_ts2vec --reference /tmp/ts2vec-ref --parts equivalence
    python -m benchmarks.peer_ts2vec --reference /tmp/ts2vec-ref --parts accuracy --archives A,B [--ours-from F]
    python -m benchmarks.peer_ts2vec --reference /tmp/ts2vec-ref --parts step,speed --archives A --steps 40
    python -m benchmarks.peer_ts2vec --report-only --date D

Three parts, each appended as rows to ``<results>/peer-ts2vec-<date>.jsonl``:

- ``equivalence``: the authors' ``TSEncoder`` and selfsup's ``TS2VecEncoder`` with the same weights give
  the same per-timestamp output (evaluation mode, and training mode under the same binomial mask), and
  their ``hierarchical_contrastive_loss`` and ours give the same loss and gradient.
- ``accuracy``: the authors' ``TS2Vec.fit`` and ``eval_classification(..., 'svm')`` as their
  ``train.py --eval`` runs them (batch 8, lr 0.001, 320 dims, max_train_length 3000, their iteration
  rule), on the arrays selfsup loads (normalised as their ``datautils`` does), beside selfsup's
  ``ts2vec-ucr`` under the same SVM protocol: trained here, or read from a series benchmark file
  (``--ours-from``, seed 0 only).
- ``step``: the maths of one step alone (the encoder on two full-length views, the loss, backward)
  for both, with the same weights and batch, interleaved in this process.
- ``speed``: seconds per training step of both over the same number of steps on one archive (their
  ``fit`` with ``n_iters``; selfsup's ``train`` with ``data.options.iterations``, its diagnostics, kNN
  monitor and checkpoints off), one after the other in this process. A ratio, not a speed claim, unless
  the machine was idle.

The reference code is imported from ``--reference`` at run time; nothing of it is copied here.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import tempfile
import time
import types
import warnings
from datetime import date
from pathlib import Path

import numpy as np
import torch

from .series import _read, run_method


def _reference(path: str):
    root = Path(path)
    if not (root / "ts2vec.py").is_file() or not (root / "models" / "encoder.py").is_file():
        sys.exit(f"--reference {path}: not a checkout of github.com/yuezhihan/ts2vec (ts2vec.py, models/ missing)")
    sys.path.insert(0, str(root))
    # ``tasks/__init__.py`` imports the anomaly-detection task too, which needs ``bottleneck``; the
    # classification task alone is what train.py --eval runs for UCR/UEA, so its package is entered
    # without running that file.
    tasks = types.ModuleType("tasks")
    tasks.__path__ = [str(root / "tasks")]
    sys.modules["tasks"] = tasks
    import models.losses as losses  # noqa: PLC0415 (the reference's own modules)
    import tasks.classification as classification  # noqa: PLC0415
    import ts2vec  # noqa: PLC0415
    from models.encoder import TSEncoder  # noqa: PLC0415

    return ts2vec.TS2Vec, TSEncoder, losses.hierarchical_contrastive_loss, classification.eval_classification


def _seed_like_reference(seed: int) -> None:
    """``utils.init_dl_program(seed=...)``: random, numpy and torch from seed, seed+1, seed+2."""
    random.seed(seed)
    np.random.seed(seed + 1)
    torch.manual_seed(seed + 2)


def _load(archive: str):
    from selfsup.modalities.series.sources import load_ucr

    d = load_ucr(archive)
    return d.train, d.train_labels, d.test, d.test_labels


def _copy_weights(ours, theirs) -> None:
    """The authors' names -> ours (``feature_extractor.net.i`` is ``blocks.i``)."""
    state = {k.replace("feature_extractor.net.", "blocks."): v for k, v in theirs.state_dict().items()}
    ours.load_state_dict(state)


def equivalence(ref, archive: str) -> dict:
    _, TSEncoder, ref_loss, _ = ref
    from selfsup.backbones.series import TS2VecEncoder
    from selfsup.losses.series import hierarchical_contrastive_loss

    torch.manual_seed(0)
    x = _load(archive)[0][:8].clone()  # (B, C, T)
    theirs = TSEncoder(input_dims=x.shape[1], output_dims=320)
    ours = TS2VecEncoder(x.shape[1], 320)
    _copy_weights(ours, theirs)
    theirs.eval(), ours.eval()
    with torch.no_grad():
        out_eval = (ours.encode(x) - theirs(x.transpose(1, 2).clone())).abs().max().item()
        # Training mode, dropout off, the same binomial mask (theirs draws it from numpy's global state).
        theirs.train().repr_dropout.p = 0.0
        ours.train().repr_dropout.p = 0.0
        np.random.seed(5)
        mask = torch.from_numpy(np.random.binomial(1, 0.5, size=(x.shape[0], x.shape[2]))).to(torch.bool)
        np.random.seed(5)
        out_masked = (ours.encode(x, mask) - theirs(x.transpose(1, 2).clone())).abs().max().item()
    z1 = torch.randn(8, 150, 320, requires_grad=True)
    z2 = torch.randn(8, 150, 320)
    a = ref_loss(z1, z2)
    (ga,) = torch.autograd.grad(a, z1)
    b = hierarchical_contrastive_loss(z1, z2)
    (gb,) = torch.autograd.grad(b, z1)
    c = hierarchical_contrastive_loss(z1, z2, mask=torch.ones(8, 150, dtype=torch.bool))
    (gc,) = torch.autograd.grad(c, z1)
    return {
        "part": "equivalence",
        "archive": archive,
        "encoder_eval_max_abs_diff": out_eval,
        "encoder_masked_train_max_abs_diff": out_masked,
        "loss_reference": a.item(),
        "loss_diff": abs(a.item() - b.item()),
        "loss_masked_path_diff": abs(a.item() - c.item()),
        "grad_max_abs_diff": (ga - gb).abs().max().item(),
        "grad_masked_path_max_abs_diff": (ga - gc).abs().max().item(),
    }


def step_time(ref, archive: str, repeats: int = 5, inner: int = 5) -> dict:
    """Two full-length views through the encoder, the loss and backward, with the same weights and the
    same batch on both sides, interleaved (best of ``repeats`` rounds of ``inner`` calls each): the
    maths alone, without either training loop."""
    _, TSEncoder, ref_loss, _ = ref
    from selfsup.backbones.series import TS2VecEncoder
    from selfsup.losses.series import hierarchical_contrastive_loss

    torch.manual_seed(0)
    x = _load(archive)[0][:8].clone()
    theirs = TSEncoder(input_dims=x.shape[1], output_dims=320)
    ours = TS2VecEncoder(x.shape[1], 320)
    _copy_weights(ours, theirs)
    valid = torch.ones(x.shape[0], x.shape[2], dtype=torch.bool)

    def run_theirs():
        a, b = (theirs(x.transpose(1, 2).clone(), mask="all_true") for _ in range(2))
        ref_loss(a, b).backward()

    def run_ours():  # the masked loss: the path the TS2Vec method takes
        a, b = (ours.encode(x, valid) for _ in range(2))
        hierarchical_contrastive_loss(a, b, mask=valid).backward()

    best = {"reference": float("inf"), "selfsup": float("inf")}
    run_theirs(), run_ours()  # warm-up
    for _ in range(repeats):
        for name, fn in (("reference", run_theirs), ("selfsup", run_ours)):
            start = time.perf_counter()
            for _ in range(inner):
                fn()
            best[name] = min(best[name], (time.perf_counter() - start) / inner)
    return {
        "part": "step",
        "archive": archive,
        "length": x.shape[2],
        "reference_seconds": round(best["reference"], 4),
        "selfsup_seconds": round(best["selfsup"], 4),
        "ratio": round(best["selfsup"] / best["reference"], 3),
    }


def reference_run(ref, archive: str, seed: int, iterations: int | None = None) -> dict:
    TS2Vec, _, _, eval_classification = ref
    xtr, ytr, xte, yte = _load(archive)
    train = xtr.transpose(1, 2).numpy().astype(np.float64)  # their (N, T, C)
    test = xte.transpose(1, 2).numpy().astype(np.float64)
    _seed_like_reference(seed)
    ticks: list[float] = []
    model = TS2Vec(
        input_dims=train.shape[-1],
        device="cpu",
        batch_size=8,
        lr=0.001,
        output_dims=320,
        max_train_length=3000,
        after_iter_callback=lambda model, loss: ticks.append(time.perf_counter()),
    )
    start = time.perf_counter()
    model.fit(train, n_iters=iterations)
    fit_seconds = time.perf_counter() - start
    row = {"steps": model.n_iters, "train_seconds": round(fit_seconds, 2), "median_step_seconds": _median_step(ticks)}
    if iterations is None:
        start = time.perf_counter()
        _, res = eval_classification(model, train, ytr.numpy(), test, yte.numpy(), eval_protocol="svm")
        row |= {"svm_top1": float(res["acc"]), "eval_seconds": round(time.perf_counter() - start, 1)}
    return row


def ours_run(archive: str, seed: int, runs: Path, iterations: int | None = None) -> dict:
    """selfsup's ``ts2vec-ucr`` as the series benchmark trains and scores it; with ``iterations``, a
    timing run: that many steps, with nothing the authors' ``fit`` does not do, and no evaluation."""
    opts = argparse.Namespace(runs=str(runs), threads=1, seed=seed)
    if iterations is None:
        return run_method(archive, "ts2vec", opts)
    sets = (
        f"data.options.iterations={iterations}",
        "train.knn_every=0",
        "eval.online=false",
        "eval.diagnose_every=0",
        "train.checkpoint_every=100000",
        "train.log_every=1",  # a timestamp per step, as the reference's after_iter_callback gives
    )
    row = run_method(archive, "ts2vec", opts, sets, evaluate=False)
    ticks = [e["time"] for e in _read(runs / f"ts2vec-{archive}" / "metrics.jsonl") if e.get("event") == "step"]
    return {**row, "median_step_seconds": _median_step(ticks)}


def _median_step(ticks: list[float]) -> float | None:
    """The median time between consecutive steps (the first step's warm-up and epoch ends left out by
    the median)."""
    return round(float(np.median(np.diff(ticks))), 4) if len(ticks) > 2 else None


def _ours_from(path: str, archive: str) -> dict | None:
    rows = _read(Path(path))
    rows = [r for r in rows if r.get("archive") == archive and r.get("unit") == "ts2vec" and "error" not in r]
    if not rows:
        return None
    r = rows[-1]
    return {"steps": r["steps"], "train_seconds": r["train_seconds"], "svm_top1": r["svm_top1"], "from": path}


def _mean_std(values: list[float]) -> str:
    return f"{np.mean(values):.3f}" + (f" ± {np.std(values):.3f}" if len(values) > 1 else "")


def report(rows: list[dict]) -> str:
    """The results file as markdown: equivalence, accuracy per archive (mean over seeds) and speed."""
    lines = []
    for r in (r for r in rows if r["part"] == "equivalence"):
        diffs = {k: f"{v:.2g}" for k, v in r.items() if k.endswith("diff")}
        lines.append(f"- equivalence on {r['archive']}: " + ", ".join(f"{k} {v}" for k, v in diffs.items()))
    acc = [r for r in rows if r["part"] == "accuracy"]
    if acc:
        lines += [
            "",
            "| archive | seeds | authors' code | selfsup | difference | authors' train s | selfsup train s |",
            "|---|---|---|---|---|---|---|",
        ]
        means = []
        for archive in dict.fromkeys(r["archive"] for r in acc):
            mine = [r for r in acc if r["archive"] == archive]
            ref = [r["reference"]["svm_top1"] for r in mine]
            our = [r["selfsup"]["svm_top1"] for r in mine]
            rt = np.mean([r["reference"]["train_seconds"] for r in mine])
            ot = np.mean([r["selfsup"]["train_seconds"] for r in mine])
            means.append((float(np.mean(ref)), float(np.mean(our))))
            seeds = ",".join(str(r["seed"]) for r in mine)
            lines.append(
                f"| {archive} | {seeds} | {_mean_std(ref)} | {_mean_std(our)} | "
                f"{100 * (means[-1][1] - means[-1][0]):+.1f} | {rt:.0f} | {ot:.0f} |"
            )
        ref, our = np.mean(means, axis=0)
        lines.append(f"| mean of {len(means)} | | {ref:.3f} | {our:.3f} | {100 * (our - ref):+.1f} | | |")
    for r in (r for r in rows if r["part"] == "step"):
        lines.append(
            f"- step maths on {r['archive']} (length {r['length']}, batch 8): encoder on two views, loss, "
            f"backward: {r['reference_seconds']} s (authors' code) and {r['selfsup_seconds']} s (selfsup), "
            f"ratio {r['ratio']}"
        )
    for r in (r for r in rows if r["part"] == "speed"):
        ref, our = r["reference"], r["selfsup"]
        lines.append(
            f"- speed on {r['archive']}: median step {ref.get('median_step_seconds')} s (authors' code) and "
            f"{our.get('median_step_seconds')} s (selfsup), ratio {r.get('median_step_ratio')}; end to end "
            f"(their fit, our train with its set-up and final kNN) {ref['train_seconds'] / ref['steps']:.3f} and "
            f"{our['train_seconds'] / our['steps']:.3f} s/step over {ref['steps']} and {our['steps']} steps, ratio "
            f"{r['seconds_per_step_ratio']}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reference", help="a checkout of github.com/yuezhihan/ts2vec")
    p.add_argument("--parts", default="equivalence", help="equivalence,accuracy,step,speed")
    p.add_argument("--archives", default="GunPoint")
    p.add_argument("--seeds", default="0")
    p.add_argument("--steps", type=int, default=40, help="speed: training steps each")
    p.add_argument("--ours-from", default=None, help="accuracy: selfsup's rows from a series benchmark .jsonl")
    p.add_argument("--results", default="benchmarks/results")
    p.add_argument("--date", default=date.today().isoformat())
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--report-only", action="store_true", help="print the results file as markdown")
    args = p.parse_args(argv)
    log = Path(args.results) / f"peer-ts2vec-{args.date}.jsonl"
    if args.report_only:
        print(report(_read(log)))
        return 0
    torch.set_num_threads(args.threads)
    # The reference's SVM grid passes SVC(probability=False), which scikit-learn 1.9 warns about
    # once per fit.
    warnings.filterwarnings("ignore", category=FutureWarning, module="sklearn")
    if not args.reference:
        p.error("--reference DIR is needed (a checkout of github.com/yuezhihan/ts2vec)")
    ref = _reference(args.reference)
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {"torch": torch.__version__, "machine": platform.platform(), "threads": args.threads, "argv": sys.argv[1:]}

    def emit(row: dict) -> None:
        row = {**row, **env}
        print(json.dumps(row), flush=True)
        with log.open("a") as f:
            f.write(json.dumps(row) + "\n")

    parts = args.parts.split(",")
    archives, seeds = args.archives.split(","), [int(s) for s in args.seeds.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp)
        for archive in archives:
            if "equivalence" in parts:
                emit(equivalence(ref, archive))
            for seed in seeds if "accuracy" in parts else []:
                theirs = reference_run(ref, archive, seed)
                # The series benchmark's rows are seed 0 (its default); other seeds train here.
                ours = _ours_from(args.ours_from, archive) if args.ours_from and seed == 0 else None
                ours = ours or ours_run(archive, seed, runs)
                emit({"part": "accuracy", "archive": archive, "seed": seed, "reference": theirs, "selfsup": ours})
            if "step" in parts:
                emit(step_time(ref, archive))
            if "speed" in parts:
                theirs = reference_run(ref, archive, 0, args.steps)
                ours = ours_run(archive, 0, runs, args.steps)
                emit(
                    {
                        "part": "speed",
                        "archive": archive,
                        "reference": theirs,
                        "selfsup": ours,
                        "seconds_per_step_ratio": round(
                            (ours["train_seconds"] / ours["steps"]) / (theirs["train_seconds"] / theirs["steps"]), 3
                        ),
                        "median_step_ratio": round(ours["median_step_seconds"] / theirs["median_step_seconds"], 3),
                    }
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
