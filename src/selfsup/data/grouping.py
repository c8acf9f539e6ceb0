"""Batches that keep groups apart: an epoch order in which consecutive samples come from different
groups (G-SimCLR's batches, Chakraborty et al. 2020, arXiv:2010.00773, where the groups are pseudo
labels and no batch should hold two images of one).

The authors' code ranks each image within its cluster and sorts by rank, so the data is read one
image of every cluster at a time, in a fixed order. Here the order is drawn afresh each epoch from
``(seed, epoch)``: each group is shuffled, then the groups are visited round by round (the i-th
sample of every group that has one, the groups in a fresh random order each round). With at least
as many groups as a batch holds, a batch then repeats a group only where the round runs out of
groups (the last rounds, when small groups are used up).
"""

from __future__ import annotations

import torch


def grouped_permutation(groups: torch.Tensor, seed: int, epoch: int) -> torch.Tensor:
    """A permutation of ``range(len(groups))`` that cycles through the groups (see above)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    groups = groups.long().cpu()
    n = len(groups)
    shuffle = torch.randperm(n, generator=g)  # a random order within each group
    order = shuffle[torch.argsort(groups[shuffle], stable=True)]  # grouped, shuffled within
    sorted_groups = groups[order]
    starts = torch.searchsorted(sorted_groups, sorted_groups, right=False)
    rank = (torch.arange(n) - starts).double()  # each sample's place within its group
    # Round by round (rank 0 of every group, then rank 1 ...), the groups of a round in random order.
    key = rank + torch.rand(n, generator=g, dtype=torch.float64)
    return order[torch.argsort(key)]
