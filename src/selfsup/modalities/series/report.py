"""The report's pictures of series runs: a few training series and the method's views of them, drawn
as line plots from the run's own view settings (a fixed seed); padding is not drawn."""

from __future__ import annotations

import torch

from .views import SeriesViews

SHOWN = 4  # series drawn
CHANNELS = 3  # channels drawn per series (the first ones)


def pictures(ctx) -> dict[str, str]:
    if ctx.data is None:
        return {}
    return {"views": _views(ctx)}


def _views(ctx) -> str:
    plt, cfg = ctx.plt, ctx.cfg
    spec = ctx.encoder.input_spec if ctx.encoder is not None else {"length": ctx.data.train.shape[-1]}
    sample = ctx.data.train[:SHOWN].float()
    views = SeriesViews(cfg.view_configs(), spec)(sample, torch.Generator().manual_seed(0))
    rows = [("original", sample)] + [(f"view {i + 1}", v) for i, v in enumerate(views)]
    fig, axes = plt.subplots(len(rows), len(sample), figsize=(2.6 * len(sample), 1.5 * len(rows)), squeeze=False)
    for r, (title, batch) in enumerate(rows):
        for c in range(len(sample)):
            ax = axes[r][c]
            for channel in range(min(CHANNELS, batch.shape[1])):
                ax.plot(batch[c, channel].numpy(), linewidth=0.8)
            ax.tick_params(labelsize=6)
            if c == 0:
                ax.set_title(title, fontsize=7, loc="left")
    fig.tight_layout()
    return ctx.png(fig)
