"""A head that predicts a table row's values from a representation, shared by the methods that
reconstruct rows (VIME's feature estimator, the denoising autoencoder): one linear output per
numeric column and one logit vector per categorical column, scored by
:func:`selfsup.losses.tabular.row_reconstruction` (squared error and cross-entropy, over all columns)."""

from __future__ import annotations

import torch
from torch import nn

from ...losses.tabular import row_reconstruction
from ...modalities.table.schema import column_layout


class RowDecoder(nn.Module):
    """``h`` (B, D) -> predictions of the encoded row's columns (see the module docstring); ``hidden``
    > 0 puts one ReLU layer of that width first."""

    def __init__(self, meta: dict, in_dim: int, hidden: int = 0):
        super().__init__()
        numeric, categorical, cards = column_layout(meta)
        self.register_buffer("numeric_idx", torch.tensor(numeric, dtype=torch.long), persistent=False)
        self.register_buffer("categorical_idx", torch.tensor(categorical, dtype=torch.long), persistent=False)
        self.cards = cards
        self.trunk = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True)) if hidden else nn.Identity()
        width = hidden or in_dim
        self.out = nn.Linear(width, len(numeric) + sum(cards))

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(numeric predictions (B, Fn), [logits (B, K_j) per categorical column])."""
        out = self.out(self.trunk(h))
        n = len(self.numeric_idx)
        return out[:, :n], list(out[:, n:].split(self.cards, dim=1)) if self.cards else []

    def loss(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction error of the clean rows ``x`` (B, F) from ``h``."""
        num, logits = self(h)
        has_numeric = len(self.numeric_idx) > 0
        return row_reconstruction(
            num if has_numeric else None,
            x.index_select(1, self.numeric_idx),
            logits,
            x.index_select(1, self.categorical_idx),
        )
