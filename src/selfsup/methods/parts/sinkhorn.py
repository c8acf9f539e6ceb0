"""The Sinkhorn-Knopp equal-partition assignment of SwAV (Caron et al. 2020, "Unsupervised Learning of
Visual Features by Contrasting Cluster Assignments", arXiv:2006.09882, Sec. 3.1, Eq. 3-5 and the
``distributed_sinkhorn`` of their code), written once.

Eq. 3 asks for the codes ``Q`` maximising ``Tr(Q^T C^T Z) + eps * H(Q)`` over the transportation
polytope where every sample's code sums to 1 and every prototype receives ``B / K`` samples (an
equal partition). Its solution (Eq. 5) is ``diag(u) exp(C^T Z / eps) diag(v)``, whose scalings
``u``, ``v`` a few Sinkhorn-Knopp iterations (alternate row and column normalisations) find.

Distributed training: the assignment is over the global batch, as the authors' code does it:
every sum over *samples* below is all-reduced across processes, and ``n_samples`` is the global count.
"""

from __future__ import annotations

import torch

from ...distributed import all_reduce_, world_size


@torch.no_grad()
def sinkhorn(scores: torch.Tensor, epsilon: float = 0.05, iterations: int = 3) -> torch.Tensor:
    """Soft codes (B, K) for ``scores`` (B, K), the prototype scores ``z_b . c_k`` of B samples.

    Every row of the result sums to 1 (a sample's code is a distribution over prototypes) and,
    after enough iterations, every column sums to ``B / K`` (each prototype gets an equal share of
    the batch); SwAV uses 3 iterations and ``epsilon = 0.05``. Computed in float32 whatever the
    input's dtype; no gradient flows (the codes are targets).
    """
    scores = scores.detach().float()
    # exp(s / eps) overflows float32 for s / eps > 88; a constant shift cancels in the first
    # normalisation below (the maximum over every rank, so all shift alike).
    shift = all_reduce_(scores.max(), "max")
    q = torch.exp((scores - shift) / epsilon).t()  # (K, B): prototypes x samples, as in the paper
    n_prototypes, n_samples = q.shape[0], q.shape[1] * world_size()
    total = all_reduce_(q.sum())
    q /= total
    for _ in range(iterations):
        # Each prototype (row) gets total mass 1 / K ...
        prototype_sums = all_reduce_(q.sum(dim=1, keepdim=True))
        q /= prototype_sums
        q /= n_prototypes
        # ... then each sample (column) gets total mass 1 / B.
        sample_sums = q.sum(dim=0, keepdim=True)  # a sample lives on one process: no reduce
        q /= sample_sums
        q /= n_samples
    q *= n_samples  # each sample's code now sums to 1
    return q.t()
