"""Representation diagnostics (RankMe, spectrum, alignment/uniformity, collapse alarm) and online probes."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from selfsup.evaluate import (
    OnlineKNN,
    OnlineProbe,
    alignment,
    collapse_alarm,
    covariance_spectrum,
    diagnose,
    normalized_std,
    rankme,
    uniformity,
)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def orthonormal_columns(n, d, seed=0):
    q, _ = torch.linalg.qr(torch.randn(n, d, generator=gen(seed), dtype=torch.float64))
    return q


# ----------------------------------------------------------------------------- RankMe and spectrum


@pytest.mark.parametrize("n, d", [(64, 64), (200, 32), (16, 48)])
def test_rankme_of_equal_orthogonal_directions_is_their_number(n, d):
    r = min(n, d)
    z = 3.0 * orthonormal_columns(max(n, d), r)[:n] if n >= d else 3.0 * orthonormal_columns(d, n).T
    assert rankme(z.float()) == pytest.approx(r, rel=1e-3)


def test_rankme_of_a_rank_one_embedding_is_one_and_follows_the_formula():
    g = gen(1)
    u, v = torch.randn(100, 1, generator=g), torch.randn(1, 40, generator=g)
    assert rankme(u @ v) == pytest.approx(1.0, abs=1e-3)
    assert rankme(torch.zeros(10, 5)) == 1.0
    # Against Eq. 1 of Garrido et al. written out.
    z = torch.randn(50, 8, generator=g) * torch.linspace(0.1, 2, 8)
    s = torch.linalg.svdvals(z.double())
    p = s / s.sum() + 1e-7
    assert rankme(z) == pytest.approx(math.exp(-sum(pi * math.log(pi) for pi in p.tolist())), rel=1e-9)


def test_covariance_spectrum_is_normalised_sorted_and_sees_the_subspace():
    g = gen(2)
    z = torch.randn(300, 3, generator=g) @ torch.randn(3, 20, generator=g) + 5.0  # a 3-d subspace, off-centre
    spec = covariance_spectrum(z)
    assert len(spec) == 20 and sum(spec) == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(spec, spec[1:]))
    assert sum(spec[:3]) == pytest.approx(1.0, abs=1e-9) and max(spec[3:]) < 1e-12
    assert covariance_spectrum(torch.ones(10, 4)) == [0.0] * 4
    assert len(covariance_spectrum(torch.randn(5, 12, generator=g))) == 12  # fewer samples than dims


# ----------------------------------------------------------------------------- alignment and uniformity


def test_alignment_and_uniformity_against_their_definitions_computed_with_loops():
    g = gen(3)
    a, b = torch.randn(12, 5, generator=g), torch.randn(12, 5, generator=g)
    na = [x / x.norm() for x in a.double()]
    nb = [x / x.norm() for x in b.double()]
    align = sum((x - y).norm() ** 2 for x, y in zip(na, nb)) / len(na)
    assert alignment(a, b) == pytest.approx(float(align), rel=1e-9)
    align3 = sum((x - y).norm() ** 3 for x, y in zip(na, nb)) / len(na)
    assert alignment(a, b, alpha=3) == pytest.approx(float(align3), rel=1e-9)
    terms = [math.exp(-2 * float((na[i] - na[j]).norm() ** 2)) for i in range(12) for j in range(i + 1, 12)]
    assert uniformity(a) == pytest.approx(math.log(sum(terms) / len(terms)), rel=1e-9)
    assert uniformity(a, chunk_size=5) == pytest.approx(uniformity(a), rel=1e-12)
    # Identical pairs align perfectly; identical points have uniformity 0 (the worst).
    assert alignment(a, a) == pytest.approx(0.0, abs=1e-12)
    assert uniformity(torch.ones(6, 3)) == pytest.approx(0.0, abs=1e-12)


def test_normalized_std_is_about_one_over_sqrt_d_for_gaussians_and_zero_when_collapsed():
    d = 64
    z = torch.randn(4000, d, generator=gen(4))
    assert normalized_std(z) * math.sqrt(d) == pytest.approx(1.0, abs=0.02)
    assert normalized_std(torch.ones(50, d) * 7) == pytest.approx(0.0, abs=1e-12)


# ----------------------------------------------------------------------------- diagnose and the alarm


def test_diagnose_returns_floats_for_backbone_projector_and_pairs():
    g = gen(5)
    h, z = torch.randn(64, 32, generator=g), torch.randn(64, 16, generator=g)
    a, b = torch.randn(64, 16, generator=g), torch.randn(64, 16, generator=g)
    diag = diagnose(h, z, a, b)
    assert all(isinstance(v, float) for v in diag.values())
    assert {
        "rankme",
        "rankme_fraction",
        "norm_std",
        "norm_std_ratio",
        "uniformity",
        "alignment",
        "proj_rankme",
        "proj_norm_std_ratio",
    } <= set(diag)
    assert diag["norm_std_ratio"] == pytest.approx(diag["norm_std"] * math.sqrt(32))
    assert diag["uniformity"] == pytest.approx((uniformity(a) + uniformity(b)) / 2)
    assert diagnose(h)["uniformity"] == pytest.approx(uniformity(h))
    with_spectrum = diagnose(h, z, spectrum=True)
    assert len(with_spectrum["spectrum"]) == 32 and len(with_spectrum["proj_spectrum"]) == 16
    with pytest.raises(ValueError, match="both pair_a and pair_b"):
        diagnose(h, pair_a=a)


def test_diagnose_leaves_the_graph_alone():
    x = torch.randn(32, 8, requires_grad=True)
    h = x * 2
    diagnose(h, h + 1)
    h.sum().backward()
    assert torch.equal(x.grad, torch.full_like(x, 2.0))


def test_collapse_alarm_trips_on_collapsed_embeddings_and_not_on_healthy_ones():
    g = gen(6)
    n, d = 256, 128
    healthy = torch.randn(n, d, generator=g)
    assert collapse_alarm(diagnose(healthy, torch.randn(n, 64, generator=g))) == []
    relu_features = F.relu(torch.randn(n, d, generator=g) + 0.5)  # all-positive, like a ResNet's pooled features
    assert collapse_alarm(diagnose(relu_features)) == []

    constant = torch.ones(n, d) + 1e-6 * torch.randn(n, d, generator=g)
    reasons = collapse_alarm(diagnose(constant))
    assert any("effective rank" in r for r in reasons) and any("hardly vary" in r for r in reasons)

    rank_one = torch.randn(n, 1, generator=g) @ torch.randn(1, d, generator=g)  # signs vary: std stays high
    assert any("backbone effective rank" in r for r in collapse_alarm(diagnose(rank_one)))

    # A healthy backbone under a collapsed projector: only the projector is named.
    reasons = collapse_alarm(diagnose(healthy, torch.ones(n, 64)))
    assert reasons and all(r.startswith("projector") for r in reasons)
    # Thresholds are configurable.
    assert collapse_alarm(diagnose(healthy), min_rank_fraction=0.99) != []
    assert collapse_alarm(diagnose(healthy), min_std_ratio=2.0) != []


# ----------------------------------------------------------------------------- online probes


@pytest.mark.slow
def test_online_probe_learns_and_never_touches_the_encoder_gradients():
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Linear(10, 16), nn.ReLU())
    probe = OnlineProbe(16, 3, lr=3e-2)
    centers = 3 * torch.randn(3, 10, generator=gen(7))
    for step in range(50):
        y = torch.randint(0, 3, (32,), generator=gen(100 + step))
        x = centers[y] + 0.5 * torch.randn(32, 10, generator=gen(200 + step))
        h = encoder(x)
        loss = h.pow(2).mean()  # a stand-in for the method's loss
        reference = torch.autograd.grad(loss, list(encoder.parameters()), retain_graph=True)
        probe.step(h, y)
        assert all(p.grad is None for p in encoder.parameters())
        loss.backward()
        assert all(torch.equal(p.grad, r) for p, r in zip(encoder.parameters(), reference))
        encoder.zero_grad(set_to_none=True)
        if step == 29:
            probe.reset_accuracy()
    assert probe.accuracy() > 0.9  # over the last 20 batches, each scored before its step
    assert (probe.predict(h) == y).float().mean() > 0.9

    # Its optimiser state travels in its state_dict.
    clone = OnlineProbe(16, 3, lr=3e-2)
    clone.load_state_dict(probe.state_dict())
    assert torch.equal(clone.linear.weight, probe.linear.weight) and clone.accuracy() == probe.accuracy()
    y = torch.randint(0, 3, (32,), generator=gen(1))
    h = encoder(centers[y]).detach()
    probe.step(h, y), clone.step(h, y)
    assert torch.allclose(clone.linear.weight, probe.linear.weight)


def test_online_knn_ring_buffer_and_running_accuracy():
    knn = OnlineKNN(2, size=4, k=1)
    assert knn.predict(torch.randn(3, 2)) is None
    knn.score(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1]))  # nothing to score against yet
    assert knn.accuracy() is None
    knn.score(torch.tensor([[2.0, 0.1], [0.1, 3.0]]), torch.tensor([0, 1]))
    assert knn.accuracy() == 1.0
    knn.update(torch.tensor([[-1.0, 0.0], [0.0, -1.0], [-1.0, 0.1]]), torch.tensor([2, 3, 2]))  # wraps around
    assert int(knn.filled) == 4 and sorted(knn.labels.tolist()) == [1, 2, 2, 3]
    assert knn.predict(torch.tensor([[-5.0, 0.0], [0.0, 4.0]])).tolist() == [2, 1]
