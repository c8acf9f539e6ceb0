import math

import pytest
import torch
from torch import nn

from selfsup.optim import LARS, build_optimizer, lr_at, param_groups


def test_lr_warms_up_linearly_then_decays_along_a_cosine():
    peak, total, warm = 2.0, 100, 10
    assert lr_at(0, total, warm, peak) == pytest.approx(0.2)
    assert lr_at(4, total, warm, peak) == pytest.approx(1.0)
    assert lr_at(9, total, warm, peak) == pytest.approx(2.0)
    assert lr_at(10, total, warm, peak) == pytest.approx(2.0)
    assert lr_at(55, total, warm, peak) == pytest.approx(1.0)  # half-way through the decay
    assert lr_at(100, total, warm, peak) == pytest.approx(0.0)
    assert lr_at(100, total, warm, peak, final_ratio=0.1) == pytest.approx(0.2)
    mid = 10 + 90 // 3
    assert lr_at(mid, total, warm, peak) == pytest.approx(peak * (1 + math.cos(math.pi * 30 / 90)) / 2)


def test_biases_and_norm_parameters_are_excluded_from_weight_decay():
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    decay, plain = param_groups(model, 0.1)
    assert {tuple(p.shape) for p in decay["params"]} == {(8, 4), (2, 8)}
    assert {tuple(p.shape) for p in plain["params"]} == {(8,), (8,), (8,), (2,)}
    assert plain["weight_decay"] == 0.0 and plain["lars"] is False


def test_lars_update_uses_the_trust_ratio_of_you_et_al():
    w = nn.Parameter(torch.tensor([[3.0, 4.0]]))  # ||w|| = 5
    w.grad = torch.tensor([[0.0, 1.0]])           # ||g|| = 1
    opt = LARS([{"params": [w], "weight_decay": 0.1, "lars": True}], lr=0.5, momentum=0.9, eta=0.02)
    opt.step()
    trust = 0.02 * 5 / (1 + 0.1 * 5)
    update = (torch.tensor([[0.0, 1.0]]) + 0.1 * torch.tensor([[3.0, 4.0]])) * trust
    assert torch.allclose(w.detach(), torch.tensor([[3.0, 4.0]]) - 0.5 * update)


def test_lars_leaves_excluded_groups_as_plain_sgd_with_momentum():
    b = nn.Parameter(torch.tensor([1.0, 2.0]))
    ref = nn.Parameter(b.detach().clone())
    opt = LARS([{"params": [b], "weight_decay": 0.0, "lars": False}], lr=0.1, momentum=0.9)
    sgd = torch.optim.SGD([ref], lr=0.1, momentum=0.9)
    for g in ([0.5, -1.0], [0.2, 0.3], [1.0, 1.0]):
        b.grad = torch.tensor(g)
        ref.grad = torch.tensor(g)
        opt.step()
        sgd.step()
    assert torch.allclose(b, ref)


def test_unknown_optimizer_names_the_choices():
    from selfsup.errors import UsageError
    with pytest.raises(UsageError, match="lars"):
        build_optimizer("larss", nn.Linear(2, 2), 0.1, 0.0)
