"""Batched 1-NN Euclidean and DTW against a naive O(T^2) reference on real series."""

from __future__ import annotations

import math

import pytest
import torch
from _series_archives import archive

from selfsup.evaluate.dtw import dtw_matrix, dtw_paired, euclidean_matrix, nearest_neighbour_accuracy
from selfsup.modalities.series.ops import series_lengths


def naive_dtw(a: torch.Tensor, b: torch.Tensor, window: int | None = None) -> float:
    """The textbook recurrence on two (C, n) and (C, m) series without padding."""
    n, m = a.shape[1], b.shape[1]
    band = None if window is None else max(window, abs(n - m))
    D = [[math.inf] * (m + 1) for _ in range(n + 1)]
    D[0][0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            if band is not None and abs(i - j) > band:
                continue
            cost = sum((float(a[c, i - 1]) - float(b[c, j - 1])) ** 2 for c in range(a.shape[0]))
            D[i][j] = cost + min(D[i - 1][j], D[i][j - 1], D[i - 1][j - 1])
    return math.sqrt(D[n][m])


@pytest.mark.parametrize("window", [None, 0, 3])
def test_dtw_matches_naive_on_italy_power_demand(window):
    data = archive("ItalyPowerDemand")
    a, b = data.train[:6], data.test[:6]
    got = dtw_paired(a, b, window)
    expected = [naive_dtw(a[p], b[p], window) for p in range(6)]
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float32), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_dtw_of_unequal_multivariate_lengths_matches_naive():
    data = archive("JapaneseVowels")
    a, b = data.train[:5], data.test[10:15]
    la, lb = series_lengths(a), series_lengths(b)
    assert (la != lb).any()
    for window in (None, 2):
        got = dtw_paired(a, b, window)
        expected = [naive_dtw(a[p, :, : la[p]], b[p, :, : lb[p]], window) for p in range(5)]
        torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float32), rtol=1e-5, atol=1e-4)


def test_window_zero_equals_euclidean_for_equal_lengths():
    data = archive("GunPoint")
    torch.testing.assert_close(
        dtw_matrix(data.test[:4], data.train[:7], window=0),
        euclidean_matrix(data.test[:4], data.train[:7]),
        rtol=1e-5,
        atol=1e-5,
    )


def test_padding_values_are_never_read():
    data = archive("PickupGestureWiimoteZ")
    q, r = data.test[:4], data.train[:5]
    lq, lr = series_lengths(q), series_lengths(r)
    dtw_before, ed_before = dtw_matrix(q, r), euclidean_matrix(q, r)
    for seed in (0, 1):
        noise = torch.Generator().manual_seed(seed)
        q2 = torch.where(torch.isnan(q), torch.randn(q.shape, generator=noise) * 1e3, q)
        r2 = torch.where(torch.isnan(r), torch.randn(r.shape, generator=noise) * 1e3, r)
        assert not torch.isnan(q2).any()
        torch.testing.assert_close(dtw_matrix(q2, r2, query_lengths=lq, reference_lengths=lr), dtw_before)
        torch.testing.assert_close(euclidean_matrix(q2, r2, query_lengths=lq, reference_lengths=lr), ed_before)


def test_one_nn_euclidean_matches_the_archive_published_figures():
    # The UCR archive's published 1-NN error rates: GunPoint ED 0.087; ItalyPowerDemand ED 0.045.
    gun, italy = archive("GunPoint"), archive("ItalyPowerDemand")
    assert nearest_neighbour_accuracy(
        gun.train, gun.train_labels, gun.test, gun.test_labels, "euclidean"
    ) == pytest.approx(1 - 0.087, abs=5e-4)
    assert nearest_neighbour_accuracy(
        italy.train, italy.train_labels, italy.test, italy.test_labels, "euclidean"
    ) == pytest.approx(1 - 0.045, abs=5e-4)


@pytest.mark.slow
def test_one_nn_dtw_matches_the_archive_published_figures():
    # The UCR archive's published 1-NN DTW (full window) error rates: GunPoint 0.093, ItalyPowerDemand 0.050.
    gun, italy = archive("GunPoint"), archive("ItalyPowerDemand")
    assert nearest_neighbour_accuracy(gun.train, gun.train_labels, gun.test, gun.test_labels, "dtw") == pytest.approx(
        1 - 0.093, abs=5e-4
    )
    assert nearest_neighbour_accuracy(
        italy.train, italy.train_labels, italy.test, italy.test_labels, "dtw"
    ) == pytest.approx(1 - 0.050, abs=5e-4)


def test_dtw_of_unequal_lengths_matches_naive_on_short_pickup_gestures():
    data = archive("PickupGestureWiimoteZ")
    la_all = series_lengths(data.train)
    short = torch.nonzero(la_all < 90).flatten()[:6]
    a, b = data.train[short[:3]], data.train[short[3:6]]
    la, lb = series_lengths(a), series_lengths(b)
    assert (la != lb).any()
    for window in (None, 4):
        got = dtw_paired(a, b, window)
        expected = [naive_dtw(a[p, :, : la[p]], b[p, :, : lb[p]], window) for p in range(3)]
        torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float32), rtol=1e-5, atol=1e-4)
    matrix = dtw_matrix(a, b, chunk_pairs=4)  # blocks of series of similar lengths, cut to their longest
    torch.testing.assert_close(matrix.diagonal(), dtw_paired(a, b))
