import pytest
import torch

from selfsup.backbones import build_backbone
from selfsup.methods import METHODS
from selfsup.methods.parts.teacher import MomentumTeacher, cosine_tau


def test_tau_follows_the_cosine_schedule_from_base_to_one():
    assert cosine_tau(0, 100, 0.996) == pytest.approx(0.996)
    assert cosine_tau(50, 100, 0.996) == pytest.approx(0.998)
    assert cosine_tau(100, 100, 0.996) == pytest.approx(1.0)


def test_ema_update_moves_the_teacher_by_one_minus_tau():
    online = torch.nn.Linear(3, 2)
    teacher = MomentumTeacher(online)
    before = teacher.net.weight.detach().clone()
    with torch.no_grad():
        online.weight.add_(1.0)
    teacher.update(online, tau=0.9)
    expected = 0.9 * before + 0.1 * online.weight.detach()
    assert torch.allclose(teacher.net.weight, expected)


def _byol(**kw):
    backbone = build_backbone("resnet-small", {"channels": 1})
    cls = METHODS["byol"]
    return cls(backbone, cls.Args(proj_hidden=32, proj_dim=16, pred_hidden=32, **kw))


def test_byol_step_trains_the_online_network_and_not_the_target():
    torch.manual_seed(0)
    method = _byol()
    opt = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.1)
    views = [torch.randn(8, 1, 8, 8), torch.randn(8, 1, 8, 8)]
    target_before = [p.detach().clone() for p in method.target.parameters()]
    online_before = [p.detach().clone() for p in method.predictor.parameters()]
    out = method(views)
    out["loss"].backward()
    assert all(p.grad is None for p in method.target.parameters())
    assert all(not p.requires_grad for p in method.target.parameters())
    opt.step()
    assert any(not torch.equal(a, b) for a, b in zip(online_before, method.predictor.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(target_before, method.target.parameters()))
    method.after_step(1, 10)
    assert any(not torch.equal(a, b) for a, b in zip(target_before, method.target.parameters()))


def test_byol_loss_is_symmetric_sum_over_both_view_orders():
    torch.manual_seed(0)
    method = _byol()
    views = [torch.randn(8, 1, 8, 8), torch.randn(8, 1, 8, 8)]
    loss = method(views)["loss"]
    swapped = method(views[::-1])["loss"]
    assert loss.item() == pytest.approx(swapped.item(), rel=1e-5)
    assert 0 <= loss.item() <= 8  # two terms, each in [0, 4]


def test_state_dict_holds_each_module_once_and_includes_the_target():
    keys = _byol().state_dict().keys()
    assert any(k.startswith("target.") for k in keys)
    assert not any(k.startswith("_online") for k in keys)
