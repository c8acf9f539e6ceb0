"""Batched row views on real tables: SCARF, VIME, noise, dropout, SubTab subsets."""

from __future__ import annotations

import math

import pytest
import torch

from selfsup.errors import UsageError
from selfsup.modalities.table import ops, schema


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def in_own_column(values: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """(B, F) bool: whether each value occurs in the same column of ``bank``."""
    return torch.stack([torch.isin(values[:, j], bank[:, j]) for j in range(bank.shape[1])], dim=1)


@pytest.mark.parametrize("table, rate, count", [("adult", 0.6, 8), ("california", 0.6, 5), ("california", 0.3, 2)])
def test_scarf_corrupts_exactly_round_c_times_f_features_per_row(request, table, rate, count):
    data = request.getfixturevalue(table)
    x = data.val[:4096]
    out = ops.scarf_corrupt(x, data.train, rate, gen())
    assert ops.corrupted_count(rate, x.shape[1]) == count
    assert torch.all(out.mask.sum(dim=1) == count)
    assert torch.equal(out.view[~out.mask], x[~out.mask])
    # The subset is uniform over columns: each column is chosen count/F of the time.
    share = out.mask.float().mean(dim=0)
    p = count / x.shape[1]
    assert torch.all((share - p).abs() < 4 * math.sqrt(p * (1 - p) / len(x)))


def test_scarf_draws_come_from_the_same_column_of_training_rows(california):
    bank, x = california.train, california.test[:4096]
    out = ops.scarf_corrupt(x, bank, 0.6, gen(1))
    assert in_own_column(out.view, bank)[out.mask].all()
    # California's columns hold different values: a draw from another column would be caught here.
    cross = torch.isin(out.view[:, 0][out.mask[:, 0]], bank[:, 6])  # MedInc draws among Latitudes
    assert cross.float().mean() < 0.01
    # Draws follow the column's empirical marginal: their mean and spread match the bank's.
    for j in range(bank.shape[1]):
        drawn = out.view[:, j][out.mask[:, j]]
        assert abs(drawn.mean() - bank[:, j].mean()) < 5 * bank[:, j].std() / math.sqrt(len(drawn))
    # Each entry draws its own row (the marginals, not the joint): where both Latitude and Longitude
    # of a row are replaced, the pair has lost the bank's strong correlation between them.
    both = out.mask[:, 6] & out.mask[:, 7]
    pairs = out.view[both][:, 6:8]
    assert torch.corrcoef(bank[:, 6:8].T)[0, 1] < -0.9
    assert abs(torch.corrcoef(pairs.T)[0, 1]) < 0.1 and both.sum() > 1000


def test_scarf_keeps_categorical_codes_valid_and_is_reproducible(adult):
    out = ops.scarf_corrupt(adult.val, adult.train, 0.6, gen(2))
    _, categorical, cards = schema.column_layout(adult.meta)
    for j, k in zip(categorical, cards):
        codes = out.view[:, j]
        assert torch.equal(codes, codes.round()) and codes.min() >= 0 and codes.max() < k
    assert in_own_column(out.view, adult.train)[out.mask].all()
    assert torch.equal(ops.scarf_corrupt(adult.val, adult.train, 0.6, gen(2)).view, out.view)


def test_vime_mask_has_the_requested_rate_and_values_stay_in_their_column(adult):
    x = adult.train[:8192]
    out = ops.vime_corrupt(x, 0.3, gen(3))
    n = out.mask.numel()
    assert abs(out.mask.float().mean() - 0.3) < 4 * math.sqrt(0.3 * 0.7 / n)
    assert torch.equal(out.changed, out.view != x) and not (out.changed & ~out.mask).any()
    assert in_own_column(out.view, x).all()  # batch shuffle: every value is one of its column's
    shuffled = ops.shuffle_columns(x, gen(4))
    assert torch.equal(shuffled.sort(dim=0).values, x.sort(dim=0).values)  # a permutation per column
    assert not torch.equal(shuffled, x)
    banked = ops.vime_corrupt(x, 0.3, gen(5), bank=adult.test)
    assert in_own_column(banked.view, adult.test)[banked.mask].all()


def test_feature_dropout_fills_neutral_values(adult):
    fill = schema.neutral_values(adult.meta)
    out = ops.feature_dropout(adult.train[:8192], 0.2, gen(6), fill)
    assert abs(out.mask.float().mean() - 0.2) < 0.01
    assert torch.equal(out.view[out.mask], fill.expand_as(out.view)[out.mask])
    workclass = adult.meta["columns"][1]
    assert fill[1] == workclass["categories"].index(schema.UNKNOWN) and fill[0] == 0


def test_gaussian_noise_touches_numeric_columns_only(adult):
    x = adult.train[:8192]
    numeric = schema.numeric_columns(adult.meta)
    noisy = ops.gaussian_noise(x, 0.1, gen(7), numeric)
    assert torch.equal(noisy[:, ~numeric], x[:, ~numeric])
    assert (noisy[:, numeric] - x[:, numeric]).std() == pytest.approx(0.1, rel=0.02)


@pytest.mark.parametrize(
    "f, k, overlap, expected",
    [
        (14, 4, 0.75, [[0, 1, 2, 3, 4], [1, 2, 3, 4, 5], [4, 5, 6, 7, 8], [7, 8, 9, 10, 11]]),
        (8, 2, 0.5, [[0, 1, 2, 3, 4, 5], [2, 3, 4, 5, 6, 7]]),
        (9, 3, 0.0, [[0, 1, 2], [3, 4, 5], [6, 7, 8]]),
        (8, 1, 0.0, [list(range(8)), list(range(8))]),
    ],
)
def test_subtab_subsets_follow_the_authors_rule(f, k, overlap, expected):
    subsets = ops.subtab_subsets(f, k, overlap)
    assert subsets.tolist() == expected
    m = f // k
    assert subsets.shape[1] == m + int(overlap * m)


def test_subtab_views_are_the_subset_columns_with_noise(adult):
    x = adult.train[:8192]
    subsets = ops.subtab_subsets(14, 4, 0.75)
    clean = ops.subtab_views(x, subsets, gen(8), noise="none")
    assert clean.shape == (4, len(x), 5)
    for k in range(4):
        assert torch.equal(clean[k], x[:, subsets[k]])
    noisy = ops.subtab_views(x, subsets, gen(8), noise="swap", masking_ratio=0.3)
    changed = (noisy != clean).float().mean()
    assert 0.05 < changed < 0.3  # at most the masked 30 %, less where a swap draws the same value
    for k in range(4):
        assert in_own_column(noisy[k], x[:, subsets[k]]).all()  # swapped within the column
    zeroed = ops.subtab_views(x, subsets, gen(9), noise="zero", fill=schema.neutral_values(adult.meta))
    assert in_own_column(zeroed[1], torch.cat([x, schema.neutral_values(adult.meta)[None]])[:, subsets[1]]).all()


def test_bad_view_options_are_usage_errors():
    with pytest.raises(UsageError):
        ops.subtab_subsets(3, 4, 0.5)
    with pytest.raises(UsageError):
        ops.subtab_subsets(8, 2, 1.0)
    with pytest.raises(UsageError):
        ops.corrupted_count(1.5, 8)
