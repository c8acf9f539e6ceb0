"""``linear``: a logistic-regression probe, weight decay chosen on a held-out 10% of the training
split (:mod:`selfsup.evaluate.linear`)."""

from __future__ import annotations

from ..linear import linear_probe
from .base import EvalContext, Protocol, Row


class Linear(Protocol):
    name = "linear"
    description = "linear probe, weight decay chosen on 10% of the training split"
    order = 20

    def run(self, ctx: EvalContext) -> dict:
        f, raw, y = ctx.features, ctx.raw, ctx.labels
        res = linear_probe(f["train"], y["train"], f["test"], y["test"], ctx.num_classes, seed=ctx.seed)
        base = (
            linear_probe(raw["train"], y["train"], raw["test"], y["test"], ctx.num_classes, seed=ctx.seed)
            if raw
            else None
        )
        result = {}
        ctx.headline(result, "linear_top1", res.pop("top1"), base and base.pop("top1"))
        if base:
            res["raw"] = {k: base[k] for k in ("weight_decay", "val_top1", "train_top1", "seconds")}
        result["linear"] = res
        return result

    def rows(self, r: dict) -> list[Row]:
        wd = f"{r['linear']['weight_decay']:.0e}"
        if "raw" in r["linear"]:
            wd += f", {r['linear']['raw']['weight_decay']:.0e}"
        return [Row(f"linear (wd {wd})", "top-1", r.get("linear_top1"), r.get("linear_top1_raw"))]
