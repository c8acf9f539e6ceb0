"""Low-label (semi-supervised) linear evaluation: a linear probe trained on 1% or 10% of the labels.

The semi-supervised protocol of SimCLR (Chen et al. 2020, Sec. 6) and BYOL (Grill et al. 2020)
with the probe kept linear and the encoder frozen: a class-balanced, seeded subset of the
training labels trains the probe, the whole test split scores it; the mean and standard
deviation over seeds are reported, next to the same probe on raw pixels and on the same subsets.

All training images count as unlabelled data, so the standardisation statistics come from the
whole training split (no labels involved). With a handful of labels per class a held-out split
is too small to choose a weight decay from, so one fixed value is used for every fraction, seed
and input (``LOWSHOT_WEIGHT_DECAY``).
"""

from __future__ import annotations

import time

import torch

from .linear import fit_linear, indices_by_class, principal_axes, standardize, threads_for

DEFAULT_FRACTIONS = (0.01, 0.1)
DEFAULT_SEEDS = (0, 1, 2)
# Fixed, not tuned per run. Checked once over 1e-3..1 on digits (pixels, a BYOL encoder) and on
# Fashion-MNIST (a BYOL encoder): 1e-3 and 1e-2 were within a point of each other and of the
# best everywhere, stronger values lost up to 5 points (10% labels of Fashion-MNIST).
LOWSHOT_WEIGHT_DECAY = 1e-3


def balanced_subset(labels: torch.Tensor, fraction: float, seed: int = 0) -> torch.Tensor:
    """Sorted indices of a class-balanced subset of ``m = max(K, round(fraction * N))`` examples (K classes).

    Every class gets ``m // K`` examples and ``m % K`` classes, drawn by the seed, one more; a
    class with too few examples gives all it has and the rest is spread over the others. So every
    class present has at least one example (digits at 1%: 14 images, 1 or 2 per class). The same
    ``(labels, fraction, seed)`` give the same indices.
    """
    by_class = [idx for _, idx in indices_by_class(labels)]
    k = len(by_class)
    total = min(len(labels), max(k, int(round(fraction * len(labels)))))
    g = torch.Generator().manual_seed(seed)
    quota = torch.full((k,), total // k, dtype=torch.long)
    quota[torch.randperm(k, generator=g)[: total % k]] += 1
    sizes = torch.tensor([len(idx) for idx in by_class])
    # Classes smaller than their quota give what they have; the shortfall goes to the others.
    while True:
        short = int((quota - sizes).clamp(min=0).sum())
        quota = torch.minimum(quota, sizes)
        if short == 0:
            break
        room = torch.nonzero(quota < sizes).flatten()
        room = room[torch.randperm(len(room), generator=g)]
        for i in range(short):
            quota[room[i % len(room)]] += 1
    chosen = [idx[torch.randperm(len(idx), generator=g)[:q]] for idx, q in zip(by_class, quota.tolist())]
    return torch.cat(chosen).sort().values


def lowshot_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    num_classes: int | None = None,
    fractions=DEFAULT_FRACTIONS,
    seeds=DEFAULT_SEEDS,
    weight_decay: float = LOWSHOT_WEIGHT_DECAY,
    max_iter: int = 300,
) -> dict:
    """Test top-1 of a linear probe trained on each fraction of the labels; a JSON-ready dict.

    ``{"1%": {"n": 14, "mean": ..., "std": ..., "top1": [per seed]}, "10%": ..., ...}``; ``std`` is
    the sample standard deviation over seeds (0 for one seed).
    """
    start = time.perf_counter()
    num_classes = num_classes or int(train_y.max()) + 1
    xtr, xte = standardize(train_x, test_x)
    train_y = train_y.to(xtr.device)
    out = {}
    with threads_for(xtr):
        # Principal axes of all training features (no labels needed) precondition every fit.
        q, var = principal_axes(xtr)
        xtr, xte = xtr @ q, xte @ q
        for fraction in fractions:
            accs, n = [], 0
            for seed in seeds:
                idx = balanced_subset(train_y, fraction, seed).to(xtr.device)
                n = len(idx)
                clf = fit_linear(xtr[idx], train_y[idx], num_classes, weight_decay, max_iter=max_iter, variances=var)
                accs.append(clf.accuracy(xte, test_y))
            t = torch.tensor(accs, dtype=torch.float64)
            out[fraction_name(fraction)] = {
                "fraction": fraction,
                "n": n,
                "mean": t.mean().item(),
                "std": t.std().item() if len(t) > 1 else 0.0,
                "top1": accs,
            }
    out["weight_decay"] = weight_decay
    out["seeds"] = list(seeds)
    out["seconds"] = round(time.perf_counter() - start, 3)
    return out


def fraction_name(fraction: float) -> str:
    """``0.01 -> "1%"``, ``0.1 -> "10%"``, ``0.005 -> "0.5%"``."""
    return f"{fraction * 100:g}%"


def fraction_key(fraction: float) -> str:
    """``0.01 -> "1pct"``, ``0.1 -> "10pct"``, ``0.005 -> "0.5pct"``: the fraction in result keys."""
    return f"{fraction * 100:g}pct"
