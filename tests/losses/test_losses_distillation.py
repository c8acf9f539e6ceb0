"""DINO's and SwAV's losses and the Sinkhorn-Knopp codes, against deliberately naive references."""

import math

import pytest
import torch

from selfsup.losses import dino_loss, swav_loss
from selfsup.methods.parts.sinkhorn import sinkhorn


def _softmax(row, t):
    exps = [math.exp(v / t) for v in row]
    return [e / sum(exps) for e in exps]


def naive_dino(student, teacher, center, ts, tt):
    """Caron et al. 2021, Algorithm 1, one sample, one class and one view pair at a time."""
    total, pairs = 0.0, 0
    for i, t_view in enumerate(teacher):
        for j, s_view in enumerate(student):
            if i == j:
                continue
            pair = 0.0
            for b in range(len(t_view)):
                q = _softmax([t_view[b][k] - center[k] for k in range(len(center))], tt)
                p = _softmax(s_view[b], ts)
                pair += -sum(q[k] * math.log(p[k]) for k in range(len(q)))
            total += pair / len(t_view)
            pairs += 1
    return total / pairs


def naive_swav(scores, codes, t):
    total = 0.0
    for i, q_view in enumerate(codes):
        sub = 0.0
        others = [v for v in range(len(scores)) if v != i]
        for v in others:
            ce = 0.0
            for b in range(len(q_view)):
                p = _softmax(scores[v][b], t)
                ce += -sum(q_view[b][k] * math.log(p[k]) for k in range(len(p)))
            sub += ce / len(q_view)
        total += sub / len(others)
    return total / len(codes)


def _lists(tensors):
    return [t.double().tolist() for t in tensors]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dino_loss_matches_the_naive_reference(dtype):
    torch.manual_seed(0)
    student = [torch.randn(5, 7).to(dtype) for _ in range(4)]  # 2 global + 2 local views
    teacher = [torch.randn(5, 7).to(dtype) for _ in range(2)]
    center = torch.randn(7) * 0.1
    loss = dino_loss(student, teacher, center, student_temp=0.1, teacher_temp=0.04)
    assert loss.dtype == torch.float32 and loss.ndim == 0
    expected = naive_dino(_lists(student), _lists(teacher), center.tolist(), 0.1, 0.04)
    assert loss.item() == pytest.approx(expected, rel=1e-4)
    # a stacked (V, B, K) tensor, a (1, K) centre and a tensor temperature give the same value
    stacked = dino_loss(torch.stack(student), torch.stack(teacher), center[None], 0.1, torch.tensor(0.04))
    assert stacked.item() == pytest.approx(loss.item(), rel=1e-6)


def test_dino_loss_gradient_reaches_only_the_student():
    torch.manual_seed(0)
    student = torch.randn(3, 4, 6, requires_grad=True)
    teacher = torch.randn(2, 4, 6, requires_grad=True)
    center = torch.zeros(6, requires_grad=True)
    dino_loss(student, teacher, center).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None and center.grad is None


def test_dino_loss_is_lowest_when_the_student_agrees_with_the_sharpened_teacher():
    torch.manual_seed(0)
    teacher = torch.randn(2, 8, 5) * 3
    agree = dino_loss(teacher.repeat(2, 1, 1) * 10, teacher, torch.zeros(5))
    disagree = dino_loss(-teacher.repeat(2, 1, 1) * 10, teacher, torch.zeros(5))
    assert agree < disagree


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_swav_loss_matches_the_naive_reference(dtype):
    torch.manual_seed(0)
    scores = [torch.randn(6, 5).to(dtype) for _ in range(4)]
    codes = [torch.softmax(torch.randn(6, 5), dim=1).to(dtype) for _ in range(2)]
    loss = swav_loss(scores, codes, temperature=0.1)
    assert loss.dtype == torch.float32 and loss.ndim == 0
    assert loss.item() == pytest.approx(naive_swav(_lists(scores), _lists(codes), 0.1), rel=1e-4)
    assert swav_loss(torch.stack(scores), torch.stack(codes), 0.1).item() == pytest.approx(loss.item(), rel=1e-6)


def test_swav_loss_gradient_does_not_reach_the_codes():
    scores = torch.randn(2, 4, 3, requires_grad=True)
    codes = torch.softmax(torch.randn(2, 4, 3), dim=-1).requires_grad_()
    swav_loss(scores, codes).backward()
    assert scores.grad is not None and codes.grad is None


def test_sinkhorn_gives_an_equal_partition():
    torch.manual_seed(0)
    b, k = 64, 8
    scores = (
        torch.nn.functional.normalize(torch.randn(b, 16), dim=1)
        @ torch.nn.functional.normalize(torch.randn(k, 16), dim=1).T
    )
    q = sinkhorn(scores, epsilon=0.05, iterations=50)
    assert q.shape == (b, k) and q.dtype == torch.float32 and (q >= 0).all()
    assert torch.allclose(q.sum(dim=1), torch.ones(b), atol=1e-5)  # each code is a distribution
    assert torch.allclose(q.sum(dim=0), torch.full((k,), b / k), atol=1e-3 * b / k)  # equal shares
    # SwAV's 3 iterations: rows exact, columns already closer to B/K than the plain softmax's
    q3 = sinkhorn(scores, 0.05, 3)
    soft = torch.softmax(scores / 0.05, dim=1)
    assert torch.allclose(q3.sum(dim=1), torch.ones(b), atol=1e-5)
    assert (q3.sum(0) - b / k).abs().mean() < 0.75 * (soft.sum(0) - b / k).abs().mean()


def test_sinkhorn_assigns_the_obvious_prototypes_and_accepts_bf16():
    # 4 prototypes (axes), 12 samples, 3 near each axis: the codes pick that axis.
    k = 4
    target = torch.arange(12) % k
    z = torch.nn.functional.one_hot(target, k).float() + 0.05 * torch.randn(12, k)
    scores = torch.nn.functional.normalize(z, dim=1) @ torch.eye(k)
    for s in (scores, scores.bfloat16()):
        q = sinkhorn(s)
        assert q.dtype == torch.float32
        assert torch.equal(q.argmax(dim=1), target)


def test_sinkhorn_spreads_a_collapsed_batch_over_the_prototypes():
    # Every sample prefers prototype 0 a little: softmax would put everything there; the equal
    # partition constraint forces the batch to use all prototypes.
    scores = torch.zeros(16, 4)
    scores[:, 0] = 0.1
    scores += 0.01 * torch.randn(16, 4)
    q = sinkhorn(scores, iterations=20)
    assert torch.allclose(q.sum(0), torch.full((4,), 4.0), atol=1e-2)
    assert len(set(q.argmax(dim=1).tolist())) == 4
