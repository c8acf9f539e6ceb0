"""The report's pictures of table runs: a few training rows and the method's views of them as heat
maps (the run's own view maker, from a fixed seed; changed entries marked), and each column's
distribution in the training and test splits (histograms of numeric columns, category shares of
categorical ones). No image grids: a row is not a picture."""

from __future__ import annotations

import math

import numpy as np
import torch

from .schema import column_layout
from .views import TableViews

ROWS = 8  # training rows shown with their views
COLUMNS = 16  # columns whose distributions are drawn (the first ones)


def pictures(ctx) -> dict[str, str]:
    if ctx.data is None or "columns" not in ctx.data.meta:
        return {}
    return {"views": _views(ctx), "columns": _columns(ctx)}


def _display(x: torch.Tensor, meta: dict) -> np.ndarray:
    """Encoded rows as colours: numeric columns clipped to [-3, 3] standard deviations (or their
    min-max range), categorical codes spread over the same range by their vocabulary's size."""
    out = x.float().clone()
    _, categorical, cards = column_layout(meta)
    for j, k in zip(categorical, cards):
        out[:, j] = -3 + 6 * out[:, j] / max(k - 1, 1)
    return out.clamp(-3, 3).numpy()


def _views(ctx) -> str:
    data, plt, meta = ctx.data, ctx.plt, ctx.data.meta
    maker = TableViews(ctx.cfg.view_configs(), meta, data.train)
    sample = data.train[:ROWS].float()
    views = maker(sample, torch.Generator().manual_seed(0))
    names = [c["name"] for c in meta["columns"]]
    panels = [("rows (encoded)", sample)] + [(f"view {i + 1}", v) for i, v in enumerate(views)]
    fig, axes = plt.subplots(len(panels), 1, figsize=(max(4.0, 0.32 * len(names) + 1.5), 1.0 + 1.1 * len(panels)))
    axes = np.atleast_1d(axes)
    for ax, (title, rows) in zip(axes, panels):
        ax.imshow(_display(rows, meta), cmap="coolwarm", vmin=-3, vmax=3, aspect="auto", interpolation="nearest")
        changed = (rows != sample).numpy()
        r, c = np.nonzero(changed)
        ax.scatter(c, r, marker="x", s=12, color="black", linewidths=0.8)
        ax.set_title(
            f"{title}" + (f": {int(changed.sum())} entries changed (x)" if changed.any() else ""),
            fontsize=7,
            loc="left",
        )
        ax.set_yticks([])
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names if ax is axes[-1] else [], rotation=90, fontsize=6)
    fig.suptitle(f"{ctx.cfg.method}: {ROWS} training rows and their views (seeded)", fontsize=8)
    fig.tight_layout()
    return ctx.png(fig)


def _columns(ctx) -> str:
    data, plt, meta = ctx.data, ctx.plt, ctx.data.meta
    columns = meta["columns"][:COLUMNS]
    n = len(columns)
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 1.8 * rows), squeeze=False)
    splits = [("train", data.train)] + ([("test", data.test)] if data.test is not None else [])
    for j, (ax, col) in enumerate(zip(axes.flat, columns)):
        if col["kind"] == "categorical":
            k = len(col["categories"])
            width = 0.8 / len(splits)
            for i, (split, x) in enumerate(splits):
                share = torch.bincount(x[:, j].long(), minlength=k).float() / len(x)
                ax.bar(np.arange(k) + i * width, share.numpy(), width=width, label=split)
            ax.set_xticks(range(k))
            ax.set_xticklabels(col["categories"] if k <= 8 else [], rotation=90, fontsize=5)
        else:
            for split, x in splits:
                ax.hist(x[:, j].numpy(), bins=30, density=True, histtype="step", label=split)
        ax.set_title(f"{col['name']} ({col['kind']})", fontsize=7, loc="left")
        ax.tick_params(labelsize=5)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6)
    extra = f" (the first {COLUMNS} of {len(meta['columns'])})" if len(meta["columns"]) > COLUMNS else ""
    fig.suptitle(f"{data.name}: column distributions as encoded, train vs test{extra}", fontsize=8)
    fig.tight_layout()
    return ctx.png(fig)
