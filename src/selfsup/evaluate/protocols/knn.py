"""``knn``: weighted kNN (Wu et al. 2018) with the run's ``eval.knn_k`` and ``eval.knn_t``, and a
plain majority vote of the ``knn_k`` nearest neighbours (default 20)."""

from __future__ import annotations

from ..knn import knn_top1
from .base import EvalContext, Protocol, Row

DEFAULT_MAJORITY_K = 20


class KNN(Protocol):
    name = "knn"
    description = "weighted kNN (the run's k and T) and majority-vote kNN (--knn-k)"
    order = 10

    def run(self, ctx: EvalContext) -> dict:
        e, f, raw, y = ctx.cfg.eval, ctx.features, ctx.raw, ctx.labels
        majority_k = ctx.settings.get("knn_k", DEFAULT_MAJORITY_K)
        weighted = dict(k=e.knn_k, temperature=e.knn_t, num_classes=ctx.num_classes)
        majority = dict(k=majority_k, weighted=False, num_classes=ctx.num_classes)
        result = {}
        for key, kw in (("knn_top1", weighted), ("knn_majority_top1", majority)):
            base = knn_top1(raw["train"], y["train"], raw["test"], y["test"], **kw) if raw else None
            ctx.headline(result, key, knn_top1(f["train"], y["train"], f["test"], y["test"], **kw), base)
        result["knn"] = {"k": e.knn_k, "t": e.knn_t, "majority_k": majority_k}
        return result

    def rows(self, r: dict) -> list[Row]:
        k = r["knn"]
        return [
            Row(f"kNN weighted k={k['k']} T={k['t']}", "top-1", r.get("knn_top1"), r.get("knn_top1_raw")),
            Row(
                f"kNN majority k={k['majority_k']}", "top-1", r.get("knn_majority_top1"), r.get("knn_majority_top1_raw")
            ),
        ]
