"""``hgb``: scikit-learn's HistGradientBoosting (a LightGBM-style gradient-boosted tree ensemble,
what a practitioner fits to a table first) on frozen features and on the raw input: accuracy for
classes, RMSE for regression targets. Early stopping on 10% of the training split (scikit-learn's
``validation_fraction``), up to ``max_iter`` trees, otherwise scikit-learn's defaults; seeded.
Needs scikit-learn (``pip install 'selfsup[report]'``)."""

from __future__ import annotations

import contextlib
import time

import numpy as np
import torch

from ...errors import UsageError
from ._heldout import HELD_OUT, rmse, target_scale, top1
from .base import EvalContext, Protocol, Row

MAX_ITER = 500


def _sklearn():
    try:
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    except ImportError:
        raise UsageError("the hgb protocol needs scikit-learn: pip install 'selfsup[report]'") from None
    return HistGradientBoostingClassifier, HistGradientBoostingRegressor


def _threads(size: int, small: int = 64_000_000):
    """One OpenMP thread below ``small`` values (as :func:`selfsup.evaluate.linear.threads_for`:
    on shared cores a second spinning thread costs far more than it brings)."""
    from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

    return threadpool_limits(limits=1) if size < small else contextlib.nullcontext()


def hgb_protocol(train_x, train_y, test_x, test_y, classes: int | None, seed: int = 0, max_iter: int = MAX_ITER):
    start = time.perf_counter()
    classifier, regressor = _sklearn()
    kw = dict(max_iter=max_iter, early_stopping=True, validation_fraction=HELD_OUT, random_state=seed)
    model = classifier(**kw) if classes else regressor(**kw)
    x = train_x.float().cpu().numpy()
    with _threads(x.size):
        model.fit(x, train_y.cpu().numpy())
        pred = torch.from_numpy(np.asarray(model.predict(test_x.float().cpu().numpy())))
    out = {"iterations": int(model.n_iter_), "seconds": round(time.perf_counter() - start, 3)}
    if classes:
        out["top1"] = top1(pred, test_y)
    else:
        error, scale = rmse(pred, test_y), target_scale(train_y)
        out.update(rmse=error, rmse_scaled=error / scale)
    return out


class HGB(Protocol):
    name = "hgb"
    description = "scikit-learn's HistGradientBoosting (early-stopped on 10% of the training split)"
    order = 45
    tasks = ("classification", "regression")

    def run(self, ctx: EvalContext) -> dict:
        f, raw, y = ctx.features, ctx.raw, ctx.labels
        classes = ctx.num_classes if y["train"].dtype == torch.int64 else None
        res = hgb_protocol(f["train"], y["train"], f["test"], y["test"], classes, ctx.seed)
        base = hgb_protocol(raw["train"], y["train"], raw["test"], y["test"], classes, ctx.seed) if raw else None
        result = {}
        for key in ("top1",) if classes else ("rmse", "rmse_scaled"):
            ctx.headline(result, f"hgb_{key}", res.pop(key), base and base.pop(key))
        if base:
            res["raw"] = base
        result["hgb"] = res
        return result

    def rows(self, r: dict) -> list[Row]:
        if "hgb_top1" in r:
            return [Row("HistGradientBoosting", "top-1", r["hgb_top1"], r.get("hgb_top1_raw"))]
        return [
            Row("HistGradientBoosting", "test RMSE", r.get("hgb_rmse"), r.get("hgb_rmse_raw")),
            Row(
                "HistGradientBoosting", "test RMSE / target std", r.get("hgb_rmse_scaled"), r.get("hgb_rmse_scaled_raw")
            ),
        ]
