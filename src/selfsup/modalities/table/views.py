"""Table views: one view's settings (:class:`ViewConfig`), the papers' recipes for each ViewPlan
kind (:func:`recipe_for`), and the view maker that draws them on the device (:class:`TableViews`).

A view is an encoded row batch (B, F) with some entries corrupted (:mod:`.ops`): ``scarf`` (SCARF:
exactly ``round(rate * F)`` entries per row from the empirical marginals), ``swap`` (each entry
with probability ``rate`` from the marginals: VIME's mask-and-corrupt, SubTab's and the denoising
autoencoder's swap noise), ``gaussian`` (each numeric entry with probability ``rate`` plus
``noise_std * N(0, 1)``: SubTab's Gaussian noise), ``dropout`` (each entry with probability
``rate`` set to its column's neutral value: SubTab's zero-out) or ``none`` (the clean row).
Marginal draws come from the bank, the training split, moved to the batch's device once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...errors import UsageError
from ..base import ViewPlan, Views
from . import ops
from .schema import neutral_values, numeric_columns

CORRUPTIONS = ("none", "scarf", "swap", "gaussian", "dropout")
SUBTAB_NOISE = {"swap": "swap", "gaussian": "gaussian", "zero": "dropout", "none": "none"}
SCARF_RATE = 0.6  # Bahri et al. 2022, Sec. 4: the corruption rate c of every reported result


@dataclass
class ViewConfig:
    """One view of a row (``augment.views`` entries for tables)."""

    corruption: str = "none"  # none | scarf | swap | gaussian | dropout
    rate: float = 0.0  # scarf: fraction of the features replaced; others: probability per entry
    noise_std: float = 0.1  # gaussian: std of the noise added to the chosen numeric entries

    def __post_init__(self) -> None:
        if self.corruption not in CORRUPTIONS:
            raise UsageError(f"bad view config: corruption {self.corruption!r} is not one of: {', '.join(CORRUPTIONS)}")
        if not 0.0 <= self.rate <= 1.0:
            raise UsageError(f"bad view config: rate must be in [0, 1], got {self.rate}")
        if self.noise_std < 0:
            raise UsageError(f"bad view config: noise_std must be >= 0, got {self.noise_std}")


def recipe_for(plan: ViewPlan) -> list[ViewConfig]:
    """The views a method's plan gets on tables; a one-line UsageError for a plan without one.

    * ``pair`` / ``asymmetric_pair``: SCARF's pair, the clean row and its SCARF corruption at
      ``corruption_rate`` (0.6): for SCARF itself and for the generic joint-embedding methods;
      style ``vime``: the clean row and VIME's mask-and-corrupt at ``p_m``; style ``dae``: the
      clean row and swap noise at ``noise_rate``;
    * ``masked``: the clean row (T-JEPA masks feature tokens itself);
    * ``multicrop`` with style ``subtab``: the clean row, then one noisy row per subset
      (``n_subsets = 2 + n_local``) with SubTab's noise drawn independently for each.
    """
    o = plan.options
    if plan.kind in ("pair", "asymmetric_pair"):
        if plan.style == "vime":
            return [ViewConfig(), ViewConfig("swap", o.get("p_m", 0.3))]
        if plan.style == "dae":
            return [ViewConfig(), ViewConfig("swap", o.get("noise_rate", 0.15))]
        return [ViewConfig(), ViewConfig("scarf", o.get("corruption_rate", SCARF_RATE))]
    if plan.kind == "masked":
        return [ViewConfig()]
    if plan.kind == "multicrop" and plan.style == "subtab":
        noise = SUBTAB_NOISE.get(o.get("noise", "swap"))
        if noise is None:
            raise UsageError(f"SubTab noise {o.get('noise')!r} is not one of: {', '.join(SUBTAB_NOISE)}")
        noisy = ViewConfig(noise, o.get("masking_ratio", 0.3) if noise != "none" else 0.0, o.get("noise_level", 0.1))
        return [ViewConfig()] + [noisy] * (plan.count - 1)
    raise UsageError(
        f"tables have no {plan.kind} views ({plan.style}); table methods use pair, asymmetric_pair, "
        "masked or SubTab's subsets"
    )


class TableViews(Views):
    """All views of a method, drawn from one generator, plus the deterministic eval transform
    (the encoded rows as float32: sources already encode them with the training fit)."""

    def __init__(self, views: list[ViewConfig], spec: dict, bank: torch.Tensor | None = None):
        if not views:
            raise UsageError("a view recipe needs at least one view")
        needs_bank = any(v.corruption in ("scarf", "swap") for v in views)
        if needs_bank and (bank is None or len(bank) == 0):
            raise UsageError("SCARF and swap-noise views draw from the training rows; give the view maker the data")
        self.views = views
        self.bank = bank.float() if needs_bank else None
        self.fill = neutral_values(spec)
        self.numeric = numeric_columns(spec)

    def _to(self, device: torch.device) -> None:
        if self.fill.device != device:  # moved once, so no host-to-device copy per batch
            self.fill, self.numeric = self.fill.to(device), self.numeric.to(device)
            if self.bank is not None:
                self.bank = self.bank.to(device)

    def __call__(
        self, batch: torch.Tensor, generator: torch.Generator, shard: tuple[int, int] = (0, 1)
    ) -> list[torch.Tensor]:
        x = self.eval_transform(batch)
        self._to(x.device)
        return [self.view(x, cfg, generator, shard) for cfg in self.views]

    def view(self, x: torch.Tensor, cfg: ViewConfig, generator: torch.Generator, shard=(0, 1)) -> torch.Tensor:
        """One view of the rows ``x`` (already float32 on the device)."""
        if cfg.corruption == "none" or (cfg.rate == 0 and cfg.corruption != "none"):
            return x
        if cfg.corruption == "scarf":
            return ops.scarf_corrupt(x, self.bank, cfg.rate, generator, shard).view
        if cfg.corruption == "swap":
            return ops.vime_corrupt(x, cfg.rate, generator, self.bank, shard).view
        if cfg.corruption == "dropout":
            return ops.feature_dropout(x, cfg.rate, generator, self.fill, shard).view
        mask = ops.bernoulli_mask(x.shape, cfg.rate, generator, x.device, shard) & self.numeric
        return torch.where(mask, ops.gaussian_noise(x, cfg.noise_std, generator, self.numeric, shard), x)

    def eval_transform(self, batch: torch.Tensor) -> torch.Tensor:
        return batch.to(torch.float32)
