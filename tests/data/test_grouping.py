"""The grouped epoch order behind G-SimCLR's batches."""

import torch

from selfsup.data.grouping import grouped_permutation


def _labels(n=1797, k=64, seed=0):
    # uneven group sizes, as k-means gives
    g = torch.Generator().manual_seed(seed)
    weights = torch.rand(k, generator=g) + 0.2
    return torch.multinomial(weights, n, replacement=True, generator=g)


def test_is_a_permutation_redrawn_each_epoch():
    groups = _labels()
    a = grouped_permutation(groups, seed=0, epoch=0)
    assert sorted(a.tolist()) == list(range(len(groups)))
    assert torch.equal(a, grouped_permutation(groups, seed=0, epoch=0))
    assert not torch.equal(a, grouped_permutation(groups, seed=0, epoch=1))
    assert not torch.equal(a, grouped_permutation(groups, seed=1, epoch=0))


def test_batches_hold_distinct_groups_until_small_groups_run_out():
    k, batch = 64, 64
    groups = _labels(k=k)
    order = grouped_permutation(groups, seed=3, epoch=2)
    per_batch = [groups[idx].unique().numel() for idx in order.split(batch)]
    # every sample of the first round (rank 0 of every group) comes first: the first batch is all distinct
    assert per_batch[0] == batch
    # while every group still has samples, a round is exactly one batch of distinct groups
    full_rounds = int(torch.bincount(groups, minlength=k).min())
    assert full_rounds >= 3
    assert per_batch[:full_rounds] == [batch] * full_rounds
    # a plain shuffle repeats groups far more often
    plain = [groups[idx].unique().numel() for idx in torch.randperm(len(groups)).split(batch)]
    assert sum(per_batch[:full_rounds]) > sum(plain[:full_rounds])


def test_rounds_are_exact_when_groups_equal_the_batch():
    # equal group sizes and as many groups as a batch holds: every batch is one round, all distinct
    groups = torch.arange(32).repeat(10)
    order = grouped_permutation(groups, seed=0, epoch=0)
    for idx in order.split(32):
        assert groups[idx].unique().numel() == 32
