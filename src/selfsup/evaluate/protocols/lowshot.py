"""``lowshot``: the linear probe trained on class-balanced 1% and 10% of the training labels,
three seeds, mean and std (:mod:`selfsup.evaluate.lowshot`)."""

from __future__ import annotations

from ..lowshot import DEFAULT_FRACTIONS, DEFAULT_SEEDS, fraction_key, fraction_name, lowshot_probe
from .base import EvalContext, Protocol, Row


class LowShot(Protocol):
    name = "lowshot"
    description = "linear probe on 1% and 10% of the labels, 3 seeds"
    order = 30

    def run(self, ctx: EvalContext) -> dict:
        f, raw, y = ctx.features, ctx.raw, ctx.labels
        fractions = ctx.settings.get("lowshot_fractions", DEFAULT_FRACTIONS)
        seeds = [ctx.seed + s for s in ctx.settings.get("lowshot_seeds", DEFAULT_SEEDS)]
        res = lowshot_probe(f["train"], y["train"], f["test"], y["test"], ctx.num_classes, fractions, seeds)
        base = (
            lowshot_probe(raw["train"], y["train"], raw["test"], y["test"], ctx.num_classes, fractions, seeds)
            if raw
            else None
        )
        result, details = {}, {"weight_decay": res["weight_decay"], "seeds": seeds}
        for fraction in fractions:
            name, key = fraction_name(fraction), f"lowshot_{fraction_key(fraction)}_top1"
            mine, other = res[name], base[name] if base else None
            ctx.headline(result, key, mine["mean"], other and other["mean"])
            ctx.headline(result, f"{key}_std", mine["std"], other and other["std"])
            details[name] = {"n": mine["n"], "top1": mine["top1"]}
            if other:
                details[name]["top1_raw"] = other["top1"]
        details["seconds"] = round(res["seconds"] + (base["seconds"] if base else 0), 3)
        result["lowshot"] = details
        return result

    def rows(self, r: dict) -> list[Row]:
        rows = []
        for name, d in r["lowshot"].items():
            if not isinstance(d, dict) or "n" not in d:
                continue
            key = f"lowshot_{name.removesuffix('%')}pct_top1"  # fraction_key of the fraction fraction_name names
            base = (r[f"{key}_raw"], r[f"{key}_std_raw"]) if f"{key}_raw" in r else None
            rows.append(Row(f"low-shot {name}: {d['n']} labels", "top-1", (r[key], r[f"{key}_std"]), base))
        return rows
