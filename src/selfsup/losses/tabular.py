"""Losses of the table methods that the generic families do not cover: VIME's and SubTab's.

SCARF needs nothing new: its loss (Bahri et al. 2022, arXiv:2106.15147, Sec. 2) is InfoNCE between
each row's embedding (anchor) and its corrupted view's (positive) with the batch's other corrupted
views as negatives, cosine similarity, temperature 1: ``infonce(z, z_corrupted, temperature=1.0)``
(the paper's ``1/N`` inside the log only shifts the loss by ``log N``). SubTab's contrastive term is
``nt_xent`` on its L2-normalised projections (see :func:`subtab_terms`).

Like the other losses: pure functions, float32 inside (autocast off), batch-wide terms over the
batch the caller passes.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import torch
import torch.nn.functional as F

from .contrastive import _float32, nt_xent


def vime_terms(
    mask_logits: torch.Tensor,
    mask_target: torch.Tensor,
    num_pred: torch.Tensor | None = None,
    num_target: torch.Tensor | None = None,
    cat_logits: Sequence[torch.Tensor] = (),
    cat_target: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """VIME's two self-supervised losses (Yoon et al. 2020, "VIME: Extending the Success of Self- and
    Semi-supervised Learning to Tabular Domain", NeurIPS, Sec. 4.1), as ``(mask_loss, recon_loss)``:

    * mask estimation ``l_m``: binary cross-entropy between the mask estimator's logits and the
      mask (B, F), averaged over entries (the code's ``binary_crossentropy`` on the mask head);
    * feature estimation ``l_r``: ``(1/d) [sum over numeric k of (x_k - x^_k)^2 + sum over
      categorical k of CE(x_k, x^_k)]`` averaged over rows: squared error for the numeric columns
      (``num_pred`` vs ``num_target``, (B, Fn)) and cross-entropy for each categorical column
      (``cat_logits[j]`` (B, K_j) vs ``cat_target[:, j]`` codes), divided by all d = Fn + Fc
      columns. With numeric columns only this is the code's ``mean_squared_error``.
    """
    with _float32(mask_logits):
        mask_loss = F.binary_cross_entropy_with_logits(mask_logits.float(), mask_target.float())
        recon = row_reconstruction(num_pred, num_target, cat_logits, cat_target)
        d = (0 if num_pred is None else num_pred.shape[1]) + len(cat_logits)
        assert d == mask_logits.shape[1], f"reconstruction covers {d} columns of {mask_logits.shape[1]}"
        return mask_loss, recon


def row_reconstruction(
    num_pred: torch.Tensor | None,
    num_target: torch.Tensor | None,
    cat_logits: Sequence[torch.Tensor] = (),
    cat_target: torch.Tensor | None = None,
) -> torch.Tensor:
    """The reconstruction error of whole rows, per column and averaged over rows: ``(1/d) [sum over
    numeric k of (x_k - x^_k)^2 + sum over categorical k of CE(x_k, x^_k)]`` with d = Fn + Fc
    (VIME's ``l_r``, Sec. 4.1; also the denoising autoencoder's loss)."""
    ref = num_pred if num_pred is not None else cat_logits[0]
    with _float32(ref):
        total = ref.new_zeros((), dtype=torch.float32)
        d = 0
        if num_pred is not None:
            total = total + (num_pred.float() - num_target.float()).pow(2).sum(dim=1).mean()
            d += num_pred.shape[1]
        for j, logits in enumerate(cat_logits):
            total = total + F.cross_entropy(logits.float(), cat_target[:, j].long())
            d += 1
        return total / d


def vime_loss(
    mask_logits: torch.Tensor,
    mask_target: torch.Tensor,
    num_pred: torch.Tensor | None = None,
    num_target: torch.Tensor | None = None,
    cat_logits: Sequence[torch.Tensor] = (),
    cat_target: torch.Tensor | None = None,
    alpha: float = 2.0,
) -> torch.Tensor:
    """VIME's self-supervised objective ``l_m + alpha * l_r`` (Sec. 4.1; the code's loss weights
    ``mask: 1, feature: alpha``, default alpha 2.0); terms as :func:`vime_terms`."""
    mask_loss, recon_loss = vime_terms(mask_logits, mask_target, num_pred, num_target, cat_logits, cat_target)
    return mask_loss + alpha * recon_loss


def subtab_terms(
    z: torch.Tensor,
    recon: torch.Tensor,
    x: torch.Tensor,
    temperature: float = 0.1,
    contrastive: bool = True,
    distance: bool = True,
    columns: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SubTab's losses (Ucar et al. 2021, "SubTab: Subsetting Features of Tabular Data for
    Self-Supervised Representation Learning", NeurIPS, arXiv:2110.04361, Sec. 3; the
    authors' ``JointLoss``) for K subsets of a batch, as ``(recon, contrastive, distance)``:

    * ``z`` (K, B, D): each subset's projection, L2-normalised as the code does;
      ``recon`` (K, B, F): each subset's reconstruction of the whole row; ``x`` (B, F) the rows.
    * reconstruction: squared error summed over the columns and averaged over rows and subsets
      (the code's ``getMSEloss``: sum / batch), against the *whole* row, not the subset;
      ``columns`` ((F,) bool) restricts it, e.g. to numeric columns;
    * contrastive (optional): NT-Xent with temperature ``temperature`` (the code's ``tau``, 0.1)
      between every pair of subsets of the same rows, averaged over pairs (the code's
      ``XNegloss``: dot products of normalised projections = cosine similarities);
    * distance (optional): ``sum((z_i - z_j)^2) / B`` averaged over pairs.

    The code averages ``recon + contrastive + distance`` over the pairs of subsets; each subset is
    in as many pairs as any other, so the pairs' mean reconstruction is the subsets' mean, as here.
    Terms that are switched off are 0.
    """
    k = z.shape[0]
    assert k >= 2 and recon.shape[0] == k and recon.shape[1:] == x.shape, (z.shape, recon.shape, x.shape)
    with _float32(z):
        err = (recon.float() - x.float().unsqueeze(0)).pow(2)
        if columns is not None:
            err = err * columns.to(device=err.device, dtype=err.dtype)
        recon_loss = err.sum(dim=-1).mean()
        zero = recon_loss.new_zeros(())
        pairs = list(combinations(range(k), 2))
        closs = sum(nt_xent(z[i], z[j], temperature) for i, j in pairs) / len(pairs) if contrastive else zero
        dloss = (
            sum((z[i].float() - z[j].float()).pow(2).sum(dim=-1).mean() for i, j in pairs) / len(pairs)
            if distance
            else zero
        )
        return recon_loss, closs, dloss


def subtab_loss(
    z: torch.Tensor,
    recon: torch.Tensor,
    x: torch.Tensor,
    temperature: float = 0.1,
    contrastive: bool = True,
    distance: bool = True,
    columns: torch.Tensor | None = None,
) -> torch.Tensor:
    """SubTab's total loss: reconstruction + contrastive + distance (Sec. 3; terms and
    switches as :func:`subtab_terms`)."""
    return sum(subtab_terms(z, recon, x, temperature, contrastive, distance, columns))
