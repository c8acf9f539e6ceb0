"""VIME's and SubTab's losses against the formulas of their authors' code, on real rows."""

from __future__ import annotations

from itertools import combinations

import pytest
import torch
import torch.nn.functional as F

from selfsup.losses import infonce, nt_xent
from selfsup.losses.tabular import subtab_loss, subtab_terms, vime_loss, vime_terms
from selfsup.modalities.table import ops, schema


def test_vime_loss_is_mask_bce_plus_alpha_mse_on_numeric_rows(california):
    torch.manual_seed(0)
    x = california.train[:128]
    views = ops.vime_corrupt(x, 0.3, torch.Generator().manual_seed(0))
    logits = torch.randn(128, 8)
    pred = x + 0.1 * torch.randn_like(x)
    loss = vime_loss(logits, views.changed, pred, x, alpha=2.0)
    # The code: keras binary_crossentropy on sigmoid outputs + alpha * mean_squared_error.
    bce = F.binary_cross_entropy(torch.sigmoid(logits), views.changed.float())
    mse = ((pred - x) ** 2).mean()
    assert loss.item() == pytest.approx((bce + 2.0 * mse).item(), rel=1e-5)


def test_vime_reconstruction_uses_cross_entropy_for_categorical_columns(adult):
    torch.manual_seed(0)
    x = adult.train[:64]
    numeric, categorical, cards = schema.column_layout(adult.meta)
    cat_logits = [torch.randn(64, k) for k in cards]
    num_pred = torch.randn(64, len(numeric))
    mask_loss, recon = vime_terms(
        torch.zeros(64, 14), torch.zeros(64, 14), num_pred, x[:, numeric], cat_logits, x[:, categorical]
    )
    expected = ((num_pred - x[:, numeric]) ** 2).sum(1).mean()
    expected = expected + sum(F.cross_entropy(lg, x[:, j].long()) for lg, j in zip(cat_logits, categorical))
    assert recon.item() == pytest.approx(expected.item() / 14, rel=1e-5)
    assert mask_loss.item() == pytest.approx(torch.log(torch.tensor(2.0)).item(), rel=1e-6)


def reference_subtab(z, recon, x, tau):
    """The authors' JointLoss, averaged over pairs of subsets as their training loop does."""
    totals = []
    b = x.shape[0]
    for i, j in combinations(range(z.shape[0]), 2):
        xrecon, xorig = torch.cat([recon[i], recon[j]]), torch.cat([x, x])
        rloss = ((xrecon - xorig) ** 2).sum() / (2 * b)
        rep = torch.cat([z[i], z[j]])
        sim = rep @ rep.T  # dot products of normalised projections
        pos = torch.cat([torch.diag(sim, b), torch.diag(sim, -b)]).view(2 * b, 1)
        ones = torch.ones(2 * b)
        keep = (torch.diag(ones) + torch.diag(ones[b:], b) + torch.diag(ones[b:], -b)) == 0
        logits = torch.cat([pos, sim[keep].view(2 * b, -1)], dim=1) / tau
        closs = F.cross_entropy(logits, torch.zeros(2 * b, dtype=torch.long), reduction="sum") / (2 * b)
        zloss = ((z[i] - z[j]) ** 2).sum() / b
        totals.append(rloss + closs + zloss)
    return sum(totals) / len(totals)


def test_subtab_loss_matches_the_authors_joint_loss(california):
    torch.manual_seed(0)
    x = california.train[:32]
    k = 4
    z = F.normalize(torch.randn(k, 32, 16), dim=-1)
    recon = x + 0.3 * torch.randn(k, 32, 8)
    ours = subtab_loss(z, recon, x, temperature=0.1)
    assert ours.item() == pytest.approx(reference_subtab(z, recon, x, 0.1).item(), rel=1e-5)
    r, c, d = subtab_terms(z, recon, x, 0.1, contrastive=False, distance=False)
    assert c == 0 and d == 0 and r.item() == pytest.approx(((recon - x) ** 2).sum(-1).mean().item(), rel=1e-6)
    numeric_only = subtab_terms(z, recon, x, columns=torch.tensor([True] * 4 + [False] * 4))[0]
    assert numeric_only.item() == pytest.approx(((recon - x)[..., :4] ** 2).sum(-1).mean().item(), rel=1e-6)


def test_scarf_uses_infonce_at_temperature_one():
    torch.manual_seed(0)
    z, zc = torch.randn(16, 8), torch.randn(16, 8)
    # SCARF, Sec. 2: -log exp(s_ii / t) / sum_k exp(s_ik / t), cosine similarity, t = 1.
    s = F.normalize(z, dim=1) @ F.normalize(zc, dim=1).T
    expected = -(torch.diag(s) - torch.logsumexp(s, dim=1)).mean()
    assert infonce(z, zc, temperature=1.0).item() == pytest.approx(expected.item(), rel=1e-6)
    assert nt_xent(z, zc, 1.0).item() != pytest.approx(expected.item(), rel=1e-3)  # the 2N form is another loss
