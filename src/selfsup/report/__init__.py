"""``selfsup report RUN_DIR [RUN_DIR ...]``: one self-contained HTML page about one or more runs.

The page answers three questions: is the representation good (evaluation table, kNN confusion
matrix, a 2-D map of test embeddings), is training healthy (loss and learning rate, online kNN,
the collapse diagnostics against their alarm thresholds, the singular value spectrum), and what
did the model see (the modality draws its samples: for images, pairs of augmented views from the
run's own pipeline, reconstructions and attention maps). With several runs the curves are
overlaid and a comparison table leads. Images are embedded PNGs, so the file reads offline. Plots
need the optional extra ``selfsup[report]`` (matplotlib; scikit-learn for the t-SNE map); the
page says which parts were skipped and why.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config import load_run_config
from ..data.sources import load_dataset
from ..encoder import load_encoder, preprocess_fn
from ..errors import UsageError
from ..evaluate.features import extract_features
from ..evaluate.protocols import result_rows
from ..modalities import get_modality
from ..runs import RunFolder
from . import plots
from .layers import layers_figures
from .neighbours import neighbour_strip


class _Run:
    def __init__(self, path: Path):
        self.folder = RunFolder(path)
        self.folder.require("config")
        self.name = self.folder.path.name
        self.config_text = self.folder.config.read_text()
        self.summary = self.folder.read_summary()
        self.metrics = self.folder.read_metrics()

    def events(self, kind: str) -> list[dict]:
        return [m for m in self.metrics if m.get("event") == kind]


@dataclass
class RunContext:
    """What a modality's :meth:`~selfsup.modalities.base.Modality.pictures` gets about one run."""

    name: str
    folder: RunFolder
    cfg: Any
    data: Any  # the run's Dataset, or None when it cannot be loaded here
    encoder: Any  # the exported encoder, or None for an unfinished run
    device: Any
    plt: Any
    skipped: list[str] = field(default_factory=list)
    png: Any = staticmethod(plots.png)

    def features(self, samples, rows=None):
        """The encoder's features of raw ``samples``, or of their ``rows`` (an index tensor), read and
        encoded a chunk of 512 at a time on the run's device (a memory-mapped split is not read in)."""
        transform = preprocess_fn(self.encoder)
        if rows is None:
            return extract_features(self.encoder, samples, transform, 512, self.device)
        chunks = [rows[i : i + 512] for i in range(0, len(rows), 512)]
        return torch.cat([extract_features(self.encoder, samples[c], transform, 512, self.device) for c in chunks])


def _context(run: _Run, plt, device, skipped: list[str]) -> RunContext:
    cfg = load_run_config(run.folder.config)
    try:
        options = {**cfg.data.options, **({"target": cfg.data.target} if cfg.data.target else {})}
        data = load_dataset(cfg.data.name, data_dir=cfg.data.data_dir, options=options)
    except UsageError as e:
        skipped.append(f"{run.name}: pictures of the data skipped ({e})")
        data = None
    encoder = load_encoder(run.folder.path, device) if run.folder.encoder.is_file() else None
    if encoder is None:
        skipped.append(f"{run.name}: no encoder (unfinished run): views only, no map or confusion matrix")
    return RunContext(run.name, run.folder, cfg, data, encoder, device, plt, skipped)


def _run_pictures(ctx: RunContext) -> dict[str, str]:
    """The modality's pictures, then the map and the confusion matrix (finished runs with labels)."""
    pics = get_modality(ctx.cfg.modality.name).pictures(ctx)
    data = ctx.data
    if ctx.encoder is None or data is None:
        return pics
    pics.update(neighbour_strip(ctx))  # pictures' runs: test images beside their nearest training images
    if data.test is None or data.test_labels is None or data.task != "classification":
        ctx.skipped.append(f"{ctx.name}: {data.name} has no labelled test split: no map or confusion matrix")
        return pics
    pics["map"] = plots.embedding_map(ctx)
    pics["confusion"] = plots.confusion(ctx)
    return pics


def _table(rows: list[dict], columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 10 else f"{v:,.1f}"
    return str(v)


def _eval_rows(run: _Run) -> list[dict]:
    s = run.summary
    rows = [
        {
            "run": run.name,
            "protocol": "kNN (k, T from config)",
            "measure": "top-1",
            "dataset": s.get("dataset"),
            "encoder": s.get("knn_top1"),
            "raw input": s.get("knn_top1_raw"),
        }
    ]
    for dataset, results in (s.get("eval") or {}).items():
        for row in result_rows(results):
            rows.append(
                {
                    "run": run.name,
                    "protocol": row.protocol,
                    "measure": row.measure,
                    "dataset": dataset,
                    "encoder": row.cells()[0],
                    "raw input": row.cells()[1],
                }
            )
    return rows


_FIGURES = (
    ("views", "augmented views (the run's own pipeline)"),
    ("map", "test embeddings"),
    ("confusion", "kNN confusion matrix"),
    ("reconstructions", "original / masked / reconstructed test images"),
    ("attention", "class-token attention maps (last block, per head)"),
    ("neighbours", "test images and their nearest training images"),
)


def write_report(run_dirs: list[str | Path], out: str | Path | None = None, device: str = "cpu") -> Path:
    if not run_dirs:
        raise UsageError("selfsup report needs at least one run folder")
    runs = [_Run(Path(p)) for p in run_dirs]
    out = Path(out) if out else runs[0].folder.path / "report.html"
    skipped: list[str] = []
    sections: list[str] = []
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        plt = None
        skipped.append("all plots: matplotlib is not installed (pip install 'selfsup[report]')")

    compare_cols = [
        "run",
        "method",
        "dataset",
        "epochs_done",
        "knn_top1",
        "knn_top1_raw",
        "train_seconds",
        "images_per_second",
        "finished",
    ]
    sections.append("<h2>Runs</h2>" + _table([{"run": r.name, **r.summary} for r in runs], compare_cols))
    sections.append(
        "<h2>Evaluation</h2>"
        + _table(
            [row for r in runs for row in _eval_rows(r)],
            ["run", "dataset", "protocol", "measure", "encoder", "raw input"],
        )
    )
    if plt is not None:
        sections.append(f"<h2>Training</h2><img alt='training curves' src='{plots.curves(runs, plt)}'>")
        over_time, spectrum = plots.diagnostics(runs, plt)
        if over_time:
            sections.append(
                f"<h2>Health</h2><img alt='diagnostics' src='{over_time}'><img alt='spectrum' src='{spectrum}'>"
            )
        else:
            skipped.append("diagnostics: the runs logged none (eval.diagnose_every was 0)")
        for run in runs:
            alarms = run.events("collapse")
            pics = _run_pictures(_context(run, plt, device, skipped))
            parts = [f"<h2>{html.escape(run.name)}</h2>"]
            if alarms:
                parts.append(
                    "<p class='alarm'>collapse alarm: "
                    + html.escape(
                        "; ".join(f"epoch {a.get('epoch')}: {', '.join(a.get('reasons', []))}" for a in alarms)
                    )
                    + "</p>"
                )
            for key, title in _FIGURES:
                if key in pics:
                    parts.append(
                        f"<figure><img alt='{key}' src='{pics[key]}'><figcaption>{title}</figcaption></figure>"
                    )
            parts.append(layers_figures(run.summary, plt))  # selfsup eval --protocol layers
            parts.append(f"<details><summary>config.yaml</summary><pre>{html.escape(run.config_text)}</pre></details>")
            sections.append("".join(parts))
    if skipped:
        sections.append("<h2>Skipped</h2><ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in skipped) + "</ul>")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>selfsup report</title><style>
body{{font-family:system-ui,sans-serif;margin:2em;max-width:1400px}} img{{max-width:100%}}
table{{border-collapse:collapse;margin:0.5em 0}} td,th{{border:1px solid #ccc;padding:3px 8px;font-size:13px}}
figure{{display:inline-block;margin:0.5em;vertical-align:top}} .alarm{{color:#b00;font-weight:bold}}
pre{{background:#f6f6f6;padding:0.5em}}</style></head><body>
<h1>selfsup report: {html.escape(", ".join(r.name for r in runs))}</h1>{"".join(sections)}
<script type="application/json" id="summaries">{html.escape(json.dumps([r.summary for r in runs]))}</script>
</body></html>"""
    out.write_text(page)
    return out
