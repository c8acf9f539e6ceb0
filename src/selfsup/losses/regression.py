"""Regression losses between a prediction and a stop-gradient target (BYOL, SimSiam).

Every function accepts float32 or bf16 inputs and computes in float32, so that a loss called
inside ``torch.autocast`` has the same value as outside it up to the inputs' rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """BYOL's regression loss (Grill et al. 2020, Eq. 2): mean over the batch of
    ``||p/|p| - z/|z| ||^2 = 2 - 2 cos(p_i, z_i)``.

    ``z`` (the target network's projection) is treated as a constant: no gradient reaches it.
    The symmetric BYOL objective (Eq. 4) is the *sum* of this over both view orders.
    """
    p = F.normalize(p.float(), dim=-1)
    z = F.normalize(z.detach().float(), dim=-1)
    return (2 - 2 * (p * z).sum(dim=-1)).mean()


def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """SimSiam's ``D(p, z)`` (Chen & He 2021, "Exploring Simple Siamese Representation Learning",
    CVPR, arXiv:2011.10566, Eq. 1 with the stop-gradient of Eq. 3): the mean over the batch of
    ``-cos(p_i, z_i)``, in [-1, 1].

    ``z`` is treated as a constant (``stopgrad``): no gradient reaches it. The symmetrised SimSiam
    loss (Eq. 4) is ``D(p1, z2) / 2 + D(p2, z1) / 2``.
    """
    p = F.normalize(p.float(), dim=-1)
    z = F.normalize(z.detach().float(), dim=-1)
    return -(p * z).sum(dim=-1).mean()
