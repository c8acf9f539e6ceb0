"""``cluster``: k-means with k = number of classes on L2-normalised features, NMI, ARI and
Hungarian-matched accuracy (:mod:`selfsup.evaluate.cluster`)."""

from __future__ import annotations

import torch

from ..cluster import cluster_eval
from .base import EvalContext, Protocol, Row


def restarts(given: int | None, x: torch.Tensor) -> int:
    """k-means restarts: as given, else 10, or 3 for large inputs (more than 10M numbers)."""
    return given if given is not None else (10 if x.numel() <= 10_000_000 else 3)


class Cluster(Protocol):
    name = "cluster"
    description = "k-means with k = classes: NMI, ARI, cluster accuracy"
    order = 40

    def run(self, ctx: EvalContext) -> dict:
        f, raw, y = ctx.features, ctx.raw, ctx.labels
        given = ctx.settings.get("cluster_restarts")
        res = cluster_eval(
            f["train"], f["test"], y["test"], ctx.num_classes, n_init=restarts(given, f["train"]), seed=ctx.seed
        )
        base = (
            cluster_eval(
                raw["train"],
                raw["test"],
                y["test"],
                ctx.num_classes,
                n_init=restarts(given, raw["train"]),
                seed=ctx.seed,
            )
            if raw
            else None
        )
        result = {}
        for measure in ("acc", "nmi", "ari"):
            ctx.headline(result, f"cluster_{measure}", res.pop(measure), base and base[measure])
        result["cluster"] = res
        return result

    def rows(self, r: dict) -> list[Row]:
        k = r["cluster"]["k"]
        return [
            Row(f"k-means k={k}", label, r.get(f"cluster_{m}"), r.get(f"cluster_{m}_raw"))
            for m, label in (("acc", "accuracy"), ("nmi", "NMI"), ("ari", "ARI"))
        ]
