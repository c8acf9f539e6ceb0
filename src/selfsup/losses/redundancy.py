"""Redundancy-reduction and variance-covariance losses on embedding statistics (Barlow Twins,
VICReg).

Both are functions of statistics over the batch dimension, computed from exactly the rows they are
given: a distributed caller passes globally gathered embeddings and gets the global loss (no module
state, no hidden "local batch"). Every function accepts float32 or bf16 inputs and computes in
float32 (autocast is switched off inside, so the correlation matrices are float32 products).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _float32(x: torch.Tensor):
    """Autocast off, so the matrix products below run in float32 even inside ``torch.autocast``."""
    return torch.autocast(x.device.type, enabled=False)


def _off_diagonal_square_sum(m: torch.Tensor) -> torch.Tensor:
    """sum over i != j of m_ij^2."""
    return m.pow(2).sum() - torch.diagonal(m).pow(2).sum()


def barlow_twins_loss(z_a: torch.Tensor, z_b: torch.Tensor, lambd: float = 0.0051) -> torch.Tensor:
    """Barlow Twins' loss (Zbontar et al. 2021, "Barlow Twins: Self-Supervised Learning via
    Redundancy Reduction", arXiv:2103.03230, Eq. 1 and 2).

    Each of the D dimensions of ``z_a`` and ``z_b`` (N, D) is standardised over the batch with the
    biased variance, ``(z - mean) / sqrt(var + 1e-5)`` (what the authors' affine-free
    ``BatchNorm1d`` does in training), the cross-correlation is ``C = z_a_norm^T z_b_norm / N``
    (Eq. 2), and the loss is ``sum_i (1 - C_ii)^2 + lambd * sum_{i != j} C_ij^2`` (Eq. 1).
    Gradients reach both inputs.
    """
    n = z_a.shape[0]
    with _float32(z_a):
        a = F.batch_norm(z_a.float(), None, None, training=True, eps=1e-5)
        b = F.batch_norm(z_b.float(), None, None, training=True, eps=1e-5)
        c = a.T @ b / n
        on_diag = (1 - torch.diagonal(c)).pow(2).sum()
        return on_diag + lambd * _off_diagonal_square_sum(c)


def vicreg_terms(
    z_a: torch.Tensor, z_b: torch.Tensor, eps: float = 1e-4
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """VICReg's three unweighted terms (Bardes, Ponce & LeCun 2022, "VICReg: Variance-Invariance-
    Covariance Regularization for Self-Supervised Learning", ICLR, arXiv:2105.04906, Eq. 1-5):

    * invariance ``s``: ``mean((z_a - z_b)^2)`` over batch and dimensions (Eq. 5 divided by D, as
      the authors' ``F.mse_loss``);
    * variance ``v``: ``(mean_j relu(1 - sqrt(Var(z_a_j) + eps)) + same for z_b) / 2`` (Eq. 1 for
      each branch, averaged), with the unbiased variance over the batch;
    * covariance ``c``: ``sum_{i != j} C(z_a)_ij^2 / D + same for z_b`` (Eq. 3-4), with
      ``C(z) = (z - mean)^T (z - mean) / (N - 1)``.
    """
    with _float32(z_a):
        a, b = z_a.float(), z_b.float()
        n, d = a.shape
        sim = F.mse_loss(a, b)
        a = a - a.mean(dim=0)
        b = b - b.mean(dim=0)
        std_a = torch.sqrt(a.var(dim=0) + eps)
        std_b = torch.sqrt(b.var(dim=0) + eps)
        std = (F.relu(1 - std_a).mean() + F.relu(1 - std_b).mean()) / 2
        cov_a = a.T @ a / (n - 1)
        cov_b = b.T @ b / (n - 1)
        cov = _off_diagonal_square_sum(cov_a) / d + _off_diagonal_square_sum(cov_b) / d
        return sim, std, cov


def vicreg_loss(
    z_a: torch.Tensor,
    z_b: torch.Tensor,
    sim_coeff: float = 25.0,
    std_coeff: float = 25.0,
    cov_coeff: float = 1.0,
    eps: float = 1e-4,
) -> torch.Tensor:
    """VICReg's loss (Bardes, Ponce & LeCun 2022, arXiv:2105.04906, Eq. 6):
    ``sim_coeff * s + std_coeff * v + cov_coeff * c`` with the terms of :func:`vicreg_terms`;
    the defaults (25, 25, 1) are the paper's. Gradients reach both inputs."""
    sim, std, cov = vicreg_terms(z_a, z_b, eps)
    return sim_coeff * sim + std_coeff * std + cov_coeff * cov
