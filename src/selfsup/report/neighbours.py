"""The report's nearest-neighbour strip: a few test images, each beside the training images the
encoder finds most similar (cosine similarity of its features, :mod:`selfsup.embeddings`).

Drawn where the samples are pictures (the modality's thumbnails, :func:`selfsup.embeddings.thumbnails`);
the memory is the training split, or a seeded sample of ``MEMORY`` of its items when it is larger.
"""

from __future__ import annotations

import torch

from ..embeddings import nearest_neighbors, thumbnails
from ..modalities import get_modality

QUERIES = 6  # test images shown
NEIGHBOURS = 5  # training images beside each
MEMORY = 20000  # training images searched at most


def neighbour_strip(ctx) -> dict[str, str]:
    """``{"neighbours": PNG data URI}`` for a finished run whose data has test pictures, else ``{}``
    (with the reason in ``ctx.skipped``)."""
    data, name = ctx.data, ctx.name
    if ctx.encoder is None or data is None or ctx.plt is None:
        return {}
    if data.test is None:
        ctx.skipped.append(f"{name}: no nearest-neighbour strip ({data.name} has no test split)")
        return {}
    modality = get_modality(ctx.encoder.modality)
    rows = data.rows if hasattr(data, "rows") else (lambda split: getattr(data, split))
    test, train = rows("test"), rows("train")
    queries = test[: min(QUERIES, len(test))]
    if thumbnails(modality, queries) is None:
        ctx.skipped.append(f"{name}: no nearest-neighbour strip ({modality.name} samples are not pictures)")
        return {}
    keep = torch.arange(len(train))
    if len(train) > MEMORY:
        keep = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:MEMORY].sort().values
    memory = train[keep]
    sims, idx = nearest_neighbors(ctx.features(queries), ctx.features(memory), NEIGHBOURS)
    sims, idx = sims.cpu(), keep[idx.cpu()]
    shown = thumbnails(modality, queries)
    found = thumbnails(modality, train[idx.reshape(-1)]).reshape(len(idx), idx.shape[1], *shown.shape[1:])
    plt = ctx.plt
    cols = 1 + idx.shape[1]
    fig, axes = plt.subplots(len(idx), cols, figsize=(1.3 * cols, 1.4 * len(idx)), squeeze=False)
    for r in range(len(idx)):
        pictures = [shown[r]] + [found[r, c] for c in range(idx.shape[1])]
        titles = ["test"] + [f"{float(s):.3f}" for s in sims[r]]
        for c, (img, title) in enumerate(zip(pictures, titles)):
            img = img.permute(1, 2, 0).numpy()
            axes[r][c].imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
            axes[r][c].set_title(title, fontsize=7)
            axes[r][c].axis("off")
    where = f"{len(keep)} of {len(train)}" if len(keep) < len(train) else f"all {len(train)}"
    fig.suptitle(f"nearest training images ({where}) of test images, by cosine similarity", fontsize=8)
    return {"neighbours": ctx.png(fig)}
