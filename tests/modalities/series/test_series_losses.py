"""The series losses against naive loop references, on encoder outputs of real series."""

from __future__ import annotations

import math

import pytest
import torch
from _series_archives import archive

from selfsup.backbones.series import TS2VecEncoder
from selfsup.losses.series import (
    frame_projection_loss,
    hierarchical_contrastive_loss,
    tfc_consistency,
    tfc_nt_xent_poly,
    tstcc_contextual_contrast,
    tstcc_temporal_contrast,
)
from selfsup.modalities.series import ops


def real_views(length: int = 37, batch: int = 6):
    """Two overlapping crops of GunPoint through a small TS2Vec encoder: ``(B, overlap, D)`` each."""
    torch.manual_seed(0)
    x = archive("GunPoint").train[:batch, :, :length]
    crops = ops.ts2vec_crops(x, torch.Generator().manual_seed(3), torch.Generator().manual_seed(4))
    encoder = TS2VecEncoder(1, output_dim=8, hidden=8, depth=2).eval()
    with torch.no_grad():
        z1, z2 = crops.overlapping(encoder.encode(crops.view1), encoder.encode(crops.view2))
    return z1.double(), z2.double()


def naive_pair_loss(vectors: list[list[float]], n: int) -> float:
    """Mean over anchors a of -log(exp(s(a, a±n)) / sum_{k != a} exp(s(a, k))), dot-product s."""
    total = 0.0
    for a in range(2 * n):
        partner = a + n if a < n else a - n
        scores = {k: sum(p * q for p, q in zip(vectors[a], vectors[k])) for k in range(2 * n) if k != a}
        top = max(scores.values())
        log_denominator = top + math.log(sum(math.exp(s - top) for s in scores.values()))
        total += log_denominator - scores[partner]
    return total / (2 * n)


def naive_hierarchical(z1, z2, alpha=0.5, temporal_unit=0) -> float:
    z1, z2 = z1.tolist(), z2.tolist()
    total, level = 0.0, 0

    def pool(z):
        return [
            [[max(z[b][2 * t][d], z[b][2 * t + 1][d]) for d in range(len(z[b][0]))] for t in range(len(z[b]) // 2)]
            for b in range(len(z))
        ]

    while len(z1[0]) > 1:
        batch, steps = len(z1), len(z1[0])
        if batch > 1:
            total += (
                alpha
                * sum(
                    naive_pair_loss([z1[b][t] for b in range(batch)] + [z2[b][t] for b in range(batch)], batch)
                    for t in range(steps)
                )
                / steps
            )
        if level >= temporal_unit:
            total += (1 - alpha) * sum(naive_pair_loss(z1[b] + z2[b], steps) for b in range(batch)) / batch
        level += 1
        z1, z2 = pool(z1), pool(z2)
    if batch > 1:
        total += alpha * naive_pair_loss(
            [z1[b][0] for b in range(len(z1))] + [z2[b][0] for b in range(len(z2))], len(z1)
        )
    return total / (level + 1)


@pytest.mark.parametrize("temporal_unit", [0, 1])
def test_hierarchical_loss_matches_a_naive_loop(temporal_unit):
    z1, z2 = real_views()
    assert z1.shape[1] >= 4  # several levels of pooling, odd lengths among them
    expected = naive_hierarchical(z1, z2, 0.5, temporal_unit)
    got = hierarchical_contrastive_loss(z1.float(), z2.float(), 0.5, temporal_unit)
    assert got.item() == pytest.approx(expected, rel=1e-4)


def test_hierarchical_loss_alpha_extremes_and_batch_of_one():
    z1, z2 = real_views()
    assert hierarchical_contrastive_loss(z1[:1].float(), z2[:1].float(), alpha=1.0).item() == 0.0
    instance_only = hierarchical_contrastive_loss(z1.float(), z2.float(), alpha=1.0).item()
    assert instance_only == pytest.approx(naive_hierarchical(z1, z2, 1.0), rel=1e-4)


def test_tstcc_temporal_contrast_matches_a_loop():
    torch.manual_seed(0)
    features = TS2VecEncoder(1, output_dim=6, hidden=6, depth=1).eval()
    with torch.no_grad():
        z = features.encode(archive("ItalyPowerDemand").train[:5]).double()  # (5, 24, 6)
    targets, predictions = z[:, 10:13].transpose(0, 1), z[:, 2:5].transpose(0, 1) * 0.7  # (K=3, B=5, C)
    expected = 0.0
    for k in range(3):
        for b in range(5):
            scores = [float(targets[k, b] @ predictions[k, j]) for j in range(5)]
            top = max(scores)
            expected -= scores[b] - top - math.log(sum(math.exp(s - top) for s in scores))
    expected /= 15
    assert tstcc_temporal_contrast(targets, predictions).item() == pytest.approx(expected, rel=1e-5)


def naive_nt_xent(z1, z2, temperature):
    """TS-TCC/TF-C ``NTXentLoss``: cosine similarities of [z2, z1], positives and negatives, CE sum / 2B."""
    rows = [v / v.norm() for v in torch.cat([z2, z1]).double()]
    n = len(z1)
    ce, probs = 0.0, []
    for a in range(2 * n):
        partner = (a + n) % (2 * n)
        logits = {k: float(rows[a] @ rows[k]) / temperature for k in range(2 * n) if k != a}
        denominator = sum(math.exp(v) for v in logits.values())
        ce += -(logits[partner] - math.log(denominator))
        probs.append(math.exp(logits[partner]) / denominator)
    return ce / (2 * n), sum(probs) / (2 * n * (2 * n - 1))


def test_contextual_contrast_and_tfc_poly_match_loops():
    z1, z2 = (v.amax(dim=1).float() for v in real_views())
    ce, p_t = naive_nt_xent(z1, z2, 0.2)
    assert tstcc_contextual_contrast(z1, z2).item() == pytest.approx(ce, rel=1e-5)
    batch = len(z1)
    assert tfc_nt_xent_poly(z1, z2).item() == pytest.approx(ce + batch * (1 / batch - p_t), rel=1e-5)


def test_tfc_consistency_and_frame_projection_terms():
    pairs = [torch.tensor(0.5), torch.tensor(2.0), torch.tensor(1.0)]
    assert tfc_consistency(torch.tensor(1.0), pairs).item() == pytest.approx(3 * 1.0 + 3 * 1.0 - 3.5)
    t, g, f = (v.amax(dim=1).float() for v in (*real_views(), real_views()[0] * 2 + 1))
    mapped_f, mapped_g = torch.nn.functional.normalize(f, dim=1), torch.nn.functional.normalize(g, dim=1)
    contrast_only = frame_projection_loss(t, g, f, mapped_f, mapped_g)
    expected = sum(naive_nt_xent(a, b, 0.15)[0] for a, b in ((t, g), (t, f), (g, f)))
    assert contrast_only.item() == pytest.approx(expected, rel=1e-5)  # perfect mappers add nothing
    worse = frame_projection_loss(t, g, f, mapped_f + 0.1, mapped_g)
    assert worse.item() == pytest.approx(expected + 0.1 / len(t), rel=1e-5)


def naive_masked_hierarchical(z1, z2, valid, alpha=0.5, temporal_unit=0) -> float:
    """The masked loss by loops: per level, each valid anchor's cross-entropy over the valid rows of its
    group (the other series at that timestamp; the other timestamps of its series), averaged over the
    valid anchors; pooled timestamps valid when both halves are; levels counted while any is valid."""
    z1, z2, valid = z1.tolist(), z2.tolist(), valid.tolist()
    batch = len(z1)
    total, levels, level = 0.0, 0, 0

    def ce(rows, ok, anchor, partner):
        scores = {
            k: sum(p * q for p, q in zip(rows[anchor], rows[k])) for k in range(len(rows)) if k != anchor and ok[k]
        }
        top = max(scores.values())
        return top + math.log(sum(math.exp(s - top) for s in scores.values())) - scores[partner]

    while True:
        steps = len(z1[0])
        inst, n_inst = 0.0, 0
        for t in range(steps):
            rows = [z1[b][t] for b in range(batch)] + [z2[b][t] for b in range(batch)]
            ok = [valid[b][t] for b in range(batch)] * 2
            for a in range(2 * batch):
                if ok[a]:
                    inst += ce(rows, ok, a, (a + batch) % (2 * batch))
                    n_inst += 1
        level_loss = alpha * (inst / n_inst if n_inst else 0.0)
        if level >= temporal_unit and steps > 1:
            temp, n_temp = 0.0, 0
            for b in range(batch):
                rows, ok = z1[b] + z2[b], valid[b] * 2
                for a in range(2 * steps):
                    if ok[a]:
                        temp += ce(rows, ok, a, (a + steps) % (2 * steps))
                        n_temp += 1
            level_loss += (1 - alpha) * (temp / n_temp if n_temp else 0.0)
        total += level_loss
        levels += any(any(v) for v in valid)
        if steps == 1:
            return total / levels
        level += 1
        half = steps // 2
        z1 = [[[max(z[2 * t][d], z[2 * t + 1][d]) for d in range(len(z[0]))] for t in range(half)] for z in z1]
        z2 = [[[max(z[2 * t][d], z[2 * t + 1][d]) for d in range(len(z[0]))] for t in range(half)] for z in z2]
        valid = [[v[2 * t] and v[2 * t + 1] for t in range(half)] for v in valid]


def test_masked_hierarchical_loss_matches_a_naive_loop_and_never_reads_masked_steps():
    z1, z2 = real_views(length=30, batch=5)
    steps = z1.shape[1]
    valid = torch.arange(steps)[None, :] < torch.tensor([steps, steps - 3, 5, 1, steps - 7])[:, None]
    expected = naive_masked_hierarchical(z1, z2, valid)
    got = hierarchical_contrastive_loss(z1.float(), z2.float(), 0.5, 0, valid)
    assert got.item() == pytest.approx(expected, rel=1e-4)
    garbage1 = torch.where(valid[..., None], z1, torch.nan).float().requires_grad_()
    garbage2 = torch.where(valid[..., None], z2, 1e4).float()
    again = hierarchical_contrastive_loss(garbage1, garbage2, 0.5, 0, valid)
    assert again.item() == pytest.approx(expected, rel=1e-4)
    again.backward()
    assert torch.isfinite(garbage1.grad).all() and (garbage1.grad[~valid] == 0).all()


def test_masked_loss_with_every_step_valid_is_the_loss():
    z1, z2 = real_views()
    valid = torch.ones(z1.shape[:2], dtype=torch.bool)
    for unit in (0, 1):
        plain = hierarchical_contrastive_loss(z1.float(), z2.float(), 0.5, unit)
        torch.testing.assert_close(hierarchical_contrastive_loss(z1.float(), z2.float(), 0.5, unit, valid), plain)
