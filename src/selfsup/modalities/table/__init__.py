"""Tables: encoded float32 rows ``(N, F)``, numeric columns scaled and categorical columns holding
their codes, fitted on the training split (:mod:`.schema`), read from CSV, Parquet, npz and R files
(:mod:`.io`) or found by name (:mod:`.sources`); viewed with batched corruptions drawn on the
device (:mod:`.ops`, :mod:`.views`).

The input spec is the fitted schema (each column's name, kind, statistics or vocabulary; the
scaling; the target; the file's SHA-256 and the split): backbones are built from it, the exported
encoder records it, and sources encode new rows with it. The raw-input baseline is the row as a
model without representation learning would see it: numeric columns as scaled, categorical
columns one-hot.
"""

from __future__ import annotations

import torch

from ...errors import UsageError
from ..base import Modality, Source, ViewPlan
from . import sources as _sources
from .schema import column_layout
from .views import TableViews, ViewConfig, recipe_for

SPEC_COLUMN_KEYS = ("name", "kind", "mean", "std", "min", "max", "categories")
SPEC_KEYS = ("name", "file", "sha256", "scaling", "missing_values", "target", "n_features")


def fitted_spec(meta: dict) -> dict:
    """A table's ``meta`` reduced to its fit (JSON-ready): what encodes new rows the same way. Per-split
    counts are left out; the split's method, seed and fractions stay, to prepare the same table again."""
    spec = {k: meta[k] for k in SPEC_KEYS if k in meta}
    spec["columns"] = [{k: c[k] for k in SPEC_COLUMN_KEYS if k in c} for c in meta["columns"]]
    split = meta.get("split") or {}
    spec["split"] = {k: split[k] for k in ("method", "seed", "fractions", "stratified") if k in split}
    return spec


def raw_onehot(x: torch.Tensor, spec: dict) -> torch.Tensor:
    """Rows as a model without learnt representation sees them: numeric columns as they are
    (scaled), each categorical column one-hot over its vocabulary."""
    numeric, categorical, cards = column_layout(spec)
    x = x.float()
    parts = [x[:, numeric]]
    for j, k in zip(categorical, cards):
        parts.append(torch.nn.functional.one_hot(x[:, j].long().clamp(0, k - 1), k).float())
    return torch.cat(parts, dim=1)


def _same_columns(a: dict, b: dict) -> bool:
    key = [(c["name"], c["kind"], c.get("categories")) for c in a["columns"]]
    return key == [(c["name"], c["kind"], c.get("categories")) for c in b["columns"]]


def _load(spec: str, options: dict):
    return _sources.load_source(spec, options).to_dataset()


def _describe_one(name: str):
    return lambda data_dir: [e for e in _sources.describe(data_dir) if e["name"] == name]


SOURCES = tuple(Source(name, _load, _describe_one(name), name) for name in _sources.TABLES) + (
    Source("table:", _load, _describe_one("table:PATH"), "table:PATH"),
)


class TableModality(Modality):
    name = "table"
    raw_name = "raw features"
    view_config = ViewConfig
    default_backbone = "mlp"
    sources = SOURCES
    view_kinds = frozenset({"pair", "asymmetric_pair", "masked", "multicrop"})

    def __init__(self) -> None:
        # The fit of the table last described to this modality (see raw_features).
        self._last_spec: dict | None = None

    def supports(self, plan: ViewPlan) -> bool:
        # Multi-crop means SubTab's feature subsets here; tables have no crops for DINO or SwAV.
        return plan.kind in self.view_kinds and (plan.kind != "multicrop" or plan.style == "subtab")

    def default_views(self, plan: ViewPlan, augment) -> list[ViewConfig]:
        if not self.supports(plan):
            raise UsageError(f"tables have no {plan.kind} views for {plan.style or 'this method'}")
        return recipe_for(plan)

    def input_spec(self, data, cfg=None) -> dict:
        if data.modality != self.name or "columns" not in data.meta:
            raise UsageError(f"{data.name} is not a prepared table")
        spec = fitted_spec(data.meta)
        self._last_spec = spec
        return spec

    def views(self, view_configs, spec, data=None) -> TableViews:
        return TableViews(list(view_configs), spec, data.train if data is not None else None)

    def eval_transform(self, spec):
        return lambda batch: batch.to(torch.float32)

    def check_input(self, data, spec) -> None:
        if data.modality != self.name or "columns" not in data.meta:
            raise UsageError(f"{data.name} holds {data.modality} data, not a table")
        if not _same_columns(data.meta, spec):
            names = ", ".join(c["name"] for c in spec["columns"][:20])
            raise UsageError(
                f"{data.name} is not encoded as the encoder's table ({names}); load it with the encoder's input spec"
            )
        self._last_spec = spec

    def raw_features(self, x: torch.Tensor, spec: dict | None = None) -> torch.Tensor:
        """Numeric columns as scaled and categorical columns one-hot. The seam passes no spec yet
        (``Modality.raw_features(x)``); then the fit last seen by :meth:`input_spec` or
        :meth:`check_input` in this process describes ``x`` when its width matches, else the
        encoded values are used as they are."""
        spec = spec or self._last_spec
        if spec is None or len(spec["columns"]) != x.shape[1]:
            return x.reshape(len(x), -1).float()
        return raw_onehot(x, spec)

    def pictures(self, context) -> dict[str, str]:
        from .report import pictures

        return pictures(context)


MODALITY = TableModality()

__all__ = ["MODALITY", "TableModality", "TableViews", "ViewConfig", "fitted_spec", "raw_onehot", "recipe_for"]
