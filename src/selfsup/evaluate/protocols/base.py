"""What an evaluation protocol is: a registry entry that runs on a run's features and says how its
results read as table rows (the CLI's table and the report render from these rows).

A protocol ``run(ctx)`` returns its part of the result: headline numbers as flat keys
``<protocol>_<measure>``, each beside ``<...>_raw`` (the same protocol on the modality's raw-input
features) when the baseline ran, and its settings and details under its own name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch


@dataclass
class Row:
    protocol: str  # e.g. "kNN weighted k=200 T=0.1"
    measure: str  # e.g. "top-1"
    value: Any  # a number, (mean, std), or None
    baseline: Any = None  # the same on the raw input

    def cells(self) -> tuple[str, str]:
        return _fmt(self.value), _fmt(self.baseline)


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, tuple):
        return f"{v[0]:.4f} ± {v[1]:.4f}"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


@dataclass
class EvalContext:
    """What the protocols of one evaluation share: features of the encoder and of the raw input
    (``None`` when the baseline is skipped), labels, and the settings of the run and the command."""

    features: dict[str, torch.Tensor]  # split -> (N, D) encoder features
    raw: dict[str, torch.Tensor] | None  # split -> raw-input features
    labels: dict[str, torch.Tensor]  # split -> labels (on the features' device)
    num_classes: int | None
    seed: int
    cfg: Any  # the run's Config
    settings: dict = field(default_factory=dict)  # the command's protocol settings (knn_k, finetune ...)
    run: Any = None  # for protocols that need more than features: dataset, encoder, modality, device

    def headline(self, result: dict, key: str, value, baseline) -> None:
        result[key] = value
        if baseline is not None:
            result[f"{key}_raw"] = baseline


class Protocol:
    name: ClassVar[str]
    description: ClassVar[str]
    order: ClassVar[int] = 100  # position in "all" and in tables
    frozen: ClassVar[bool] = True  # on frozen features (what "all" expands to); False: trains the encoder
    tasks: ClassVar[tuple[str, ...]] = ("classification",)

    def run(self, ctx: EvalContext) -> dict:
        raise NotImplementedError

    def rows(self, result: dict) -> list[Row]:
        raise NotImplementedError
