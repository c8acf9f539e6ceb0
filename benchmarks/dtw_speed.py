"""Speed of selfsup's batched DTW (the 1-NN DTW baseline) against a compiled peer, on real archives.

    pip install aeon==1.6.0 numba   # the peer: aeon's distances are numba-compiled
    python -m benchmarks.dtw_speed --archives GunPoint,OSULeaf,ACSF1 --queries 16
    python -m benchmarks.dtw_speed --report-only --date D

For each archive, the first ``--queries`` test series against every training series, full window, one
thread each, interleaved ``--repeats`` times in this process (series of unequal lengths at their own
lengths, the cells counted as each pair's n * m):

- ``selfsup``: ``dtw_matrix`` with its default blocks (on the CPU about ``2^19 / T`` pairs of series
  up to ``T`` long, so a diagonal's passes stay in cache);
- ``selfsup-one-block``: the same code with blocks of 2^15 pairs (the default before the cache rule);
- ``aeon``: ``aeon.distances.dtw_pairwise_distance`` (aeon 1.6, numba), a per-pair compiled loop, as the
  ceiling a compiled CPU DTW reaches. Its distance is the squared one; its square root is compared with
  ours to show both compute the same thing.

Rows go to ``<results>/dtw-speed-<date>.jsonl`` with the load average seen at the start, so a figure
taken on a busy machine says so.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
from datetime import date
from pathlib import Path

import torch

from .series import _append, _read, machine


def _variants():
    from selfsup.evaluate.dtw import dtw_matrix

    out = {
        "selfsup": lambda q, r: dtw_matrix(q, r),
        "selfsup-one-block": lambda q, r: dtw_matrix(q, r, chunk_pairs=1 << 15),
    }
    try:
        import numba  # noqa: F401, PLC0415 (only to say clearly why the peer is missing)
        from aeon.distances import dtw_pairwise_distance  # noqa: PLC0415
    except ImportError as e:
        print(f"aeon's compiled DTW unavailable ({e}); pip install numba aeon to time the peer")
    else:
        dtw_pairwise_distance(torch.randn(2, 1, 8).double().numpy(), torch.randn(2, 1, 8).double().numpy())  # compile
        out["aeon"] = lambda q, r: torch.from_numpy(dtw_pairwise_distance(_unpadded(q), _unpadded(r))).sqrt()
    return out


def _unpadded(x: torch.Tensor):
    """aeon's input: one ``(N, C, T)`` array, or for unequal lengths a list of ``(C, length)`` arrays
    without their NaN padding."""
    from selfsup.evaluate.dtw import series_lengths

    lengths = series_lengths(x)
    if bool((lengths == x.shape[-1]).all()):
        return x.double().numpy()
    return [s[:, :n].double().numpy() for s, n in zip(x, lengths.tolist(), strict=True)]


def _commit() -> str:
    """The commit of the selfsup that is timed (a worktree of an older one can be timed beside)."""
    import selfsup  # noqa: PLC0415

    where = Path(selfsup.__file__).parent
    done = subprocess.run(["git", "-C", str(where), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def run(args) -> list[dict]:
    from selfsup.modalities.series.sources import load_ucr

    torch.set_num_threads(args.threads)
    variants = _variants()
    rows = []
    for archive in args.archives.split(","):
        data = load_ucr(archive)
        queries, references = data.test[: args.queries].contiguous(), data.train.contiguous()
        from selfsup.evaluate.dtw import series_lengths

        cells = int(series_lengths(queries).sum()) * int(series_lengths(references).sum())  # sum of n * m
        seconds = {name: [] for name in variants}
        results = {}
        load = os.getloadavg()[0]
        for _ in range(args.repeats):
            for name, fn in variants.items():
                start = time.perf_counter()
                results[name] = fn(queries, references).float()
                seconds[name].append(time.perf_counter() - start)
        ours = results["selfsup"]
        row = {
            "archive": archive,
            "commit": _commit(),
            "queries": len(queries),
            "references": len(references),
            "length": queries.shape[-1],  # the longest; cells counts each pair's own n * m
            "channels": queries.shape[1],
            "cells": cells,
            "load_average_at_start": round(load, 2),
            "seconds": {k: round(statistics.median(v), 3) for k, v in seconds.items()},
            "cells_per_second": {k: round(cells / statistics.median(v)) for k, v in seconds.items()},
            "max_relative_difference": {
                k: float(((v - ours).abs() / ours.abs().clamp(min=1e-6)).max())
                for k, v in results.items()
                if k != "selfsup"
            },
            "same_nearest_neighbour": {k: bool((v.argmin(1) == ours.argmin(1)).all()) for k, v in results.items()},
            "repeats": args.repeats,
            "machine": machine() | {"threads": args.threads, "note": "see load_average_at_start"},
        }
        print(json.dumps({k: row[k] for k in ("archive", "seconds", "cells_per_second", "max_relative_difference")}))
        _append(Path(args.results) / f"dtw-speed-{args.date}.jsonl", row)
        rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        "| archive | selfsup commit | pairs x length² | selfsup (M cells/s) | one block (M cells/s) "
        "| aeon, numba (M cells/s) | selfsup / aeon time | load at start |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        c, s = r["cells_per_second"], r["seconds"]
        ratio = f"{s['selfsup'] / s['aeon']:.2f}" if "aeon" in s else "-"
        lines.append(
            f"| {r['archive']} | {r.get('commit', '-')} | {r['queries']}x{r['references']} x {r['length']}² "
            f"| {c['selfsup'] / 1e6:.1f} "
            f"| {c['selfsup-one-block'] / 1e6:.1f} | {c['aeon'] / 1e6 if 'aeon' in c else float('nan'):.1f} "
            f"| {ratio} | {r['load_average_at_start']} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--archives", default="GunPoint,OSULeaf,ACSF1")
    p.add_argument("--queries", type=int, default=16)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--results", default=str(Path(__file__).parent / "results"))
    p.add_argument("--date", default=date.today().isoformat())
    p.add_argument("--report-only", action="store_true")
    args = p.parse_args(argv)
    rows = _read(Path(args.results) / f"dtw-speed-{args.date}.jsonl") if args.report_only else run(args)
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
