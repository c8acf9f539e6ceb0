"""``nn``: the 1-nearest-neighbour classifier with Euclidean distance on the frozen features, beside the
raw-series baselines of the time-series literature, 1-NN Euclidean and 1-NN DTW (full warping window,
:mod:`selfsup.evaluate.dtw`) on the series themselves. For series runs; other modalities skip it.
"""

from __future__ import annotations

import torch

from ..dtw import nearest_neighbour_accuracy
from .base import EvalContext, Protocol, Row


def _one_nn(train: torch.Tensor, y_train: torch.Tensor, test: torch.Tensor, y_test: torch.Tensor) -> float:
    nearest = torch.cdist(test.float(), train.float()).argmin(dim=1)
    return (y_train[nearest] == y_test).float().mean().item()


class NearestNeighbour(Protocol):
    name = "nn"
    description = "1-NN Euclidean on the features; 1-NN Euclidean and DTW on the raw series (series runs)"
    order = 45
    modalities = ("series",)

    def run(self, ctx: EvalContext) -> dict:
        modality = getattr(getattr(ctx.run, "modality", None), "name", None)
        if modality is not None and modality not in self.modalities:
            return {"nn": {"skipped": f"the nn protocol is for {', '.join(self.modalities)} runs"}}
        f, y = ctx.features, ctx.labels
        result = {"nn": {"metric": "euclidean", "raw_dtw_window": "full"}}
        base = None
        if ctx.raw and ctx.run is not None:
            data, device = ctx.run.dataset, ctx.run.device
            train, test = data.train.to(device), data.test.to(device)
            base = nearest_neighbour_accuracy(train, y["train"], test, y["test"], "euclidean")
            result["nn_dtw_top1_raw"] = nearest_neighbour_accuracy(train, y["train"], test, y["test"], "dtw")
        ctx.headline(result, "nn_top1", _one_nn(f["train"], y["train"], f["test"], y["test"]), base)
        return result

    def rows(self, r: dict) -> list[Row]:
        if "nn_top1" not in r:
            return []
        return [
            Row("1-NN Euclidean", "top-1", r.get("nn_top1"), r.get("nn_top1_raw")),
            Row("1-NN DTW, full window (raw series only)", "top-1", None, r.get("nn_dtw_top1_raw")),
        ]
