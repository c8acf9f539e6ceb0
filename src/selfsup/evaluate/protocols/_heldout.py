"""Shared by the table-minded protocols (ridge, mlp, hgb): a seeded hold-out of the training split
(stratified for classes), and regression errors in the target's own units and in units of its
training standard deviation."""

from __future__ import annotations

import math

import torch

from ..linear import stratified_split

HELD_OUT = 0.1  # share of the training split held out to choose hyper-parameters or stop early


def held_out(labels: torch.Tensor, seed: int, fraction: float = HELD_OUT) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices ``(fit, held)`` of the training split: stratified by class for class labels,
    uniformly at random for regression targets. Deterministic in ``seed``."""
    if not labels.is_floating_point():
        return stratified_split(labels.cpu(), fraction, seed)
    n = len(labels)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_held = min(max(int(round(fraction * n)), 1), n - 1)
    return order[n_held:].sort().values, order[:n_held].sort().values


def target_scale(y_train: torch.Tensor) -> float:
    """The training targets' (population) standard deviation: RMSE in these units is comparable
    across tables (T-JEPA's tables report RMSE on standardised targets)."""
    std = float(y_train.double().std(unbiased=False))
    return std if std > 0 else 1.0


def rmse(pred: torch.Tensor, y: torch.Tensor) -> float:
    return math.sqrt(float((pred.double().reshape(-1) - y.double().reshape(-1)).pow(2).mean()))


def top1(pred: torch.Tensor, y: torch.Tensor) -> float:
    return float((pred.reshape(-1).cpu() == y.reshape(-1).cpu()).double().mean())
