"""The Feature Tokenizer Transformer for tables (Gorishniy et al. 2021, "Revisiting Deep Learning
Models for Tabular Data", NeurIPS, arXiv:2106.11959, Sec. 3.3), with optional [REG] tokens (T-JEPA,
Thimonier et al. 2025, "T-JEPA: Augmentation-Free Self-Supervised Learning for Tabular Data", ICLR).

* Feature tokenizer: numeric feature j becomes ``x_j W_j + b_j``, categorical feature j its
  category's embedding ``+ b_j`` (one token of width ``d_token`` per column, in column order).
  Weights, embeddings and biases start uniform in ``[-1/sqrt(d), 1/sqrt(d)]`` (the authors' rtdl
  default). Tokens carry no position embedding: ``W_j`` and ``b_j`` already identify the column, so
  the encoder is invariant to the order of the tokens it is given.
* Prefix tokens: one learned [CLS] token (``cls_token``; off for T-JEPA, whose sequence has none),
  then ``n_reg`` learned [REG] tokens (T-JEPA's regularisation tokens, which its authors found
  necessary to avoid collapse; its code prepends them). They are always encoded, whatever subset
  of feature tokens is kept.
* Blocks: pre-norm Transformer blocks, ``x + Attention(LN(x))`` then ``x + FFN(LN(x))``, without
  the first block's first LayerNorm (Sec. 3.3: the tokens enter attention as they are), multi-head
  attention on :func:`torch.nn.functional.scaled_dot_product_attention`, a ReGLU FFN of width
  ``ffn_factor * d_token``, and a final LayerNorm. Defaults are the paper's default FT-Transformer
  (its appendix; rtdl's ``get_default_kwargs``): ``d_token`` 192, 3 blocks, 8 heads, FFN factor 4/3, attention dropout
  0.2, FFN dropout 0.1, residual dropout 0.
* Outputs: :meth:`tokenize` gives the feature tokens (B, F, D); :meth:`encode` runs the blocks on
  the prefix plus the kept feature tokens (``keep``: (B, K) column indices per row, so a masked
  method such as T-JEPA encodes only its context columns, and dropped columns cost nothing);
  :meth:`forward` pools ``encode(tokenize(x))`` into (B, D): the [CLS] output (``pool="cls"``),
  the mean of the feature tokens (``"mean"``), or every output token side by side (``"flatten"``:
  D = (n_prefix + F) * d_token; the representation T-JEPA's downstream models read, all tokens of
  the target encoder).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UsageError
from ..modalities.table.schema import column_layout
from .registry import Family, register

POOLS = ("cls", "mean", "flatten")


def _uniform_(tensor: torch.Tensor, d: int) -> torch.Tensor:
    bound = 1 / math.sqrt(d)
    return nn.init.uniform_(tensor, -bound, bound)


class FeatureTokenizer(nn.Module):
    """Encoded rows (B, F) -> feature tokens (B, F, d) in column order (Sec. 3.3, Eq. for T_j)."""

    def __init__(self, meta: dict, d_token: int) -> None:
        super().__init__()
        numeric, cat, cards = column_layout(meta)
        n = len(numeric) + len(cat)
        self.register_buffer("numeric_idx", torch.tensor(numeric, dtype=torch.long), persistent=False)
        self.register_buffer("categorical_idx", torch.tensor(cat, dtype=torch.long), persistent=False)
        offsets = torch.tensor([0, *cards[:-1]], dtype=torch.long).cumsum(0)
        self.register_buffer("offsets", offsets, persistent=False)
        # Tokens are built numeric-first; ``order`` puts column j back at position j.
        self.register_buffer("order", torch.tensor(numeric + cat, dtype=torch.long).argsort(), persistent=False)
        self.weight = nn.Parameter(_uniform_(torch.empty(len(numeric), d_token), d_token))
        self.embed = nn.Embedding(max(int(sum(cards)), 1), d_token)
        _uniform_(self.embed.weight, d_token)
        self.bias = nn.Parameter(_uniform_(torch.empty(n, d_token), d_token))
        self.n_features = n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        numeric = x.index_select(1, self.numeric_idx).unsqueeze(-1) * self.weight
        codes = x.index_select(1, self.categorical_idx).long() + self.offsets
        tokens = torch.cat([numeric, self.embed(codes).to(numeric.dtype)], dim=1)
        return tokens.index_select(1, self.order) + self.bias


class Block(nn.Module):
    """Pre-norm Transformer block with a ReGLU feed-forward network."""

    def __init__(
        self,
        d: int,
        heads: int,
        ffn_hidden: int,
        attn_dropout: float,
        ffn_dropout: float,
        residual_dropout: float,
        first: bool,
    ) -> None:
        super().__init__()
        self.heads = heads
        self.attn_dropout = attn_dropout
        self.norm1 = nn.Identity() if first else nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d)
        self.ffn_in = nn.Linear(d, 2 * ffn_hidden)
        self.ffn_out = nn.Linear(ffn_hidden, d)
        self.ffn_dropout = nn.Dropout(ffn_dropout)
        self.residual_dropout = nn.Dropout(residual_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_dropout if self.training else 0.0)
        x = x + self.residual_dropout(self.proj(attn.transpose(1, 2).reshape(b, t, d)))
        a, gate = self.ffn_in(self.norm2(x)).chunk(2, dim=-1)
        x = x + self.residual_dropout(self.ffn_out(self.ffn_dropout(a * F.relu(gate))))
        return x


class FTTransformer(nn.Module):
    """Encoded rows (B, F) -> features (B, d_token); see the module docstring."""

    def __init__(
        self,
        meta: dict,
        d_token: int = 192,
        depth: int = 3,
        heads: int = 8,
        ffn_factor: float = 4 / 3,
        attn_dropout: float = 0.2,
        ffn_dropout: float = 0.1,
        residual_dropout: float = 0.0,
        n_reg: int = 0,
        pool: str = "cls",
        cls_token: bool = True,
    ) -> None:
        super().__init__()
        if pool not in POOLS:
            raise UsageError(f"pool {pool!r} is not one of: {', '.join(POOLS)}")
        if heads < 1 or d_token % heads:
            raise UsageError(f"d_token {d_token} must be divisible by the number of heads {heads}")
        if depth < 1 or n_reg < 0:
            raise UsageError(f"an FT-Transformer needs depth >= 1 and n_reg >= 0; got {depth}, {n_reg}")
        if pool == "cls" and not cls_token:
            raise UsageError(
                "pool cls needs the [CLS] token; set model.cls_token=true or model.pool to mean or flatten"
            )
        self.tokenizer = FeatureTokenizer(meta, d_token)
        self.cls = nn.Parameter(_uniform_(torch.empty(1, int(cls_token), d_token), d_token))
        self.reg = nn.Parameter(_uniform_(torch.empty(1, n_reg, d_token), d_token))
        hidden = int(d_token * ffn_factor)
        self.blocks = nn.ModuleList(
            Block(d_token, heads, hidden, attn_dropout, ffn_dropout, residual_dropout, i == 0) for i in range(depth)
        )
        self.norm = nn.LayerNorm(d_token)
        self.meta = meta
        self.pool = pool
        self.n_prefix = int(cls_token) + n_reg
        self.n_features = self.tokenizer.n_features
        self.d_token = d_token
        self.feature_dim = d_token * (self.n_prefix + self.n_features if pool == "flatten" else 1)

    def tokenize(self, x: torch.Tensor) -> torch.Tensor:
        """(B, F) -> (B, F, d_token) feature tokens, column order."""
        return self.tokenizer(x)

    def encode(self, tokens: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Run the blocks on [CLS], [REG]s and the feature tokens ``keep`` names ((B, K) indices into
        the F columns; all when None). Returns (B, n_prefix + K, d_token) after the final LayerNorm:
        the [CLS] token (when there is one), the [REG] tokens, then the kept tokens in ``keep``'s
        order."""
        b, _, d = tokens.shape
        if keep is not None:
            tokens = torch.gather(tokens, 1, keep.unsqueeze(-1).expand(-1, -1, d))
        h = torch.cat([self.cls.expand(b, -1, -1), self.reg.expand(b, -1, -1), tokens], dim=1)
        for block in self.blocks:
            h = block(h)
        return self.norm(h)

    def pooled(self, h: torch.Tensor) -> torch.Tensor:
        """The representation (B, feature_dim) of encoded full rows ``h`` (B, n_prefix + F, d_token)."""
        if self.pool == "cls":
            return h[:, 0]
        if self.pool == "mean":
            return h[:, self.n_prefix :].mean(dim=1)
        return h.flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pooled(self.encode(self.tokenize(x)))


@dataclass
class FTTransformerOptions:
    """The ``ft-transformer`` family's options (the config's ``model.<key>``); defaults are the
    paper's default FT-Transformer (Gorishniy et al. 2021, Appendix)."""

    d_token: int = 192
    depth: int = 3
    heads: int = 8
    ffn_factor: float = 4 / 3
    attn_dropout: float = 0.2
    ffn_dropout: float = 0.1
    residual_dropout: float = 0.0
    n_reg: int = 0  # T-JEPA's [REG] tokens
    pool: str = "cls"  # cls | mean | flatten
    cls_token: bool = True  # a [CLS] token first (T-JEPA's sequence has none)


def build(name: str, input_spec: dict, options: FTTransformerOptions) -> FTTransformer:
    return FTTransformer(input_spec, **dataclasses.asdict(options))


register(Family("ft-transformer", ("ft-transformer",), FTTransformerOptions, build, ("table",)))
