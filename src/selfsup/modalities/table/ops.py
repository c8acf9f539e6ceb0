"""Batched views of table rows, made on the device.

Each op takes an encoded float batch ``x`` (B, F) (numeric columns scaled, categorical columns
holding codes; see :mod:`.schema`) and a ``torch.Generator`` on ``x``'s device, and returns
tensors of the same device. Every random choice is drawn per sample from that generator in one
call; nothing reads a tensor back to the host, so the ops queue asynchronously on a GPU. A
categorical column only ever receives a value of its own column (a draw from that column, or its
``<unknown>`` code via ``fill``), so codes stay valid for the backbone's embeddings.

``shard=(rank, world_size)``: ``x`` holds this rank's rows (positions ``rank, rank + world_size,
...``) of a global batch; the random draws of the whole global batch are made (every rank's
generator stays in step) and this rank's rows kept, so N processes draw what one process draws.

Ops that replace entries return :class:`Corrupted`: the view, the entries chosen for replacement
(``mask``) and the entries whose value actually changed (``changed``; a replacement can draw the
value already there). VIME's mask estimator learns ``changed`` (Yoon et al.'s code,
``vime_utils.pretext_generator``: ``m_new = 1 * (x != x_tilde)``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from ...errors import UsageError

SUBTAB_NOISES = ("swap", "gaussian", "zero", "none")


class Corrupted(NamedTuple):
    view: torch.Tensor  # (B, F) the corrupted rows
    mask: torch.Tensor  # (B, F) bool, entries chosen for replacement
    changed: torch.Tensor  # (B, F) bool, entries whose value differs from the input


def _check_rate(name: str, value: float, high_inclusive: bool = True) -> None:
    if not (0.0 <= value <= 1.0) or (not high_inclusive and value == 1.0):
        raise UsageError(f"{name} {value} must lie in [0, 1{']' if high_inclusive else ')'}")


def corrupted_count(rate: float, n_features: int) -> int:
    """SCARF's number of corrupted features per row: ``round(rate * F)``, halves rounded up."""
    _check_rate("corruption rate", rate)
    return int(math.floor(rate * n_features + 0.5))


def _sharded(draw, shape, shard: tuple[int, int]) -> torch.Tensor:
    """``draw(global_shape)`` for the global batch, this rank's rows kept."""
    rank, world = shard
    out = draw((shape[0] * world, *shape[1:]))
    return out[rank::world] if world > 1 else out


def uniforms(shape, generator: torch.Generator, device, shard: tuple[int, int] = (0, 1)) -> torch.Tensor:
    return _sharded(lambda s: torch.rand(s, generator=generator, device=device), shape, shard)


def draw_marginals(
    bank: torch.Tensor, batch: int, generator: torch.Generator, shard: tuple[int, int] = (0, 1)
) -> torch.Tensor:
    """(batch, F): entry (i, j) is ``bank[r, j]`` for a row ``r`` drawn uniformly for that entry, i.e.
    an independent draw from column j's empirical marginal over the bank's rows."""
    rows = _sharded(
        lambda s: torch.randint(0, bank.shape[0], s, generator=generator, device=bank.device),
        (batch, bank.shape[1]),
        shard,
    )
    return torch.gather(bank, 0, rows)


def exact_count_mask(
    batch: int,
    n_features: int,
    count: int,
    generator: torch.Generator,
    device: torch.device,
    shard: tuple[int, int] = (0, 1),
) -> torch.Tensor:
    """(batch, F) bool with exactly ``count`` True entries per row, the subset uniform at random
    (the ``count`` largest of i.i.d. uniform scores)."""
    mask = torch.zeros(batch, n_features, dtype=torch.bool, device=device)
    if count == 0:
        return mask
    scores = uniforms((batch, n_features), generator, device, shard)
    return mask.scatter_(1, scores.topk(count, dim=1).indices, True)


def scarf_corrupt(
    x: torch.Tensor, bank: torch.Tensor, rate: float, generator: torch.Generator, shard: tuple[int, int] = (0, 1)
) -> Corrupted:
    """SCARF's view (Bahri et al. 2022, "SCARF: Self-Supervised Contrastive Learning using Random
    Feature Corruption", arXiv:2106.15147, Sec. 2 and Fig. 1): in each row a uniformly random subset
    of exactly ``round(rate * F)`` features is replaced, each by a draw from that feature's empirical
    marginal, i.e. the same feature of a uniformly drawn row of ``bank`` (the training rows, kept on
    the device), drawn independently per entry. The paper's default rate is 0.6.

    The paper fixes the subset size ("a fraction c of the features"); no official code is public,
    and the widely used port (clabrugere/pytorch-scarf) uses ``int(rate * F)``, which differs from
    this rounding by one feature when ``rate * F`` has a fractional part >= 0.5.
    """
    assert x.ndim == 2 and bank.ndim == 2 and bank.shape[1] == x.shape[1], (x.shape, bank.shape)
    b, f = x.shape
    mask = exact_count_mask(b, f, corrupted_count(rate, f), generator, x.device, shard)
    view = torch.where(mask, draw_marginals(bank, b, generator, shard).to(x.dtype), x)
    return Corrupted(view, mask, view != x)


def bernoulli_mask(
    shape, p: float, generator: torch.Generator, device: torch.device, shard: tuple[int, int] = (0, 1)
) -> torch.Tensor:
    """bool mask whose entries are independently True with probability ``p``."""
    _check_rate("mask probability", p)
    return uniforms(shape, generator, device, shard) < p


def shuffle_columns(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each column permuted independently across the batch (VIME's and SubTab's swap noise): entry
    (i, j) becomes ``x[pi_j(i), j]`` for a uniform random permutation ``pi_j`` per column."""
    order = torch.rand(x.shape, generator=generator, device=x.device).argsort(dim=0)
    return torch.gather(x, 0, order)


def vime_corrupt(
    x: torch.Tensor,
    p_m: float,
    generator: torch.Generator,
    bank: torch.Tensor | None = None,
    shard: tuple[int, int] = (0, 1),
) -> Corrupted:
    """VIME's mask-and-corrupt (Yoon et al. 2020, "VIME: Extending the Success of Self- and
    Semi-supervised Learning to Tabular Domain", NeurIPS, Sec. 4.1; code ``vime_utils``): a mask
    ``m ~ Bernoulli(p_m)`` per entry, and ``x_tilde = (1 - m) x + m x_bar`` where ``x_bar`` draws
    each column from its marginal: a per-column shuffle of the batch (the authors' code shuffles
    the whole unlabelled set once; here the batch is reshuffled every step), or independent draws
    from ``bank`` rows when one is given. ``changed`` is the code's mask-estimation target. The
    code's default ``p_m`` is 0.3. With ``shard``, the bank is required (a shuffle of one rank's rows
    is not the global batch's)."""
    assert bank is not None or shard[1] == 1, "sharded VIME views draw from the bank"
    mask = bernoulli_mask(x.shape, p_m, generator, x.device, shard)
    x_bar = shuffle_columns(x, generator) if bank is None else draw_marginals(bank, x.shape[0], generator, shard)
    view = torch.where(mask, x_bar.to(x.dtype), x)
    return Corrupted(view, mask, view != x)


def gaussian_noise(
    x: torch.Tensor, std: float, generator: torch.Generator, numeric: torch.Tensor, shard: tuple[int, int] = (0, 1)
) -> torch.Tensor:
    """``x + std * N(0, 1)`` on the numeric columns (``numeric``: (F,) bool); categorical codes are
    left as they are (noise on a code is not a value of its column)."""
    if std < 0:
        raise UsageError(f"noise std {std} must be >= 0")
    noise = _sharded(lambda s: torch.randn(s, generator=generator, device=x.device, dtype=x.dtype), x.shape, shard)
    return x + std * noise * numeric.to(device=x.device, dtype=x.dtype)


def feature_dropout(
    x: torch.Tensor, p: float, generator: torch.Generator, fill: torch.Tensor, shard: tuple[int, int] = (0, 1)
) -> Corrupted:
    """Each entry independently replaced by its column's ``fill`` value with probability ``p``
    (``fill``: (F,), :func:`.schema.neutral_values`: 0 = the training mean for standardised numeric
    columns, the ``<unknown>`` code for categorical ones)."""
    mask = bernoulli_mask(x.shape, p, generator, x.device, shard)
    view = torch.where(mask, fill.to(device=x.device, dtype=x.dtype).expand_as(x), x)
    return Corrupted(view, mask, view != x)


def subtab_subsets(n_features: int, n_subsets: int, overlap: float) -> torch.Tensor:
    """SubTab's column subsets (Ucar et al. 2021, "SubTab: Subsetting Features of Tabular Data for
    Self-Supervised Representation Learning", NeurIPS, arXiv:2110.04361, Sec. 3; the authors' code,
    ``SubTab.subset_generator``), as a (K, S) index tensor: with ``m = F // K`` columns per subset
    and ``o = int(overlap * m)`` shared ones, subset 0 is columns ``[0, m + o)`` and subset ``i > 0``
    is ``[i * m - o, (i + 1) * m)``: contiguous, each of size ``S = m + o``. Subsets 0 and 1 share
    ``2 o`` columns (0 reaches ``o`` to the right, 1 ``o`` to the left), later neighbours ``o``; the
    code's rule, kept as is. Columns past ``K * m`` are in no subset, as in the code. A single
    subset is returned twice (the code adds a copy so that pairs exist)."""
    if n_subsets < 1 or n_features // n_subsets < 1:
        raise UsageError(f"SubTab needs 1 <= n_subsets <= number of features ({n_features}); got {n_subsets}")
    _check_rate("SubTab overlap", overlap, high_inclusive=False)
    m = n_features // n_subsets
    o = int(overlap * m)
    starts = [0] + [i * m - o for i in range(1, n_subsets)]
    subsets = torch.stack([torch.arange(s, s + m + o) for s in starts])
    return subsets.repeat(2, 1) if n_subsets == 1 else subsets


def subtab_views(
    x: torch.Tensor,
    subsets: torch.Tensor,
    generator: torch.Generator,
    noise: str = "swap",
    masking_ratio: float = 0.3,
    noise_level: float = 0.1,
    numeric: torch.Tensor | None = None,
    fill: torch.Tensor | None = None,
) -> torch.Tensor:
    """(K, B, S): row ``i``'s columns ``subsets[k]`` for every subset k, with SubTab's noise drawn
    independently per subset (code ``subset_generator`` / ``generate_noisy_xbar``): entries chosen
    with probability ``masking_ratio`` take a noisy value: ``swap`` (the column shuffled across the
    batch), ``gaussian`` (``x + N(0, noise_level^2)``, numeric columns only), ``zero`` (0, or
    ``fill`` for the column: its ``<unknown>`` code for categorical columns), or ``none`` (no noise).
    Defaults as the authors' configs (swap noise, ratio 0.3, level 0.1). Taking every subset in a
    fixed order gives the same loss as the code's shuffled order, which only reorders the pairs."""
    if noise not in SUBTAB_NOISES:
        raise UsageError(f"SubTab noise {noise!r} is not one of: {', '.join(SUBTAB_NOISES)}")
    k, s = subsets.shape
    cols = subsets.to(x.device).reshape(-1)
    xs = x.index_select(1, cols)  # (B, K*S): every subset's columns side by side
    if noise != "none":
        mask = bernoulli_mask(xs.shape, masking_ratio, generator, x.device)
        if noise == "swap":
            noisy = shuffle_columns(xs, generator)
        elif noise == "gaussian":
            if numeric is None:
                raise UsageError("SubTab's gaussian noise needs the numeric-column mask (numeric=)")
            noisy = gaussian_noise(xs, noise_level, generator, numeric.to(x.device).index_select(0, cols))
        else:
            zero = (
                torch.zeros(k * s, device=x.device, dtype=x.dtype)
                if fill is None
                else fill.to(x.device, x.dtype).index_select(0, cols)
            )
            noisy = zero.expand_as(xs)
        xs = torch.where(mask, noisy, xs)
    return xs.reshape(x.shape[0], k, s).transpose(0, 1)
