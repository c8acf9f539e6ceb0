"""Contrastive (InfoNCE-family) losses: SimCLR's NT-Xent and the InfoNCE of MoCo v2/v3 and NNCLR.

Every function accepts float32 or bf16 inputs and computes in float32, so that a loss called
inside ``torch.autocast`` has the same value as outside it up to the inputs' rounding (autocast
is switched off inside, so the similarity matrices are float32 products). The batch is
whatever the caller passes: a distributed caller can pass globally gathered embeddings and the
loss is the same formula over all of them (no module state, no assumptions about devices).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _float32(x: torch.Tensor):
    """Autocast off, so the matrix products below run in float32 even inside ``torch.autocast``."""
    return torch.autocast(x.device.type, enabled=False)


def nt_xent(z_a: torch.Tensor, z_b: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """SimCLR's NT-Xent loss (Chen et al. 2020, "A Simple Framework for Contrastive Learning of
    Visual Representations", arXiv:2002.05709, Eq. 1 and Algorithm 1).

    ``z_a[i]`` and ``z_b[i]`` (N, D) are the projections of two views of image ``i``. Over the 2N
    embeddings, with ``sim`` the cosine similarity, the loss of the positive pair (i, j) is
    ``l(i, j) = -log exp(sim(z_i, z_j)/t) / sum_{k != i} exp(sim(z_i, z_k)/t)``: each embedding's
    positive is its pair and the other 2N - 2 are its negatives. The result is the mean of
    ``l`` over all 2N anchors (both ``l(i, j)`` and ``l(j, i)``, Algorithm 1's ``1/2N`` sum).
    Gradients reach both ``z_a`` and ``z_b``.
    """
    n = z_a.shape[0]
    with _float32(z_a):
        z = F.normalize(torch.cat([z_a.float(), z_b.float()]), dim=-1)
        logits = z @ z.T / temperature
        # An embedding is never its own negative: remove k = i from the denominator.
        self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
        logits = logits.masked_fill(self_mask, float("-inf"))
        idx = torch.arange(n, device=z.device)
        targets = torch.cat([idx + n, idx])  # anchor i < n is paired with i + n, and back
        return F.cross_entropy(logits, targets)


def infonce(
    q: torch.Tensor, k: torch.Tensor, temperature: float, negatives: torch.Tensor | None = None
) -> torch.Tensor:
    """InfoNCE (van den Oord et al. 2018, arXiv:1807.03748) in its two MoCo forms, on L2-normalised
    inputs; ``q`` and ``k`` are (N, D) and ``k[i]`` is the positive of ``q[i]``.

    * ``negatives=None``: in-batch negatives, MoCo v3's ``ctr(q, k)`` (Chen, Xie & He 2021,
      "An Empirical Study of Training Self-Supervised Vision Transformers", arXiv:2104.02057,
      Algorithm 1) *without* its ``2 * tau`` factor: cross-entropy of the N x N logits
      ``q k^T / t`` with the diagonal as labels, i.e.
      ``-log exp(q_i.k_i/t) / sum_j exp(q_i.k_j/t)`` averaged over i. Also NNCLR's loss (Dwibedi
      et al. 2021, arXiv:2104.14548, Eq. 2) with ``q`` the nearest neighbours and ``k`` the
      predictions.
    * ``negatives`` (M, D): MoCo's Eq. 1 (He et al. 2020, arXiv:1911.05722; MoCo v2, Chen et al.
      2020, arXiv:2003.04297): logits ``[q_i.k_i, q_i.n_1, ..., q_i.n_M] / t`` with label 0, i.e.
      ``-log exp(q_i.k_i/t) / (exp(q_i.k_i/t) + sum_m exp(q_i.n_m/t))`` averaged over i.

    Stop-gradient: ``negatives`` (a queue) receives no gradient. ``q`` and ``k`` both do; pass a
    detached ``k`` (a momentum encoder's output already is) when it must be constant.
    """
    with _float32(q):
        q = F.normalize(q.float(), dim=-1)
        k = F.normalize(k.float(), dim=-1)
        if negatives is None:
            logits = q @ k.T / temperature
            targets = torch.arange(q.shape[0], device=q.device)
        else:
            neg = F.normalize(negatives.detach().float(), dim=-1)
            pos = (q * k).sum(dim=-1, keepdim=True)
            logits = torch.cat([pos, q @ neg.T], dim=1) / temperature
            targets = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
        return F.cross_entropy(logits, targets)
