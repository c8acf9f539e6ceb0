"""The table backbones on real encoded rows: shapes, gradients, and the masked-token path."""

from __future__ import annotations

import pytest
import torch

from selfsup.backbones.ft_transformer import FTTransformer
from selfsup.backbones.mlp import TableMLP
from selfsup.errors import UsageError
from selfsup.modalities.table.schema import column_layout


@pytest.mark.parametrize("categorical", ["onehot", "embedding"])
def test_mlp_forward_backward(adult, categorical):
    torch.manual_seed(0)
    model = TableMLP(adult.meta, categorical=categorical)
    x = adult.train[:64]
    out = model(x)
    assert out.shape == (64, 256) and model.feature_dim == 256
    assert sum(isinstance(m, torch.nn.Linear) for m in model.modules()) == 4
    out.pow(2).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    _, cat, cards = column_layout(adult.meta)
    width = 6 + (sum(cards) if categorical == "onehot" else 8 * len(cat))
    assert model.inputs(x).shape == (64, width)


def test_mlp_one_hot_marks_each_rows_categories(adult):
    model = TableMLP(adult.meta)
    inputs = model.inputs(adult.train[:32])
    onehot = inputs[:, 6:]
    assert torch.equal(onehot.sum(dim=1), torch.full((32,), 8.0))  # one hot per categorical column
    assert torch.equal(inputs[:, :6], adult.train[:32, [0, 2, 4, 10, 11, 12]])


def test_ft_transformer_forward_backward_with_reg_tokens(adult):
    torch.manual_seed(0)
    model = FTTransformer(adult.meta, d_token=32, depth=2, heads=4, n_reg=3)
    x = adult.train[:16]
    tokens = model.tokenize(x)
    assert tokens.shape == (16, 14, 32)
    encoded = model.encode(tokens)
    assert encoded.shape == (16, 1 + 3 + 14, 32) and model.n_prefix == 4
    out = model(x)
    assert out.shape == (16, 32) and model.feature_dim == 32
    out.pow(2).mean().backward()
    assert model.reg.grad is not None and model.reg.grad.abs().sum() > 0
    assert model.cls.grad.abs().sum() > 0


def test_ft_transformer_tokens_follow_the_paper(adult):
    model = FTTransformer(adult.meta, d_token=16, depth=1, heads=2)
    x = adult.train[:8]
    tokens = model.tokenize(x)
    tok = model.tokenizer
    # numeric column 0 (age): x_0 W_0 + b_0; categorical column 1 (workclass): E[code] + b_1
    assert torch.allclose(tokens[:, 0], x[:, :1] * tok.weight[0] + tok.bias[0])
    assert torch.allclose(tokens[:, 1], tok.embed(x[:, 1].long()) + tok.bias[1])
    education = tok.embed(x[:, 3].long() + tok.offsets[1]) + tok.bias[3]  # second categorical column
    assert torch.allclose(tokens[:, 3], education)


def test_masked_encode_sees_only_the_kept_feature_tokens(adult):
    torch.manual_seed(0)
    model = FTTransformer(adult.meta, d_token=32, depth=2, heads=4, n_reg=2).eval()
    x = adult.train[:8]
    tokens = model.tokenize(x)
    # No position embeddings: any order of all tokens gives the same [CLS] output.
    perm = torch.stack([torch.randperm(14) for _ in range(8)])
    full, shuffled = model.encode(tokens), model.encode(tokens, perm)
    assert torch.allclose(full[:, 0], shuffled[:, 0], atol=1e-5)
    # A kept subset: output positions hold the kept columns, and dropped ones get no gradient.
    keep = torch.tensor([[0, 2, 5, 7]] * 8)
    out = model.encode(model.tokenize(x), keep)
    assert out.shape == (8, 3 + 4, 32)
    out[:, 0].sum().backward()
    grad = model.tokenizer.weight.grad  # numeric columns in order: 0, 2, 4, 10, 11, 12
    assert grad[0].abs().sum() > 0 and grad[1].abs().sum() > 0  # age, fnlwgt kept
    assert grad[2:].abs().sum() == 0  # educational-num, capital-*, hours dropped
    bias_grad = model.tokenizer.bias.grad
    assert torch.all(bias_grad[[1, 3, 4, 6, 8, 9, 10, 11, 12, 13]] == 0)


def test_mean_pool_and_bad_options(adult):
    model = FTTransformer(adult.meta, d_token=16, depth=1, heads=2, pool="mean").eval()
    x = adult.train[:4]
    assert torch.allclose(model(x), model.encode(model.tokenize(x))[:, 1:].mean(1))
    with pytest.raises(UsageError):
        FTTransformer(adult.meta, d_token=30, heads=4)
    with pytest.raises(UsageError):
        TableMLP(adult.meta, categorical="bits")
