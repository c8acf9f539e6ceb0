"""An MLP encoder for tables, SCARF's default shape (Bahri et al. 2022, "SCARF: Self-Supervised
Contrastive Learning using Random Feature Corruption", arXiv:2106.15147, Sec. 4: a 4-layer ReLU
network of width 256).

Input: an encoded table batch (B, F) as :mod:`selfsup.modalities.table.schema` makes it (numeric
columns scaled, categorical columns holding codes), described by the table's ``meta``. Numeric
columns enter as they are. Categorical columns enter one-hot by default (``categorical="onehot"``:
parameter-free, what SCARF's and VIME's preprocessing do); ``"embedding"`` learns an
``embed_dim``-vector per category instead (cheaper for columns with many categories). Layers:
``depth`` linear layers of width ``hidden`` with ReLU (and optional dropout) between them; the last
layer is linear (``last_activation`` adds the activation after it too, as VIME's and SubTab's
one-layer encoders), its output (B, hidden) is the representation (``feature_dim = hidden``), and
a method's projection head follows it.

SubTab's encoder (Ucar et al. 2021, arXiv:2110.04361, Sec. 3; ``subsets`` K > 0): the input vector
is cut into K overlapping contiguous subsets (:func:`selfsup.modalities.table.ops.subtab_subsets`
with ``overlap``), one shared network encodes each subset, and the representation of a row is the
mean of its subsets' latents (the authors' ``aggregation: mean``); :meth:`TableMLP.encode_subsets`
is the per-subset path SubTab trains.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import UsageError
from ..modalities.table.ops import subtab_subsets
from ..modalities.table.schema import column_layout
from .registry import Family, register

CATEGORICAL_INPUTS = ("onehot", "embedding")
ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU}


class CategoricalInput(nn.Module):
    """Categorical codes (B, Fc) -> one-hot (B, sum of cardinalities) or embeddings (B, Fc * embed_dim)."""

    def __init__(self, cardinalities: list[int], mode: str, embed_dim: int) -> None:
        super().__init__()
        if mode not in CATEGORICAL_INPUTS:
            raise UsageError(f"categorical input {mode!r} is not one of: {', '.join(CATEGORICAL_INPUTS)}")
        self.mode = mode
        offsets = torch.tensor([0, *cardinalities[:-1]], dtype=torch.long).cumsum(0)
        self.register_buffer("offsets", offsets, persistent=False)
        self.total = int(sum(cardinalities))
        self.embed = nn.Embedding(self.total, embed_dim) if mode == "embedding" else None
        self.out_dim = self.total if mode == "onehot" else embed_dim * len(cardinalities)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        index = codes.long() + self.offsets  # one shared table: column j's codes start at offsets[j]
        if self.embed is not None:
            return self.embed(index).flatten(1)
        onehot = torch.zeros(codes.shape[0], self.total, device=codes.device, dtype=torch.float32)
        return onehot.scatter_(1, index, 1.0)


class TableMLP(nn.Module):
    """Encoded rows (B, F) -> features (B, hidden); see the module docstring."""

    def __init__(
        self,
        meta: dict,
        hidden: int = 256,
        depth: int = 4,
        categorical: str = "onehot",
        embed_dim: int = 8,
        dropout: float = 0.0,
        activation: str = "relu",
        last_activation: bool = False,
        subsets: int = 0,
        overlap: float = 0.75,
    ) -> None:
        super().__init__()
        if depth < 1 or hidden < 1:
            raise UsageError(f"an MLP needs depth >= 1 and hidden >= 1; got depth {depth}, hidden {hidden}")
        if activation not in ACTIVATIONS:
            raise UsageError(f"activation {activation!r} is not one of: {', '.join(ACTIVATIONS)}")
        if subsets < 0 or subsets == 1:
            raise UsageError(f"model.subsets must be 0 (a plain MLP) or at least 2 (SubTab), got {subsets}")
        self.meta = meta
        numeric, cat, cards = column_layout(meta)
        self.register_buffer("numeric_idx", torch.tensor(numeric, dtype=torch.long), persistent=False)
        self.register_buffer("categorical_idx", torch.tensor(cat, dtype=torch.long), persistent=False)
        self.categorical = CategoricalInput(cards, categorical, embed_dim) if cat else None
        self.input_width = len(numeric) + (self.categorical.out_dim if self.categorical is not None else 0)
        self.subsets, self.overlap = subsets, overlap
        width = self.input_width
        if subsets:
            self.register_buffer("subset_idx", subtab_subsets(width, subsets, overlap), persistent=False)
            width = self.subset_idx.shape[1]
        layers: list[nn.Module] = []
        for i in range(depth):
            layers.append(nn.Linear(width if i == 0 else hidden, hidden))
            if i < depth - 1 or last_activation:
                layers.append(ACTIVATIONS[activation]())
                if dropout > 0 and i < depth - 1:
                    layers.append(nn.Dropout(dropout))
        self.net = nn.Sequential(*layers)
        self.feature_dim = hidden

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """The MLP's input vector: numeric columns, then the categorical encoding."""
        parts = [x.index_select(1, self.numeric_idx)]
        if self.categorical is not None:
            parts.append(self.categorical(x.index_select(1, self.categorical_idx)).to(x.dtype))
        return torch.cat(parts, dim=1)

    def subset_inputs(self, v: torch.Tensor) -> torch.Tensor:
        """Input vectors (B, W) -> each row's subsets (K, B, S) (SubTab encoders only)."""
        return v[:, self.subset_idx].transpose(0, 1)

    def encode_subsets(self, subsets: torch.Tensor) -> torch.Tensor:
        """(K, B, S) subsets -> (K, B, hidden) latents, one shared network for every subset."""
        return self.net(subsets)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = self.inputs(x)
        if self.subsets:
            return self.encode_subsets(self.subset_inputs(v)).mean(dim=0)
        return self.net(v)


@dataclass
class MLPOptions:
    """The ``mlp`` family's options (the config's ``model.<key>``)."""

    hidden: int = 256  # SCARF: 4 layers of 256 (Bahri et al. 2022, Sec. 4)
    depth: int = 4
    categorical: str = "onehot"  # onehot | embedding
    embed_dim: int = 8  # embedding: per categorical column
    dropout: float = 0.0
    activation: str = "relu"  # relu | leaky_relu (SubTab's)
    last_activation: bool = False  # also after the last layer (VIME's and SubTab's one-layer encoders)
    subsets: int = 0  # > 1: SubTab's encoder, the mean of the latents of this many feature subsets
    overlap: float = 0.75  # SubTab: the share of a subset's columns shared with its neighbours


def build(name: str, input_spec: dict, options: MLPOptions) -> TableMLP:
    return TableMLP(input_spec, **dataclasses.asdict(options))


register(Family("mlp", ("mlp",), MLPOptions, build, ("table",)))
