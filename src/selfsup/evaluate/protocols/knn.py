"""``knn``: weighted kNN (Wu et al. 2018) with the run's ``eval.knn_k`` and ``eval.knn_t``, and a
plain majority vote of the ``knn_k`` nearest neighbours (default 20).

Beside them, the geometry of the L2-normalised test features the kNN compares (cheap: the
tolerance is O(N d), the uniformity is taken on at most 2048 seeded test samples):
``knn_uniformity`` (Wang & Isola 2020) and ``knn_tolerance`` (Wang & Liu 2021, the mean similarity
of same-class pairs), each beside the raw input's."""

from __future__ import annotations

from ..diagnostics import geometry
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
        base = geometry(raw["test"], y["test"], seed=ctx.seed) if raw else {}
        for key, value in geometry(f["test"], y["test"], seed=ctx.seed).items():
            ctx.headline(result, f"knn_{key}", value, base.get(key))
        result["knn"] = {"k": e.knn_k, "t": e.knn_t, "majority_k": majority_k}
        return result

    def rows(self, r: dict) -> list[Row]:
        k = r["knn"]
        return [
            Row(f"kNN weighted k={k['k']} T={k['t']}", "top-1", r.get("knn_top1"), r.get("knn_top1_raw")),
            Row(
                f"kNN majority k={k['majority_k']}", "top-1", r.get("knn_majority_top1"), r.get("knn_majority_top1_raw")
            ),
            *[
                Row("test features, L2-normalised", key, r[f"knn_{key}"], r.get(f"knn_{key}_raw"))
                for key in ("uniformity", "tolerance")
                if f"knn_{key}" in r  # results stored before they were measured have none
            ],
        ]
