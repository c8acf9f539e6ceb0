"""The raw-series baselines: 1-NN with Euclidean distance and with dynamic time warping, batched in torch.

DTW is the standard recurrence ``D[i, j] = c(i, j) + min(D[i-1, j], D[i, j-1], D[i-1, j-1])`` with
``c`` the squared Euclidean distance between the two series' channel vectors at ``i`` and ``j``
(dependent DTW for multivariate series), optionally inside a Sakoe-Chiba band ``|i - j| <= window``
(Sakoe & Chiba 1978). It runs one anti-diagonal ``i + j = d`` at a time for every pair of a chunk at
once (the cells of a diagonal depend only on the two before it), so the Python loop runs over the
``Ta + Tb - 1`` diagonals, never over pairs or cells, and each diagonal is five vector passes over its
cells. Series keep their own lengths (NaN padding after the end is never read): the distance of series
of lengths ``n`` and ``m`` is ``sqrt(D[n-1, m-1])``, and with unequal lengths the band is widened to
``|n - m|`` so a path exists.
Chunks hold series of similar lengths, cut to the longest among them.
"""

from __future__ import annotations

import torch


def series_lengths(x: torch.Tensor) -> torch.Tensor:
    """Per-series length ``(N,)``: one past the last step where any channel has a value."""
    present = ~torch.isnan(x).all(dim=1)
    return (present * torch.arange(1, x.shape[-1] + 1, device=x.device)).amax(dim=1)


def dtw_paired(
    a: torch.Tensor,
    b: torch.Tensor,
    window: int | None = None,
    lengths_a: torch.Tensor | None = None,
    lengths_b: torch.Tensor | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """DTW distance of ``a[p]`` and ``b[p]`` for every ``p``: ``(P, C, Ta)``, ``(P, C, Tb)`` -> ``(P,)``.

    ``lengths_*`` default to where each series' NaN padding starts; values after them are never read
    (a row or column past a series' end never feeds the cell its distance is read from)."""
    assert a.shape[:2] == b.shape[:2], (a.shape, b.shape)
    pairs, channels, len_a = a.shape
    len_b = b.shape[2]
    la = series_lengths(a) if lengths_a is None else lengths_a
    lb = series_lengths(b) if lengths_b is None else lengths_b
    a = torch.nan_to_num(a).to(dtype)
    b_rev = torch.nan_to_num(b).to(dtype).flip(-1)  # b[d - i] = b_rev[len_b - 1 - d + i]: contiguous in i
    if channels == 1:
        a, b_rev = a[:, 0], b_rev[:, 0]
    inf = float("inf")
    # Three anti-diagonals in turn, cell i of each at index i + 1; index 0 and the index past a
    # diagonal's last cell hold inf, so a cell outside the previous diagonals is never a predecessor.
    diagonals = [torch.full((pairs, len_a + 2), inf, dtype=dtype, device=a.device) for _ in range(3)]
    band = widest = rows = None
    if window is not None:
        band = torch.maximum(torch.as_tensor(window, device=a.device), (la - lb).abs())[:, None]
        widest, rows = int(band.max()), torch.arange(len_a, device=a.device)
    end_diagonal, end_index = la + lb - 2, la[:, None]  # D[la - 1, lb - 1]
    result = torch.full((pairs,), inf, dtype=dtype, device=a.device)
    for d in range(len_a + len_b - 1):
        current, previous, before = diagonals[d % 3], diagonals[(d - 1) % 3], diagonals[(d - 2) % 3]
        lo, hi = max(0, d - len_b + 1), min(d, len_a - 1)
        if widest is not None:  # |i - j| = |2i - d| <= the widest band of the chunk
            lo, hi = max(lo, (d - widest + 1) // 2), min(hi, (d + widest) // 2)
            if lo > hi:  # no cell of this diagonal is inside any band
                current.fill_(inf)
                continue
        s = len_b - 1 - d
        if channels == 1:
            cost = (a[:, lo : hi + 1] - b_rev[:, s + lo : s + hi + 1]).pow_(2)
        else:
            cost = (a[:, :, lo : hi + 1] - b_rev[:, :, s + lo : s + hi + 1]).pow_(2).sum(dim=1)
        cells = current[:, lo + 1 : hi + 2]
        if d == 0:
            cells.copy_(cost)
        else:  # D[i, j] = c(i, j) + min(D[i-1, j], D[i, j-1], D[i-1, j-1])
            best = torch.minimum(previous[:, lo : hi + 1], previous[:, lo + 1 : hi + 2])
            torch.minimum(best, before[:, lo : hi + 1], out=best)
            torch.add(cost, best, out=cells)
        if band is not None:
            cells.masked_fill_((2 * rows[lo : hi + 1] - d).abs() > band, inf)
        current[:, lo] = inf
        current[:, hi + 2] = inf
        result = torch.where(end_diagonal == d, current.gather(1, end_index)[:, 0], result)
    return result.sqrt().float()


def dtw_matrix(
    queries: torch.Tensor,
    references: torch.Tensor,
    window: int | None = None,
    chunk_pairs: int | None = None,
    query_lengths: torch.Tensor | None = None,
    reference_lengths: torch.Tensor | None = None,
) -> torch.Tensor:
    """All DTW distances ``(Nq, Nr)``, in blocks of series of similar lengths (both sides sorted by
    length), each block cut to its longest series.

    A block holds ``chunk_pairs`` pairs when given. By default, on the CPU, a block holds about
    ``2^19 / T`` pairs of series up to ``T`` long (so what a diagonal's passes touch stays in cache,
    and short series come in many pairs at once; ``benchmarks/dtw_speed.py`` times it against one
    large block); on an accelerator, 2^15 pairs, to keep the device busy."""
    nq, nr = len(queries), len(references)
    lq = series_lengths(queries) if query_lengths is None else query_lengths
    lr = series_lengths(references) if reference_lengths is None else reference_lengths
    out = torch.empty((nq, nr), device=queries.device)
    q_order, r_order = lq.argsort(), lr.argsort()
    lq_sorted = lq[q_order].clamp(min=1).tolist()
    cells = 1 << 19 if queries.device.type == "cpu" else None

    def pairs_for(length: int) -> int:
        if chunk_pairs is not None:
            return chunk_pairs
        return max(64, cells // length) if cells is not None else 1 << 15

    per_ref = 64 if chunk_pairs is None else max(1, min(64, chunk_pairs))  # 64: less padding than 256 on PLAID
    for rs in range(0, nr, per_ref):
        ri = r_order[rs : rs + per_ref]
        r_len = int(lr[ri].max().clamp(min=1))
        qs = 0
        while qs < nq:
            per_query = max(1, pairs_for(max(r_len, lq_sorted[qs])) // len(ri))
            # the block's longest query may be longer than its first: size the block for it
            per_query = max(1, pairs_for(max(r_len, lq_sorted[min(qs + per_query, nq) - 1])) // len(ri))
            qi = q_order[qs : qs + per_query]
            q_len = int(lq_sorted[min(qs + per_query, nq) - 1])
            left = queries[qi, :, :q_len].repeat_interleave(len(ri), dim=0)
            right = references[ri, :, :r_len].repeat(len(qi), 1, 1)
            d = dtw_paired(left, right, window, lq[qi].repeat_interleave(len(ri)), lr[ri].repeat(len(qi)))
            out[qi[:, None], ri[None, :]] = d.view(len(qi), len(ri))
            qs += per_query
    return out


def euclidean_matrix(
    queries: torch.Tensor,
    references: torch.Tensor,
    chunk_pairs: int = 65536,
    query_lengths: torch.Tensor | None = None,
    reference_lengths: torch.Tensor | None = None,
) -> torch.Tensor:
    """Euclidean distances ``(Nq, Nr)`` over the timestamps both series have.

    For equal lengths this is the plain Euclidean distance. For unequal lengths it is the root mean
    square difference over the common prefix (a sum would favour short overlaps); for equal lengths
    that ranks neighbours exactly as the Euclidean distance does, so only unequal lengths use it.
    """
    la = series_lengths(queries) if query_lengths is None else query_lengths
    lb = series_lengths(references) if reference_lengths is None else reference_lengths
    q_all, r = torch.nan_to_num(queries).float(), torch.nan_to_num(references).float()
    length = min(q_all.shape[2], r.shape[2])
    q_all, r = q_all[:, :, :length], r[:, :, :length]
    out = torch.empty((len(q_all), len(r)), device=queries.device)
    equal = bool((la == length).all() and (lb == length).all()) if length else True
    rows_per_chunk = max(1, chunk_pairs // max(len(r), 1))
    for start in range(0, len(q_all), rows_per_chunk):
        q = q_all[start : start + rows_per_chunk]
        if equal:
            out[start : start + len(q)] = torch.cdist(q.flatten(1), r.flatten(1))
            continue
        squared = (q[:, None] - r[None]).pow(2).sum(dim=2).cumsum(dim=2)  # (q, Nr, T) prefix sums
        common = torch.minimum(la[start : start + len(q), None], lb[None, :]).clamp(min=1, max=length)
        total = squared.gather(2, (common - 1)[..., None])[..., 0]
        out[start : start + len(q)] = (total / common).sqrt()
    return out


def nearest_neighbour_accuracy(
    train: torch.Tensor,
    train_labels: torch.Tensor,
    test: torch.Tensor,
    test_labels: torch.Tensor,
    metric: str = "dtw",
    window: int | None = None,
) -> float:
    """Test accuracy of the 1-NN classifier on raw series (``metric`` ``euclidean`` or ``dtw``); ties go to
    the first reference in the training split's order."""
    assert metric in ("euclidean", "dtw"), metric
    distances = euclidean_matrix(test, train) if metric == "euclidean" else dtw_matrix(test, train, window)
    predicted = train_labels.to(distances.device)[distances.argmin(dim=1)]
    return (predicted == test_labels.to(distances.device)).float().mean().item()
