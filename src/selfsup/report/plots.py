"""The report's figures that do not depend on the kind of data: training curves, the health
diagnostics, a 2-D map of test embeddings and the kNN confusion matrix.

The map and the confusion matrix encode a bounded, seeded sample of each split (:func:`sample`),
drawn across the whole split: a folder's files are in class order, so its first images would show
the first classes only. A split of any size (a memory-mapped store) costs the same.
"""

from __future__ import annotations

import base64
import io

import torch

MAP_POINTS = 2000  # test embeddings in the 2-D map
CONFUSION_MEMORY = 20000  # training samples used as the kNN memory of the confusion matrix
CONFUSION_QUERIES = 10000  # test samples it classifies


def sample(n: int, k: int) -> torch.Tensor:
    """``min(n, k)`` indices of ``range(n)`` drawn with a fixed seed, in increasing order (all of them, in
    order, when ``n <= k``)."""
    if n <= k:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(0))[:k].sort().values


def png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def curves(runs: list, plt) -> str:
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.6))
    for run in runs:
        steps = run.events("step")
        axes[0].plot([m["step"] for m in steps], [m["loss"] for m in steps], label=run.name)
        axes[1].plot([m["step"] for m in steps], [m["lr"] for m in steps], label=run.name)
        knn = [m for m in run.events("epoch") if m.get("knn_top1") is not None]
        final = run.summary.get("knn_top1")
        xs, ys = [m["epoch"] for m in knn], [m["knn_top1"] for m in knn]
        if final is not None and run.summary.get("finished"):
            xs, ys = xs + [run.summary.get("epochs_done", run.summary.get("epochs"))], ys + [final]
        line = axes[2].plot(xs, ys, marker="o", label=f"{run.name} kNN (test)")[0]
        for key, style, what in (("online_knn_top1", "--", "online kNN"), ("online_linear_top1", ":", "online linear")):
            online = [m for m in run.events("epoch") if m.get(key) is not None]
            if online:  # on the training batches' augmented views: trends, not final figures
                axes[2].plot(
                    [m["epoch"] for m in online],
                    [m[key] for m in online],
                    style,
                    color=line.get_color(),
                    label=f"{run.name} {what}",
                )
    axes[2].legend(fontsize=7)
    for ax, title, xlabel in zip(
        axes, ("training loss", "learning rate", "top-1: kNN on test, online probes"), ("step", "step", "epoch")
    ):
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    return png(fig)


def diagnostics(runs: list, plt) -> tuple[str | None, str | None]:
    diag = {run.name: run.events("diagnostics") for run in runs}
    if not any(diag.values()):
        return None, None
    keys = [
        k
        for k in (
            "rankme_fraction",
            "proj_rankme_fraction",
            "norm_std_ratio",
            "proj_norm_std_ratio",
            "alignment",
            "uniformity",
        )
        if any(k in d for events in diag.values() for d in events)
    ]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 3.4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for run in runs:
            events = [d for d in diag[run.name] if key in d]
            ax.plot([d["epoch"] for d in events], [d[key] for d in events], marker=".", label=run.name)
            threshold = (events[-1].get("thresholds") or {}).get(key) if events else None
            if threshold is not None:
                ax.axhline(threshold, color="red", linestyle="--", linewidth=1, label="alarm threshold")
        ax.set_title(key.replace("_", " "))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    over_time = png(fig)
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for run in runs:
        last = [d for d in diag[run.name] if d.get("spectrum")]
        if last:
            s = last[-1]["spectrum"]
            ax.semilogy(range(1, len(s) + 1), s, label=f"{run.name} (epoch {last[-1]['epoch']})")
    ax.set_title("singular values of the embedding covariance (normalised)")
    ax.set_xlabel("index")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return over_time, png(fig)


def embedding_map(ctx) -> str | None:
    """t-SNE (PCA without scikit-learn) of a run's test embeddings, coloured by label."""
    data, _encoder, plt = ctx.data, ctx.encoder, ctx.plt
    shown = sample(len(data.test), MAP_POINTS)
    n_test = len(shown)
    test_f = ctx.features(data.test, shown)
    labels = data.test_labels[shown].numpy()
    try:
        from sklearn.manifold import TSNE

        xy = TSNE(n_components=2, init="pca", random_state=0, perplexity=30).fit_transform(
            torch.nn.functional.normalize(test_f, dim=1).cpu().numpy()
        )
        method = "t-SNE"
    except ImportError:
        centred = test_f - test_f.mean(0)
        xy = (centred @ torch.linalg.svd(centred, full_matrices=False).Vh[:2].T).cpu().numpy()
        method = "PCA"
        ctx.skipped.append(f"{ctx.name}: t-SNE needs scikit-learn (pip install 'selfsup[report]'); the map is a PCA")
    fig, ax = plt.subplots(figsize=(5.5, 5))
    scatter = ax.scatter(xy[:, 0], xy[:, 1], c=labels, cmap="tab10", s=4)
    ax.legend(*scatter.legend_elements(), fontsize=6, loc="best", markerscale=0.8)
    ax.set_title(f"{method} of {n_test} test embeddings, coloured by label")
    ax.set_xticks([])
    ax.set_yticks([])
    return png(fig)


def confusion(ctx) -> str:
    """The kNN classifier's confusion matrix on the test split (memory: the first training samples)."""
    from ..evaluate.knn import knn_predict

    data, cfg, plt = ctx.data, ctx.cfg, ctx.plt
    memory, queries = sample(len(data.train), CONFUSION_MEMORY), sample(len(data.test), CONFUSION_QUERIES)
    n_mem = len(memory)
    train_f = ctx.features(data.train, memory)
    test_labels = data.test_labels[queries]
    pred = knn_predict(
        train_f,
        data.train_labels[memory].to(train_f.device),
        ctx.features(data.test, queries),
        k=cfg.eval.knn_k,
        temperature=cfg.eval.knn_t,
        num_classes=data.num_classes,
    ).cpu()
    k = data.num_classes
    matrix = torch.zeros(k, k, dtype=torch.long)
    matrix.index_put_((test_labels, pred), torch.ones_like(pred), accumulate=True)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.imshow(matrix / matrix.sum(1, keepdim=True).clamp(min=1), cmap="Blues", vmin=0, vmax=1)
    names = data.classes or [str(i) for i in range(k)]
    ax.set_xticks(range(k), names, rotation=90, fontsize=7)
    ax.set_yticks(range(k), names, fontsize=7)
    for i in range(k):
        for j in range(k):
            if matrix[i, j]:
                ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=6)
    accuracy = (pred == test_labels).float().mean().item()
    ax.set_title(
        f"kNN (k={cfg.eval.knn_k}) confusion, memory {n_mem} training samples, {len(queries)} test samples: "
        f"top-1 {accuracy:.4f}",
        fontsize=8,
    )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    return png(fig)
