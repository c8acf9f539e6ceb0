"""The contrastive, redundancy-reduction and SimSiam losses against deliberately naive references
(explicit Python loops over samples and dimensions, in float64), known closed-form values, and
which inputs receive gradients."""

import math

import pytest
import torch

from selfsup import losses

# ------------------------------------------------------------------------- naive references


def _rows(x):
    return x.detach().double().tolist()


def _dot(u, v):
    return sum(u[d] * v[d] for d in range(len(u)))


def _cos(u, v):
    return _dot(u, v) / (math.sqrt(_dot(u, u)) * math.sqrt(_dot(v, v)))


def naive_nt_xent(z_a, z_b, t):
    a, b = _rows(z_a), _rows(z_b)
    n = len(a)
    z = a + b
    total = 0.0
    for i in range(2 * n):
        j = i + n if i < n else i - n
        den = sum(math.exp(_cos(z[i], z[k]) / t) for k in range(2 * n) if k != i)
        total += -math.log(math.exp(_cos(z[i], z[j]) / t) / den)
    return total / (2 * n)


def naive_infonce(q, k, t, negatives=None):
    q, k = _rows(q), _rows(k)
    n = len(q)
    total = 0.0
    for i in range(n):
        pos = math.exp(_cos(q[i], k[i]) / t)
        if negatives is None:
            den = sum(math.exp(_cos(q[i], k[j]) / t) for j in range(n))
        else:
            den = pos + sum(math.exp(_cos(q[i], m) / t) for m in _rows(negatives))
        total += -math.log(pos / den)
    return total / n


def _standardise(z, eps):
    n, d = len(z), len(z[0])
    out = [[0.0] * d for _ in range(n)]
    for j in range(d):
        mean = sum(z[i][j] for i in range(n)) / n
        var = sum((z[i][j] - mean) ** 2 for i in range(n)) / n  # biased, as BatchNorm
        for i in range(n):
            out[i][j] = (z[i][j] - mean) / math.sqrt(var + eps)
    return out


def naive_barlow(z_a, z_b, lambd):
    a, b = _standardise(_rows(z_a), 1e-5), _standardise(_rows(z_b), 1e-5)
    n, d = len(a), len(a[0])
    loss = 0.0
    for i in range(d):
        for j in range(d):
            c = sum(a[s][i] * b[s][j] for s in range(n)) / n
            loss += (1 - c) ** 2 if i == j else lambd * c**2
    return loss


def _var_and_cov_terms(z, eps):
    n, d = len(z), len(z[0])
    mean = [sum(z[i][j] for i in range(n)) / n for j in range(d)]
    std_term, cov_term = 0.0, 0.0
    for j in range(d):
        var = sum((z[i][j] - mean[j]) ** 2 for i in range(n)) / (n - 1)  # unbiased
        std_term += max(0.0, 1 - math.sqrt(var + eps)) / d
        for k in range(d):
            if k != j:
                cov = sum((z[i][j] - mean[j]) * (z[i][k] - mean[k]) for i in range(n)) / (n - 1)
                cov_term += cov**2 / d
    return std_term, cov_term


def naive_vicreg(z_a, z_b, sim_coeff, std_coeff, cov_coeff, eps=1e-4):
    a, b = _rows(z_a), _rows(z_b)
    n, d = len(a), len(a[0])
    sim = sum((a[i][j] - b[i][j]) ** 2 for i in range(n) for j in range(d)) / (n * d)
    std_a, cov_a = _var_and_cov_terms(a, eps)
    std_b, cov_b = _var_and_cov_terms(b, eps)
    return sim_coeff * sim + std_coeff * (std_a + std_b) / 2 + cov_coeff * (cov_a + cov_b)


def naive_negative_cosine(p, z):
    p, z = _rows(p), _rows(z)
    return -sum(_cos(p[i], z[i]) for i in range(len(p))) / len(p)


# ------------------------------------------------------------------------- cases

N, D, M = 6, 5, 7


def _inputs(seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(N, D, generator=g) for _ in range(2)] + [torch.randn(M, D, generator=g)]


CASES = {
    "nt_xent": (lambda a, b, neg: losses.nt_xent(a, b, 0.5), lambda a, b, neg: naive_nt_xent(a, b, 0.5)),
    "nt_xent_t0.1": (lambda a, b, neg: losses.nt_xent(a, b, 0.1), lambda a, b, neg: naive_nt_xent(a, b, 0.1)),
    "infonce_in_batch": (lambda a, b, neg: losses.infonce(a, b, 0.2), lambda a, b, neg: naive_infonce(a, b, 0.2)),
    "infonce_queue": (
        lambda a, b, neg: losses.infonce(a, b, 0.2, negatives=neg),
        lambda a, b, neg: naive_infonce(a, b, 0.2, neg),
    ),
    "barlow_twins": (
        lambda a, b, neg: losses.barlow_twins_loss(a, b, 0.0051),
        lambda a, b, neg: naive_barlow(a, b, 0.0051),
    ),
    "barlow_twins_lambda0.5": (
        lambda a, b, neg: losses.barlow_twins_loss(a, b, lambd=0.5),
        lambda a, b, neg: naive_barlow(a, b, 0.5),
    ),
    "vicreg": (lambda a, b, neg: losses.vicreg_loss(a, b), lambda a, b, neg: naive_vicreg(a, b, 25, 25, 1)),
    "vicreg_coeffs": (
        lambda a, b, neg: losses.vicreg_loss(a * 0.3, b * 0.3, 2.0, 3.0, 5.0),
        lambda a, b, neg: naive_vicreg(a * 0.3, b * 0.3, 2.0, 3.0, 5.0),
    ),
    "negative_cosine": (lambda a, b, neg: losses.negative_cosine(a, b), lambda a, b, neg: naive_negative_cosine(a, b)),
}


@pytest.mark.parametrize("name", CASES)
def test_matches_the_naive_loop_reference_in_float32(name):
    fn, ref = CASES[name]
    for seed in range(3):
        a, b, neg = _inputs(seed)
        out = fn(a, b, neg)
        assert out.dtype == torch.float32 and out.ndim == 0
        assert out.item() == pytest.approx(ref(a, b, neg), rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("name", CASES)
def test_bf16_inputs_compute_in_float32(name):
    fn, ref = CASES[name]
    a, b, neg = _inputs(10)
    a16, b16, neg16 = a.bfloat16(), b.bfloat16(), neg.bfloat16()
    out = fn(a16, b16, neg16)
    assert out.dtype == torch.float32
    # Exact up to float32 rounding on the bf16-rounded inputs, and close to the float32 value.
    assert out.item() == pytest.approx(ref(a16, b16, neg16), rel=1e-4, abs=1e-4)
    assert out.item() == pytest.approx(ref(a, b, neg), rel=3e-2, abs=3e-2)


@pytest.mark.parametrize("name", ["nt_xent", "infonce_queue", "barlow_twins", "vicreg"])
def test_autocast_does_not_lower_the_precision_of_the_similarity_matrices(name):
    fn, _ = CASES[name]
    g = torch.Generator().manual_seed(3)
    a, b, neg = torch.randn(64, 256, generator=g), torch.randn(64, 256, generator=g), torch.randn(32, 256, generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = fn(a, b, neg)
    assert inside.dtype == torch.float32
    assert inside.item() == pytest.approx(fn(a, b, neg).item(), rel=1e-5)


# ------------------------------------------------------------------------- known values


def test_nt_xent_of_aligned_mutually_orthogonal_pairs_has_its_closed_form():
    # z_a[i] = z_b[i] = e_i: each anchor has cosine 1 with its pair and 0 with the 2N - 2 others,
    # so every term is -log(e^{1/t} / (e^{1/t} + 2N - 2)) = log(1 + (2N - 2) e^{-1/t}).
    n, t = 4, 0.5
    e = torch.eye(n, 8) * 3.0  # the scale is irrelevant (cosine)
    expected = math.log(1 + (2 * n - 2) * math.exp(-1 / t))
    assert losses.nt_xent(e, e, t).item() == pytest.approx(expected, rel=1e-6)


def test_infonce_of_aligned_orthogonal_pairs_has_its_closed_form_in_both_forms():
    n, t = 5, 0.2
    e = torch.eye(n, 16)
    assert losses.infonce(e, e, t).item() == pytest.approx(math.log(1 + (n - 1) * math.exp(-1 / t)), rel=1e-6)
    queue = torch.eye(16)[n : n + 7]  # 7 negatives orthogonal to every query
    assert losses.infonce(e, e, t, negatives=queue).item() == pytest.approx(
        math.log(1 + 7 * math.exp(-1 / t)), rel=1e-6
    )


def test_barlow_twins_is_zero_for_standardised_decorrelated_identical_embeddings():
    # Columns orthonormal and orthogonal to the all-ones vector, scaled by sqrt(N): every
    # dimension has mean 0 and biased variance 1 and distinct dimensions are uncorrelated, so the
    # cross-correlation matrix is the identity (up to BatchNorm's eps).
    n, d = 16, 6
    g = torch.Generator().manual_seed(0)
    basis, _ = torch.linalg.qr(torch.cat([torch.ones(n, 1), torch.randn(n, d, generator=g)], dim=1).double())
    z = (math.sqrt(n) * basis[:, 1:]).float()
    assert torch.allclose(z.mean(0), torch.zeros(d), atol=1e-5)
    assert losses.barlow_twins_loss(z, z).item() == pytest.approx(0.0, abs=1e-5)
    # One dimension flipped in the second view: C_jj = -1 for it, so the loss is (1 - (-1))^2 = 4.
    flipped = z.clone()
    flipped[:, 0] *= -1
    assert losses.barlow_twins_loss(z, flipped).item() == pytest.approx(4.0, abs=1e-3)


def test_vicreg_on_a_constant_batch_is_the_variance_term_alone():
    z = torch.full((8, 4), 0.7)
    # Same constant in both views: no invariance error and no covariance; every dimension's std is
    # sqrt(0 + eps), so the hinge gives 1 - sqrt(eps) per dimension and branch.
    sim, std, cov = losses.vicreg_terms(z, z)
    assert sim.item() == 0.0 and cov.item() == pytest.approx(0.0, abs=1e-12)
    assert losses.vicreg_loss(z, z, std_coeff=25.0, eps=0.0).item() == pytest.approx(25.0)
    assert losses.vicreg_loss(z, z, std_coeff=25.0).item() == pytest.approx(25.0 * (1 - 1e-2))


def test_negative_cosine_is_minus_one_when_aligned_and_zero_when_orthogonal():
    p = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    assert losses.negative_cosine(p, 5 * p).item() == pytest.approx(-1.0)
    assert losses.negative_cosine(p, p.flip(1)).item() == pytest.approx(0.0)


def test_losses_are_means_over_the_given_rows_so_gathered_batches_need_no_special_case():
    a, b, neg = _inputs(4)
    a2, b2, _ = _inputs(5)
    both = losses.infonce(torch.cat([a, a2]), torch.cat([b, b2]), 0.2, negatives=neg)
    halves = (losses.infonce(a, b, 0.2, negatives=neg) + losses.infonce(a2, b2, 0.2, negatives=neg)) / 2
    assert both.item() == pytest.approx(halves.item(), rel=1e-6)


# ------------------------------------------------------------------------- gradients


def _leaf(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).requires_grad_()


def test_negative_cosine_sends_no_gradient_to_the_target():
    p, z = _leaf(4, 8, seed=0), _leaf(4, 8, seed=1)
    losses.negative_cosine(p, z).backward()
    assert p.grad is not None and p.grad.abs().sum() > 0
    assert z.grad is None


def test_infonce_queue_negatives_are_stop_gradient_and_q_k_are_not():
    q, k, neg = _leaf(4, 8, seed=0), _leaf(4, 8, seed=1), _leaf(6, 8, seed=2)
    losses.infonce(q, k, 0.2, negatives=neg).backward()
    assert neg.grad is None
    assert q.grad.abs().sum() > 0 and k.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "fn",
    [
        lambda a, b: losses.nt_xent(a, b),
        lambda a, b: losses.infonce(a, b, 0.2),
        losses.barlow_twins_loss,
        losses.vicreg_loss,
    ],
)
def test_symmetric_losses_send_gradients_to_both_inputs(fn):
    a, b = _leaf(8, 6, seed=0), _leaf(8, 6, seed=1)
    fn(a, b).backward()
    assert a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0
