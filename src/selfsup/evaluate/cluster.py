"""Clustering evaluation: k-means on frozen features, scored by NMI, ARI and cluster accuracy.

k-means (Lloyd's iterations, k-means++ seeding of Arthur & Vassilvitskii 2007, several seeded
restarts, the lowest inertia kept) runs on L2-normalised features with ``k`` = the number of
classes; it sees no labels. The centroids are fitted on the training split and the test split
is assigned to the nearest one, then scored against the test labels with

* NMI, normalised mutual information with the arithmetic mean of the two entropies
  (Strehl & Ghosh 2002; Vinh et al. 2010),
* ARI, the adjusted Rand index (Hubert & Arabie 1985),
* cluster accuracy, the accuracy under the one-to-one matching of clusters to classes that
  maximises it (the Hungarian algorithm, Kuhn 1955; used for deep clustering since
  Xie et al. 2016), the measure of IIC, SCAN and the like.

Everything is torch and numpy; the assignment solver is a small O(n^3) implementation below.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from .linear import threads_for

# ----------------------------------------------------------------------------- assignment


def linear_assignment(cost, maximize: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the one-to-one assignment of least (or greatest) total ``cost``.

    ``cost`` is an (n, m) array; min(n, m) pairs are returned, sorted by row. The shortest
    augmenting path form of the Hungarian algorithm with row and column potentials
    (Kuhn 1955; Munkres 1957; Jonker & Volgenant 1987): O(n^2 m), the inner scan over columns
    vectorised.
    """
    a = np.asarray(cost, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"cost must be a 2-D array, got shape {a.shape}")
    if maximize:
        a = -a
    transposed = a.shape[0] > a.shape[1]
    if transposed:
        a = a.T
    n, m = a.shape
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if not np.isfinite(a).all():
        raise ValueError("cost contains NaN or infinite entries")
    # Index 0 is a virtual column; rows and columns are 1-based in u, v, p, way.
    u = np.zeros(n + 1)
    v = np.zeros(m + 1)
    p = np.zeros(m + 1, dtype=np.int64)  # p[j]: row matched to column j (0: none)
    way = np.zeros(m + 1, dtype=np.int64)  # previous column on the augmenting path
    for i in range(1, n + 1):
        p[0] = i
        j0 = 0
        minv = np.full(m + 1, np.inf)
        used = np.zeros(m + 1, dtype=bool)
        while True:
            used[j0] = True
            i0 = p[j0]
            free = ~used[1:]
            cur = a[i0 - 1] - u[i0] - v[1:]
            better = free & (cur < minv[1:])
            minv[1:][better] = cur[better]
            way[1:][better] = j0
            masked = np.where(free, minv[1:], np.inf)
            j1 = int(np.argmin(masked)) + 1
            delta = masked[j1 - 1]
            u[p[used]] += delta
            v[used] -= delta
            minv[~used] -= delta
            j0 = j1
            if p[j0] == 0:
                break
        while j0:  # flip the augmenting path
            j1 = way[j0]
            p[j0] = p[j1]
            j0 = j1
    cols = np.nonzero(p[1:])[0]
    rows = p[1:][cols] - 1
    if transposed:
        rows, cols = cols, rows
    order = np.argsort(rows)
    return rows[order].astype(np.int64), cols[order].astype(np.int64)


# ----------------------------------------------------------------------------- scores


def contingency(labels_true, labels_pred) -> np.ndarray:
    """Counts ``C[i, j]`` of samples with true label ``i`` and predicted cluster ``j`` (compacted ids)."""
    t = np.asarray(labels_true.cpu() if isinstance(labels_true, torch.Tensor) else labels_true).ravel()
    p = np.asarray(labels_pred.cpu() if isinstance(labels_pred, torch.Tensor) else labels_pred).ravel()
    if t.shape != p.shape:
        raise ValueError(f"{t.shape[0]} labels but {p.shape[0]} cluster assignments")
    _, ti = np.unique(t, return_inverse=True)
    _, pi = np.unique(p, return_inverse=True)
    c = np.zeros((ti.max(initial=-1) + 1, pi.max(initial=-1) + 1), dtype=np.int64)
    np.add.at(c, (ti, pi), 1)
    return c


def cluster_accuracy(labels_true, labels_pred) -> float:
    """Accuracy of the best one-to-one map from clusters to classes (Hungarian matching)."""
    c = contingency(labels_true, labels_pred)
    if c.sum() == 0:
        return 0.0
    rows, cols = linear_assignment(c, maximize=True)
    return float(c[rows, cols].sum() / c.sum())


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def nmi(labels_true, labels_pred) -> float:
    """Normalised mutual information, ``MI / ((H(true) + H(pred)) / 2)``, in [0, 1]."""
    c = contingency(labels_true, labels_pred).astype(np.float64)
    n = c.sum()
    if n == 0:
        return 0.0
    h_true, h_pred = _entropy(c.sum(1)), _entropy(c.sum(0))
    if h_true == 0 and h_pred == 0:  # one class and one cluster: identical partitions
        return 1.0
    nz = c > 0
    outer = np.outer(c.sum(1), c.sum(0))
    mi = float((c[nz] / n * np.log(c[nz] * n / outer[nz])).sum())
    return max(0.0, min(1.0, mi / ((h_true + h_pred) / 2)))


def ari(labels_true, labels_pred) -> float:
    """Adjusted Rand index: 1 for identical partitions, about 0 for independent ones."""
    c = contingency(labels_true, labels_pred).astype(np.float64)
    n = c.sum()
    comb = lambda x: x * (x - 1) / 2  # noqa: E731
    index = comb(c).sum()
    rows, cols = comb(c.sum(1)).sum(), comb(c.sum(0)).sum()
    expected = rows * cols / comb(n) if n > 1 else 0.0
    top = (rows + cols) / 2
    if top == expected:  # both partitions trivial in the same way
        return 1.0
    return float((index - expected) / (top - expected))


# ----------------------------------------------------------------------------- k-means


def _sq_norms(x: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(x, dim=1).pow_(2)


def _nearest(
    x: torch.Tensor, centers: torch.Tensor, x2: torch.Tensor | None = None, chunk_size: int = 65536
) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of the nearest centre and the squared distance to it, for every row of ``x``.

    ``||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2``: one matrix product per chunk; ``x2`` holds the
    precomputed ``||x||^2``.
    """
    x2 = _sq_norms(x) if x2 is None else x2
    c2 = _sq_norms(centers)
    labels, dists = [], []
    for s in range(0, len(x), chunk_size):
        d = torch.addmm(c2, x[s : s + chunk_size], centers.T, alpha=-2.0)
        best, idx = d.min(1)
        labels.append(idx)
        dists.append((best + x2[s : s + chunk_size]).clamp_(min=0))
    return torch.cat(labels), torch.cat(dists)


def _kmeans_pp(x: torch.Tensor, x2: torch.Tensor, k: int, g: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: each new centre drawn with probability proportional to D(x)^2."""
    n = len(x)

    def sq_dist_to(i: int) -> torch.Tensor:
        return (x2 - 2 * (x @ x[i]) + x2[i]).clamp_(min=0)

    chosen = [int(torch.randint(n, (1,), generator=g))]
    d2 = sq_dist_to(chosen[0])
    for _ in range(1, k):
        w = d2.double().cpu()
        i = int(torch.multinomial(w, 1, generator=g)) if w.sum() > 0 else int(torch.randint(n, (1,), generator=g))
        chosen.append(i)
        d2 = torch.minimum(d2, sq_dist_to(i))
    return x[chosen].clone()


@torch.no_grad()
def kmeans(
    x: torch.Tensor, k: int, n_init: int = 10, max_iter: int = 100, tol: float = 1e-4, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """``(centers (k, D), labels (N,), inertia)`` of the best of ``n_init`` seeded k-means runs.

    Lloyd's iterations stop when the centres move (summed squared shift) by less than ``tol``
    times the mean variance of the data, or after ``max_iter``. An empty cluster is re-seeded
    with the point farthest from its centre. Deterministic in ``seed``.
    """
    x = x.float()
    n = len(x)
    if not 1 <= k <= n:
        raise ValueError(f"k-means needs 1 <= k <= {n} (the number of points), got k={k}")
    with threads_for(x):
        return _kmeans(x, k, n_init, max_iter, tol, seed)


def _kmeans(x, k, n_init, max_iter, tol, seed):
    threshold = tol * x.var(0, unbiased=False).mean().item()
    x2 = _sq_norms(x)
    g = torch.Generator().manual_seed(seed)
    best = None
    for _ in range(n_init):
        centers = _kmeans_pp(x, x2, k, g)
        for _ in range(max_iter):
            labels, d2 = _nearest(x, centers, x2)
            counts = torch.bincount(labels, minlength=k)
            new = torch.zeros_like(centers).index_add_(0, labels, x)
            new /= counts.clamp(min=1).unsqueeze(1).to(x.dtype)
            empty = torch.nonzero(counts == 0).flatten()
            if len(empty):
                new[empty] = x[d2.topk(len(empty)).indices]
            shift = (new - centers).pow(2).sum().item()
            centers = new
            if shift <= threshold and not len(empty):
                break
        labels, d2 = _nearest(x, centers, x2)
        inertia = d2.sum().item()
        if best is None or inertia < best[2]:
            best = (centers, labels, inertia)
    return best


def cluster_eval(
    train_x: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    k: int,
    n_init: int = 10,
    max_iter: int = 100,
    seed: int = 0,
) -> dict:
    """k-means with ``k`` clusters fitted on L2-normalised ``train_x``; NMI/ARI/accuracy on the test split."""
    start = time.perf_counter()
    xtr = F.normalize(train_x.float(), dim=1)
    xte = F.normalize(test_x.float().to(xtr.device), dim=1)
    with threads_for(xtr):
        centers, _, inertia = kmeans(xtr, k, n_init=n_init, max_iter=max_iter, seed=seed)
        pred, _ = _nearest(xte, centers)
    pred, y = pred.cpu(), test_y.cpu()
    return {
        "k": k,
        "nmi": nmi(y, pred),
        "ari": ari(y, pred),
        "acc": cluster_accuracy(y, pred),
        "inertia": inertia,
        "restarts": n_init,
        "seconds": round(time.perf_counter() - start, 3),
    }
