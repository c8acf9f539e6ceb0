"""``ridge``: ridge regression on frozen features for regression targets, its penalty chosen on a
seeded 10% hold-out of the training split (then refitted on the whole training split); RMSE on the
test split in the target's units and in units of its training standard deviation, beside the same
on the raw input. The linear probe of regression (``linear`` is its classification counterpart)."""

from __future__ import annotations

import time

import torch

from ..linear import standardize, threads_for
from ._heldout import held_out, rmse, target_scale
from .base import EvalContext, Protocol, Row

DEFAULT_ALPHAS = tuple(10.0**k for k in range(-3, 5))  # penalties on standardised features, per row


def fit_ridge(x: torch.Tensor, y: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights and intercept minimising ``mean (x w + b - y)^2 + alpha / n ||w||^2`` (float64, closed
    form; ``x`` standardised, so the intercept is the mean target)."""
    x, y = x.double(), y.double()
    mean_y = y.mean()
    gram = x.T @ x + alpha * torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
    w = torch.linalg.solve(gram, x.T @ (y - mean_y))
    return w, mean_y


def ridge_probe(train_x, train_y, test_x, test_y, seed: int = 0, alphas=DEFAULT_ALPHAS) -> dict:
    """RMSE of ridge regression (penalty chosen on a hold-out of ``train``) on ``test``."""
    start = time.perf_counter()
    with threads_for(train_x):
        train_x, test_x = standardize(train_x, test_x)
        train_y, test_y = train_y.to(train_x.device).double(), test_y.to(train_x.device).double()
        fit, held = held_out(train_y, seed)
        fit, held = fit.to(train_x.device), held.to(train_x.device)
        scores = []
        for alpha in alphas:
            w, b = fit_ridge(train_x[fit], train_y[fit], alpha)
            scores.append(rmse(train_x[held].double() @ w + b, train_y[held]))
        best = alphas[min(range(len(alphas)), key=scores.__getitem__)]
        w, b = fit_ridge(train_x, train_y, best)
        error = rmse(test_x.double() @ w + b, test_y)
    scale = target_scale(train_y)
    return {
        "rmse": error,
        "rmse_scaled": error / scale,
        "alpha": best,
        "val_rmse": min(scores),
        "target_std": scale,
        "seconds": round(time.perf_counter() - start, 3),
    }


class Ridge(Protocol):
    name = "ridge"
    description = "ridge regression (penalty chosen on 10% of the training split), test RMSE"
    order = 22
    tasks = ("regression",)

    def run(self, ctx: EvalContext) -> dict:
        f, raw, y = ctx.features, ctx.raw, ctx.labels
        res = ridge_probe(f["train"], y["train"], f["test"], y["test"], seed=ctx.seed)
        base = ridge_probe(raw["train"], y["train"], raw["test"], y["test"], seed=ctx.seed) if raw else None
        result = {}
        for key in ("rmse", "rmse_scaled"):
            ctx.headline(result, f"ridge_{key}", res.pop(key), base and base.pop(key))
        if base:
            res["raw"] = {k: base[k] for k in ("alpha", "val_rmse", "seconds")}
        result["ridge"] = res
        return result

    def rows(self, r: dict) -> list[Row]:
        return [
            Row("ridge regression", "test RMSE", r.get("ridge_rmse"), r.get("ridge_rmse_raw")),
            Row(
                "ridge regression", "test RMSE / target std", r.get("ridge_rmse_scaled"), r.get("ridge_rmse_scaled_raw")
            ),
        ]
