"""Time series: float32 ``(N, C, T)`` samples, NaN after the end of each shorter series (and where a
value is missing), viewed with batched per-sample augmentation on the training device (:mod:`.ops`,
:mod:`.views`) following each paper's recipe (:mod:`.recipes`).

Sources: ``ucr:NAME`` (the UCR/UEA archives, found in ``--data-dir``, ``$SELFSUP_DATA``, an installed
package that carries them, or the cache) and ``ts:PATH`` (a user's .ts/.tsv/.arff/.npy/.npz files);
normalised as TS2Vec does, fitted on the training split (:mod:`.sources`).

The input spec is ``{"channels", "length", "equal_length", "min_length", "normalisation"}``: the channel
count, the training series' (padded) length and the normalisation fitted on the training split; a source
loading data for a trained encoder applies that normalisation instead of fitting its own. The raw-input
baseline is the series itself, padding as zeros. docs/data/series.md describes the data and the options.
"""

from __future__ import annotations

import math

import torch

from ...distributed import world_size
from ...errors import UsageError
from ..base import Modality, ViewPlan
from .recipes import recipe_for
from .sources import series_sources
from .views import SeriesViewConfig, SeriesViews, eval_transform


class SeriesModality(Modality):
    name = "series"
    raw_name = "raw series"
    view_config = SeriesViewConfig
    default_backbone = "ts2vec-encoder"
    sources = series_sources()
    view_kinds = frozenset({"pair", "asymmetric_pair", "single", "masked"})

    def default_views(self, plan: ViewPlan, augment) -> list[SeriesViewConfig]:
        return recipe_for(plan)

    def check_config(self, cfg, named: frozenset[str] = frozenset()) -> None:
        """A series recipe may count its budget in steps (``data.options.iterations``, TS2Vec's
        rule); epochs asked for by name (``--epochs``, ``--set train.epochs``) win over it."""
        if "train.epochs" in named and cfg.data.options.get("iterations"):
            cfg.data.options["iterations"] = 0
        iterations = cfg.data.options.get("iterations", 0)
        if not isinstance(iterations, int) or isinstance(iterations, bool) or iterations < -1:
            raise UsageError(
                "data.options.iterations must be a whole number: N > 0 steps, -1 for TS2Vec's rule (200 steps, "
                f"600 above 100,000 values), 0 to train train.epochs; got {iterations!r}"
            )

    def input_spec(self, data, cfg) -> dict:
        fit_to_data(cfg, data)
        meta = data.meta
        return {
            "channels": int(data.train.shape[1]),
            "length": int(data.train.shape[2]),
            "equal_length": bool(meta.get("equal_length", True)),
            "min_length": int(meta.get("min_length", data.train.shape[2])),
            "normalisation": meta.get("normalisation", {"rule": "none"}),
        }

    def views(self, view_configs, spec, data=None) -> SeriesViews:
        return SeriesViews(view_configs, spec)

    def eval_transform(self, spec):
        return eval_transform(spec)

    def check_input(self, data, spec) -> None:
        channels, wanted = data.train.shape[1], spec["channels"]
        if channels != wanted:
            raise UsageError(
                f"{data.name} has {channels}-channel series but the encoder takes {wanted} channels; "
                "use data with the training data's channels"
            )

    def raw_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nan_to_num(x.float()).reshape(len(x), -1)

    def pictures(self, context) -> dict[str, str]:
        from .report import pictures

        return pictures(context)


def fit_to_data(cfg, data) -> None:
    """Settings that depend on the training split, resolved once the data is loaded (and written to the
    run's config.yaml): a batch larger than the training split shrinks to it, as TS2Vec's code does,
    with ``optim.lr`` raised by the same factor so the step size stays the recipe's; and
    ``data.options.iterations`` (N steps, or -1 for TS2Vec's rule: 200, or 600 when the training split
    holds more than 100,000 values) becomes ``train.epochs``, the epochs that reach at least that many steps."""
    n, world = len(data.train), world_size()
    if cfg.train.batch_size > n:
        batch = max(world, n - n % world)
        cfg.optim.lr = cfg.optim.lr * cfg.train.batch_size / batch
        cfg.train.batch_size = batch
    iterations = cfg.data.options.get("iterations", 0)
    if iterations:
        if iterations < 0:
            iterations = 200 if data.train.numel() <= 100_000 else 600
        steps_per_epoch = n // cfg.train.batch_size
        cfg.train.epochs = max(1, math.ceil(iterations / steps_per_epoch))


MODALITY = SeriesModality()

__all__ = ["MODALITY", "SeriesModality", "SeriesViewConfig", "SeriesViews", "fit_to_data"]
