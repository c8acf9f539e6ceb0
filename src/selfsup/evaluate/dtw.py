"""The raw-series baselines: 1-NN with Euclidean distance and with dynamic time warping, batched in torch.

DTW is the standard recurrence ``D[i, j] = c(i, j) + min(D[i-1, j], D[i, j-1], D[i-1, j-1])`` with
``c`` the squared Euclidean distance between the two series' channel vectors at ``i`` and ``j``
(dependent DTW for multivariate series), optionally inside a Sakoe-Chiba band ``|i - j| <= window``
(Sakoe & Chiba 1978). It runs one row ``i`` at a time for every pair of a chunk at once: with
``a_j = min(D[i-1, j], D[i-1, j-1])`` and the row's prefix sums ``S_j = c(i, 0) + ... + c(i, j)``, the
row is ``D[i, j] = S_j + min_{k <= j} (a_k - S_{k-1})``, a cumulative minimum; so the Python loop runs
over the rows of the longer series, never over pairs or cells. Series keep their own lengths (NaN
padding after the end is never read): the distance of series of lengths ``n`` and ``m`` is
``sqrt(D[n-1, m-1])``, and with unequal lengths the band is widened to ``|n - m|`` so a path exists.
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
    la = series_lengths(a) if lengths_a is None else lengths_a
    lb = series_lengths(b) if lengths_b is None else lengths_b
    a, b = torch.nan_to_num(a).to(dtype), torch.nan_to_num(b).to(dtype)
    cols = torch.arange(b.shape[2], device=a.device)
    band = None if window is None else torch.maximum(torch.as_tensor(window, device=a.device), (la - lb).abs())[:, None]
    inf = torch.tensor(float("inf"), dtype=dtype, device=a.device)
    end = (lb - 1).clamp(min=0)[:, None]
    result = torch.full((pairs,), float("inf"), dtype=dtype, device=a.device)
    shifted_s = torch.zeros_like(b[:, 0])
    reach = torch.empty_like(b[:, 0])
    previous = None
    for i in range(len_a):
        cost = (a[:, :, i : i + 1] - b).pow_(2).sum(dim=1) if channels > 1 else (a[:, 0, i : i + 1] - b[:, 0]).pow_(2)
        if band is not None:
            cost = torch.where((cols - i).abs() <= band, cost, 0.0)  # outside the band: never on a path (below)
        s = cost.cumsum(dim=1)
        if previous is None:
            row = s
        else:
            torch.minimum(previous[:, 1:], previous[:, :-1], out=reach[:, 1:])
            reach[:, 0] = previous[:, 0]
            if band is not None:
                reach = torch.where(cols >= i - band, reach, inf)
            shifted_s[:, 1:] = s[:, :-1]
            row = s + torch.cummin(reach - shifted_s, dim=1).values
        if band is not None:
            row = torch.where(cols <= i + band, row, inf)
        result = torch.where(la - 1 == i, row.gather(1, end)[:, 0], result)
        previous = row
    return result.sqrt().float()


def dtw_matrix(
    queries: torch.Tensor,
    references: torch.Tensor,
    window: int | None = None,
    chunk_pairs: int | None = None,
    query_lengths: torch.Tensor | None = None,
    reference_lengths: torch.Tensor | None = None,
) -> torch.Tensor:
    """All DTW distances ``(Nq, Nr)``, in blocks of about ``chunk_pairs`` pairs of series of similar
    lengths (sorted by length), each block cut to its longest series.

    By default a block on the CPU holds about 2^19 cells per row of the recurrence (2 MiB of float32,
    so a row's dozen passes stay in cache: ``benchmarks/dtw_speed.py`` measures the gain over one
    large block); on an accelerator it holds 2^15 pairs, to keep the device busy."""
    nq, nr = len(queries), len(references)
    lq = series_lengths(queries) if query_lengths is None else query_lengths
    lr = series_lengths(references) if reference_lengths is None else reference_lengths
    out = torch.empty((nq, nr), device=queries.device)
    if chunk_pairs is None:
        longest = int(lr.max().clamp(min=1)) if nr else 1
        chunk_pairs = 1 << 15 if queries.device.type != "cpu" else max(64, (1 << 19) // longest)
    q_order, r_order = lq.argsort(), lr.argsort()
    per_ref = min(nr, 256, chunk_pairs)
    per_query = max(1, chunk_pairs // per_ref)
    for qs in range(0, nq, per_query):
        qi = q_order[qs : qs + per_query]
        q_len = int(lq[qi].max().clamp(min=1))
        for rs in range(0, nr, per_ref):
            ri = r_order[rs : rs + per_ref]
            r_len = int(lr[ri].max().clamp(min=1))
            left = queries[qi, :, :q_len].repeat_interleave(len(ri), dim=0)
            right = references[ri, :, :r_len].repeat(len(qi), 1, 1)
            d = dtw_paired(left, right, window, lq[qi].repeat_interleave(len(ri)), lr[ri].repeat(len(qi)))
            out[qi[:, None], ri[None, :]] = d.view(len(qi), len(ri))
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
