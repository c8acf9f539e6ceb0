"""Self-supervised series methods over the offline UCR/UEA archives, under TS2Vec's SVM protocol, beside
1-NN Euclidean and 1-NN DTW on the raw series and beside the TS2Vec paper's figures.

    python -m benchmarks.series [--methods ts2vec,tstcc,tfc,frameproj,simclr] [--archives A,B,...]
        [--runs runs/series-benchmark] [--results benchmarks/results] [--threads 1] [--report-only]

Per archive and method: the shipped ``<method>-ucr`` recipe (``selfsup train <method>-ucr --data
ucr:NAME``) on the CPU, then ``selfsup eval --protocol svm`` on its encoder; per archive once, the
1-NN ED and DTW (full window) baselines. Every finished unit is appended as one JSON line to
``<results>/series-<date>.jsonl`` and skipped when the command runs again (so a long benchmark
continues where it stopped); at the end (and with ``--report-only``) the results are written to
``<results>/series-<date>.json`` and the markdown section ``<results>/series.md``. ``--phases`` runs
the units phase by phase over every archive (default: the baselines, TS2Vec, TS-TCC and TF-C first,
then SimCLR, then frame projections, the dearest on a CPU), archives from the cheapest to the dearest.
Wall times are taken on whatever shares the machine: not speed claims.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import sys
import time
import traceback
from datetime import date
from pathlib import Path

import torch

from selfsup.config import build_config
from selfsup.evaluate.dtw import nearest_neighbour_accuracy
from selfsup.evaluate.run import evaluate_run
from selfsup.modalities.series.sources import load_ucr
from selfsup.training import train

# Cheapest first (series length x training size x channels).
ARCHIVES = [
    "ItalyPowerDemand",
    "JapaneseVowels",
    "BasicMotions",
    "GunPoint",
    "Coffee",
    "Trace",
    "ArrowHead",
    "PickupGestureWiimoteZ",
    "OSULeaf",
    "ACSF1",
    "PLAID",
    "PigCVP",
]
METHODS = ["ts2vec", "tstcc", "tfc", "frameproj", "simclr"]
NAMES = {"ts2vec": "TS2Vec", "tstcc": "TS-TCC", "tfc": "TF-C", "frameproj": "FrameProj", "simclr": "SimCLR"}

# The TS2Vec paper's per-archive accuracies (Yue et al. 2022, arXiv:2106.10466, appendix table of the 128
# UCR sets) could not be read here; these are second-hand: Sun et al. 2024 (TEST, ICLR 2024,
# arXiv:2308.08241) Appendix Table 14, "Accuracies on All Datasets of the UCR Archive", as a Markdown
# transcription found with the search tool (find_string id 56191599550, repository not named). That
# table has a column labelled "TCN" and one labelled "TS2Vec"; TS2Vec's encoder is a TCN and the two
# disagree, so both are kept and neither is verified against the TS2Vec paper. None for the UEA sets.
PAPER_SOURCE = (
    "second-hand, unverified: Sun et al. 2024 (TEST, arXiv:2308.08241) Appendix Table 14, columns "
    "'TCN' and 'TS2Vec'; the TS2Vec paper's own appendix table was not readable here"
)
PAPER = {  # archive: (Table 14 "TCN" column, Table 14 "TS2Vec" column)
    "GunPoint": (0.980, 0.987),
    "ItalyPowerDemand": (0.925, 0.960),
    "ArrowHead": (0.857, 0.817),
    "OSULeaf": (0.851, 0.843),
    "ACSF1": (0.910, 0.910),
    "PickupGestureWiimoteZ": (0.823, 0.760),
    "PLAID": (0.561, 0.549),
    "Coffee": (1.000, 1.000),
    "PigCVP": (0.815, 0.870),
    "Trace": (1.000, 1.000),
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument(
        "--phases",
        default="baselines,ts2vec,tstcc,tfc;simclr;frameproj",
        help="units run over every archive phase by phase (';' between phases), so the dearest come last",
    )
    p.add_argument("--archives", default=",".join(ARCHIVES))
    p.add_argument("--runs", default="runs/series-benchmark")
    p.add_argument("--results", default="benchmarks/results")
    p.add_argument("--date", default=date.today().isoformat(), help="which results file to continue or report")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--device", default="cpu", help="cpu or cuda; rows say where they ran, the report marks non-CPU ones"
    )
    p.add_argument(
        "--reread-pool",
        choices=("flatten", "mean", "max", "as-trained"),
        help="score the finished runs of --methods in --runs again, read out with this pool (tstcc-cnn) or as "
        "trained, and append them as those units' rows; no training",
    )
    p.add_argument("--report-only", action="store_true")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    log = results / f"series-{args.date}.jsonl"
    methods, archives = args.methods.split(","), args.archives.split(",")
    if not args.report_only:
        Path(args.runs).mkdir(parents=True, exist_ok=True)
        lock = open(Path(args.runs) / ".lock", "w")  # noqa: SIM115 (held until the process ends)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            # A second run would delete the first one's run folders under it (an interrupted unit
            # starts again from nothing): the TS-TCC BasicMotions unit of 2026-11-29 failed so.
            print(f"another benchmarks.series is running on {args.runs}; wait for it or pass --runs", file=sys.stderr)
            return 2
        done = {(r["archive"], r["unit"]) for r in _read(log) if "error" not in r}
        for archive, unit in _reread_units(args, archives, methods):
            record = _guard(archive, unit, lambda a=archive, m=unit: reread(a, m, args, _latest(_read(log))))
            _append(log, {**record, "argv": argv})
        for phase in args.phases.split(";") if args.reread_pool is None else ():
            units = [u for u in phase.split(",") if u == "baselines" or u in methods]
            for archive in archives:
                for unit in units:
                    if (archive, unit) in done:
                        continue
                    if unit == "baselines":
                        record = _guard(archive, unit, lambda a=archive: baselines(a, args.device))
                    else:
                        record = _guard(archive, unit, lambda a=archive, m=unit: run_method(a, m, args))
                    _append(log, {**record, "argv": argv})
    rows = _read(log)
    # The results file is filled by any number of invocations (each unit keeps its own argv); this
    # command alone runs every unit still missing from it, or all of them into a fresh --results.
    report = {"command": f"python -m benchmarks.series --date {args.date}", "machine": machine()}
    report["results"] = rows
    (results / f"series-{args.date}.json").write_text(json.dumps(report, indent=1))
    (results / "series.md").write_text(markdown(rows, report, methods, archives))
    print((results / "series.md").read_text())
    return 0


def baselines(archive: str, device: str = "cpu") -> dict:
    data = load_ucr(archive)
    train, test = data.train.to(device), data.test.to(device)
    out = {}
    for metric in ("euclidean", "dtw"):
        start = time.perf_counter()
        out[metric] = nearest_neighbour_accuracy(train, data.train_labels, test, data.test_labels, metric)
        out[f"{metric}_seconds"] = round(time.perf_counter() - start, 1)  # .item() inside waited for the device
    return {**out, "device": _device_name(device)}


def _device_name(device: str) -> str:
    return torch.cuda.get_device_name(torch.device(device)) if torch.device(device).type == "cuda" else "cpu"


def run_method(archive: str, method: str, args, sets: tuple[str, ...] = (), evaluate: bool = True) -> dict:
    """Train ``<method>-ucr`` on one archive into ``<args.runs>/<method>-<archive>`` (``sets``: more
    ``--set`` overrides) and, with ``evaluate``, score it under the SVM protocol."""
    out = Path(args.runs) / f"{method}-{archive}"
    if out.exists():  # an interrupted unit starts again from nothing
        import shutil

        shutil.rmtree(out)
    device = getattr(args, "device", "cpu")
    sets = [f"train.threads={args.threads}", f"seed={args.seed}", *sets]
    cfg = build_config(f"{method}-ucr", sets, data=f"ucr:{archive}", device=device)
    start = time.perf_counter()
    summary = train(cfg, out=out)
    row = {
        "knn_top1": summary.get("knn_top1"),
        "epochs": summary.get("epochs"),
        "steps": summary.get("epochs", 0) * summary.get("steps_per_epoch", 0),
        "batch_size": summary.get("batch_size"),
        "train_seconds": round(time.perf_counter() - start, 1),
        "device": _device_name(device),
    }
    if not evaluate:
        return row
    return {**_score(out, device), **row}


def _score(out: Path, device: str, pool: str | None = None) -> dict:
    """A finished run under the SVM protocol: its accuracy, the chosen C, the feature size and the
    seconds taken."""
    start = time.perf_counter()
    result = evaluate_run(out, protocols=["svm"], raw=False, device=device, pool=pool)
    return {
        "svm_top1": result["svm_top1"],
        "svm_C": result["svm"].get("C"),
        "feature_dim": result["data"]["feature_dim"],
        "eval_seconds": round(time.perf_counter() - start, 1),
    }


def _reread_units(args, archives: list[str], methods: list[str]) -> list[tuple[str, str]]:
    if args.reread_pool is None:
        return []
    return [(a, m) for a in archives for m in methods if (Path(args.runs) / f"{m}-{a}" / "summary.json").is_file()]


def reread(archive: str, method: str, args, latest: dict) -> dict:
    """The unit's finished run scored again under the SVM protocol with ``--reread-pool``; its training
    figures are the unit's last row's (the pool never enters TS-TCC's training: docs/methods/tstcc.md)."""
    out = Path(args.runs) / f"{method}-{archive}"
    trained = latest.get((archive, method), {})
    pool = None if args.reread_pool == "as-trained" else args.reread_pool
    scored = _score(out, args.device, pool)
    keep = ("epochs", "steps", "batch_size", "train_seconds", "device")
    if not trained:  # the unit was stopped after training, before its row: the run's own summary
        summary = json.loads((out / "summary.json").read_text())
        trained = {
            "epochs": summary.get("epochs_done"),
            "steps": (summary.get("epochs_done") or 0) * (summary.get("steps_per_epoch") or 0),
            "batch_size": summary.get("batch_size"),
            "train_seconds": summary.get("train_seconds"),  # the loop alone, without set-up
        }
    return {
        **scored,
        **{k: trained[k] for k in keep if k in trained},
        "pool": args.reread_pool,
        "reread_from": str(out),
    }


def _guard(archive: str, unit: str, fn) -> dict:
    print(f"[{time.strftime('%H:%M:%S')}] {archive} {unit} ...", flush=True)
    try:
        record = fn()
    except Exception as e:  # one unit's failure is recorded and the benchmark goes on
        record = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-2000:]}
    record = {"archive": archive, "unit": unit, **record}
    print(json.dumps({k: v for k, v in record.items() if k != "trace"}), flush=True)
    return record


def _append(path: Path, record: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def _read(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def machine() -> dict:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "note": "2 CPU cores shared with other jobs: wall times are not speed claims",
    }


def _latest(rows: list[dict]) -> dict:
    out = {}
    for r in rows:
        if "error" not in r:
            out[(r["archive"], r["unit"])] = r
    return out


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _fmt(v, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _elsewhere(row: dict) -> str:
    """The marks of a unit that ran on another device than these CPUs (rows before 2026-11-30 ran
    here), and of one whose finished run was scored again with another readout (``--reread-pool``)."""
    return ("" if row.get("device", "cpu") == "cpu" else " (G)") + (" (R)" if "reread_from" in row else "")


def markdown(rows: list[dict], report: dict, methods: list[str], archives: list[str]) -> str:
    latest = _latest(rows)
    errors = [r for r in rows if "error" in r and (r["archive"], r["unit"]) not in latest]
    head = ["archive"] + [NAMES[m] for m in methods] + ["1-NN ED", "1-NN DTW", "paper 'TCN'", "paper 'TS2Vec'"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    columns: dict[str, list] = {h: [] for h in head[1:]}
    complete = []  # archives where every SSL method and both baselines finished
    for archive in archives:
        base = latest.get((archive, "baselines"), {})
        cells = [latest.get((archive, m), {}).get("svm_top1") for m in methods]
        cells += [base.get("euclidean"), base.get("dtw"), *PAPER.get(archive, (None, None))]
        marks = [_elsewhere(latest.get((archive, m), {})) for m in methods] + [_elsewhere(base)] * 2 + ["", ""]
        lines.append("| " + " | ".join([archive] + [_fmt(c) + k for c, k in zip(cells, marks)]) + " |")
        if all(c is not None for c in cells[: len(methods) + 2]):
            complete.append(archive)
            for h, c in zip(head[1:], cells):
                columns[h].append(c)
    lines.append(
        "| **mean over the "
        + f"{len(complete)} archives every method finished** | "
        + " | ".join(_fmt(_mean(columns[h])) for h in head[1:])
        + " |"
    )
    ts2vec = {a: latest[(a, "ts2vec")]["svm_top1"] for a in archives if (a, "ts2vec") in latest}
    gaps = {i: [ts2vec[a] - PAPER[a][i] for a in ts2vec if a in PAPER] for i in (0, 1)}
    times = [
        "| archive | " + " | ".join(NAMES[m] for m in methods) + " | 1-NN ED | 1-NN DTW |",
        "|" + "---|" * (len(methods) + 3),
    ]
    for archive in archives:
        base = latest.get((archive, "baselines"), {})
        cells = [latest.get((archive, m), {}).get("train_seconds") for m in methods]
        times.append(
            "| "
            + " | ".join(
                [archive]
                + [_fmt(c, 0) for c in cells]
                + [_fmt(base.get("euclidean_seconds"), 1), _fmt(base.get("dtw_seconds"), 1)]
            )
            + " |"
        )
    devices = sorted({r["device"] for r in latest.values() if r.get("device", "cpu") != "cpu"})
    pools = sorted({r["pool"] for r in latest.values() if "reread_from" in r})
    text = [
        "## Time series: SSL methods on the offline UCR/UEA archives (TS2Vec's SVM protocol)",
        "",
        f"Command: `{report['command']}` (it runs whatever units the results file lacks; the file was filled "
        "by several invocations in a cheapest-first order, each unit's own arguments are in the JSON). "
        f"Machine: {report['machine']['processor']}, "
        f"{report['machine']['cpus']} CPUs, torch {report['machine']['torch']}, "
        f"{report['machine']['threads']} thread(s); {report['machine']['note']}.",
        "",
        "Test accuracy of an RBF SVM (C by 5-fold CV over 1e-4..1e4 and inf, TS2Vec's `fit_svm`) on each "
        "method's frozen encoder, trained with its shipped `<method>-ucr` recipe (TS2Vec's budget: 200 "
        "steps, 600 above 100,000 values); 1-NN on the raw series (DTW with a full window). "
        f"Paper columns: {PAPER_SOURCE}.",
        *(["", f"(G): trained and evaluated on {', '.join(devices)}, not on these CPUs."] if devices else []),
        *(
            [
                "",
                f"(R): the unit's trained encoder scored again (no retraining), read out: {', '.join(pools)}.",
            ]
            if pools
            else []
        ),
        "",
        *lines,
        "",
        f"TS2Vec minus the paper over the {len(gaps[0])} archives with a paper figure: "
        f"{_fmt(_mean(gaps[0]))} against the 'TCN' column, {_fmt(_mean(gaps[1]))} against the 'TS2Vec' column "
        f"(mean absolute difference {_fmt(_mean([abs(g) for g in gaps[0]]))} and "
        f"{_fmt(_mean([abs(g) for g in gaps[1]]))}).",
        "",
        "Training wall time in seconds (taken while other jobs shared the 2 cores); baselines: evaluation time.",
        "",
        *times,
    ]
    text += _reread_table(rows)
    if errors:
        text += ["", "Units that failed (see the JSON for the trace):", ""]
        text += [f"- {r['archive']} {r['unit']}: {r['error'][:200]}" for r in errors]
    return "\n".join(text) + "\n"


def _reread_table(rows: list[dict]) -> list[str]:
    """Each re-read unit beside the row it re-read (the last trained row of the unit before it)."""
    lines, trained = [], {}
    for r in rows:
        if "error" in r:
            continue
        if "reread_from" not in r:
            trained[(r["archive"], r["unit"])] = r
        elif (r["archive"], r["unit"]) in trained:
            before = trained[(r["archive"], r["unit"])]
            lines.append(
                f"| {r['archive']} | {NAMES.get(r['unit'], r['unit'])} | {_fmt(before.get('svm_top1'))} "
                f"({before.get('feature_dim')}-d) | {_fmt(r['svm_top1'])} ({r['feature_dim']}-d, pool={r['pool']}) |"
            )
    if not lines:
        return []
    head = ["", "Re-read units: the same trained encoder, as trained and as re-read.", ""]
    return head + ["| archive | method | as trained | re-read |", "|---|---|---|---|", *lines]


if __name__ == "__main__":
    raise SystemExit(main())
