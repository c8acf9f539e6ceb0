import math

import pytest
import torch

from selfsup import losses


def test_byol_loss_matches_hand_computed_value():
    p = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    z = torch.tensor([[0.0, 2.0], [3.0, 3.0]])
    # cos = 0 for the first pair (loss 2), 1 for the second (loss 0): mean 1.
    assert losses.byol_loss(p, z).item() == pytest.approx(1.0)
    p = torch.tensor([[1.0, 0.0]])
    z = torch.tensor([[1.0, 1.0]])
    assert losses.byol_loss(p, z).item() == pytest.approx(2 - 2 / math.sqrt(2))


def test_byol_loss_is_a_mean_not_a_sum_over_the_batch():
    p, z = torch.randn(8, 16), torch.randn(8, 16)
    doubled = losses.byol_loss(torch.cat([p, p]), torch.cat([z, z]))
    assert doubled.item() == pytest.approx(losses.byol_loss(p, z).item(), rel=1e-6)


def test_byol_loss_sends_no_gradient_to_the_target():
    p = torch.randn(4, 8, requires_grad=True)
    z = torch.randn(4, 8, requires_grad=True)
    losses.byol_loss(p, z).backward()
    assert p.grad is not None and p.grad.abs().sum() > 0
    assert z.grad is None


def test_byol_loss_computes_in_float32_for_bf16_inputs():
    p, z = torch.randn(16, 32), torch.randn(16, 32)
    out = losses.byol_loss(p.bfloat16(), z.bfloat16())
    assert out.dtype == torch.float32
    assert out.item() == pytest.approx(losses.byol_loss(p, z).item(), abs=2e-2)
