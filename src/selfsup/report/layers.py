"""The report's picture of the ``layers`` protocol (``selfsup eval --protocol layers``): top-1 of the
kNN and of the linear probe on the backbone and on each projector and predictor layer, beside the
raw-input baseline, with the uniformity and tolerance of each layer's test features."""

from __future__ import annotations

import html

from .plots import png


def layers_figures(summary: dict, plt) -> str:
    """HTML figures, one per data set the run was evaluated on with the layers protocol (empty when
    it never was)."""
    out = []
    for dataset, entry in (summary.get("eval") or {}).items():
        result = (entry or {}).get("layers") if isinstance(entry, dict) else None
        if not result or not result.get("layers"):
            continue
        caption = f"layer by layer on {dataset}: top-1, uniformity and tolerance of the test features"
        if result.get("note"):
            caption += f" ({result['note']})"
        out.append(
            f"<figure><img alt='layers {html.escape(dataset)}' src='{figure(result, plt)}'>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    return "".join(out)


def figure(result: dict, plt) -> str:
    """One PNG (a data URI) of a layers result: top-1 per layer (kNN and linear, the raw input's as
    dashed lines), then uniformity and tolerance per layer (the raw input's as dotted lines)."""
    layers, raw = result["layers"], result.get("raw") or {}
    names = [layer["name"] for layer in layers]
    x = list(range(len(layers)))
    fig, axes = plt.subplots(1, 3, figsize=(max(9.0, 3 * (1.2 + 0.45 * len(layers))), 3.4))
    panels = (
        (axes[0], "top-1 (test split)", (("kNN", "knn_top1", "C0"), ("linear", "linear_top1", "C1"))),
        (axes[1], "uniformity (lower: more uniform)", (("uniformity", "uniformity", "C2"),)),
        (axes[2], "tolerance (mean same-class similarity)", (("tolerance", "tolerance", "C3"),)),
    )
    for ax, title, series in panels:
        for label, key, color in series:
            ax.plot(x, [layer.get(key) for layer in layers], marker="o", color=color, label=label)
            if raw.get(key) is not None:
                ax.axhline(raw[key], color=color, linestyle="--", linewidth=1, label=f"{label}, raw input")
        ax.set_xticks(x, names, rotation=30, ha="right", fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return png(fig)
