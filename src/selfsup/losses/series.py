"""Losses of the series methods: TS2Vec's hierarchical contrast, TS-TCC's temporal and contextual
contrast, TF-C's NT-Xent variant and consistency term, frame projections' objective.

Pure functions computing in float32 (autocast off inside), like the rest of ``selfsup.losses``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .contrastive import _float32, nt_xent

# --------------------------------------------------------------------------- TS2Vec


def hierarchical_contrastive_loss(
    z1: torch.Tensor, z2: torch.Tensor, alpha: float = 0.5, temporal_unit: int = 0, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """TS2Vec's hierarchical contrastive loss (Yue et al. 2022, arXiv:2106.10466, Sec. 3.3 and its
    Algorithm 1; code ``models/losses.py``).

    ``z1``, ``z2``: ``(B, T, D)`` representations of the same ``T`` timestamps (the crops' overlap) in
    two views. At each level: ``alpha`` x instance loss + ``(1 - alpha)`` x temporal loss (the latter
    from level ``temporal_unit`` on), then max-pool both by 2 along time; at length 1 the instance
    loss alone; the result is the sum over levels divided by their number.

    ``mask``: ``(B, T)`` bool, False at timestamps that are not data in both views (a shorter series'
    padding inside a crop). Those timestamps are neither anchors nor negatives, a pooled timestamp is
    data when both of its halves are, and the levels are those of the longest valid run. With every
    timestamp valid this is the unmasked loss.
    """
    with _float32(z1):
        z1, z2 = z1.float(), z2.float()
        if mask is not None:
            return _masked_hierarchical(z1, z2, alpha, temporal_unit, mask)
        loss = z1.new_zeros(())
        levels = 0
        while z1.shape[1] > 1:
            if alpha != 0:
                loss = loss + alpha * instance_contrastive_loss(z1, z2)
            if levels >= temporal_unit and alpha != 1:
                loss = loss + (1 - alpha) * temporal_contrastive_loss(z1, z2)
            levels += 1
            z1 = F.max_pool1d(z1.transpose(1, 2), kernel_size=2).transpose(1, 2)
            z2 = F.max_pool1d(z2.transpose(1, 2), kernel_size=2).transpose(1, 2)
        if z1.shape[1] == 1:
            if alpha != 0:
                loss = loss + alpha * instance_contrastive_loss(z1, z2)
            levels += 1
        return loss / levels


def _paired_cross_entropy(z: torch.Tensor, n: int) -> torch.Tensor:
    """``z`` ``(G, 2n, D)``: per group, dot-product logits over the other 2n-1 rows, the positive of row
    ``i`` being row ``i + n`` (and back); mean over groups and rows."""
    sim = z @ z.transpose(1, 2)  # (G, 2n, 2n)
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = sim.masked_fill(self_mask, float("-inf")).log_softmax(dim=-1)
    i = torch.arange(n, device=z.device)
    return -(logits[:, i, i + n].mean() + logits[:, i + n, i].mean()) / 2


def instance_contrastive_loss(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """TS2Vec's instance-wise contrast (Sec. 3.3): at each timestamp, the same timestamp of the same series in
    the other view is the positive and the other series of the batch (both views) the negatives.
    Dot-product similarity, no temperature, as the code. Zero for a batch of one."""
    batch = z1.shape[0]
    if batch == 1:
        return z1.new_zeros(())
    return _paired_cross_entropy(torch.cat([z1, z2], dim=0).transpose(0, 1), batch)


def temporal_contrastive_loss(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """TS2Vec's temporal contrast (Sec. 3.3): within a series, the same timestamp in the other view is the
    positive and the other timestamps (both views) the negatives. Zero for length one."""
    length = z1.shape[1]
    if length == 1:
        return z1.new_zeros(())
    return _paired_cross_entropy(torch.cat([z1, z2], dim=1), length)


def _masked_hierarchical(z1, z2, alpha: float, temporal_unit: int, valid: torch.Tensor) -> torch.Tensor:
    loss = z1.new_zeros(())
    levels = z1.new_zeros(())
    level = 0
    while True:
        keep = valid[..., None]
        z1, z2 = torch.where(keep, z1, 0.0), torch.where(keep, z2, 0.0)  # no NaN or garbage reaches a gradient
        if alpha != 0:
            loss = loss + alpha * _masked_pairs(torch.cat([z1, z2]).transpose(0, 1), torch.cat([valid, valid]).T)
        if level >= temporal_unit and alpha != 1 and z1.shape[1] > 1:
            loss = loss + (1 - alpha) * _masked_pairs(torch.cat([z1, z2], dim=1), torch.cat([valid, valid], dim=1))
        levels = levels + valid.any().to(levels.dtype)
        if z1.shape[1] == 1:
            return loss / levels.clamp(min=1)
        level += 1
        z1 = F.max_pool1d(z1.transpose(1, 2), kernel_size=2).transpose(1, 2)
        z2 = F.max_pool1d(z2.transpose(1, 2), kernel_size=2).transpose(1, 2)
        pairs = valid[:, : 2 * (valid.shape[1] // 2)].reshape(valid.shape[0], -1, 2)
        valid = pairs.all(dim=2)


def _masked_pairs(z: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``z`` ``(G, 2n, D)`` with ``valid`` ``(G, 2n)``: :func:`_paired_cross_entropy` over the valid rows of
    each group only, averaged over the valid anchors of all groups (0 when there are none)."""
    n = z.shape[1] // 2
    sim = z @ z.transpose(1, 2)
    excluded = torch.eye(2 * n, dtype=torch.bool, device=z.device) | ~valid[:, None, :]
    logits = sim.masked_fill(excluded, torch.finfo(sim.dtype).min).log_softmax(dim=-1)
    i = torch.arange(n, device=z.device)
    positive = torch.cat([logits[:, i, i + n], logits[:, i + n, i]], dim=1)  # (G, 2n), anchors in row order
    anchors = valid.to(positive.dtype)
    return -(positive * anchors).sum() / anchors.sum().clamp(min=1)


# --------------------------------------------------------------------------- TS-TCC


def tstcc_temporal_contrast(
    targets: torch.Tensor, predictions: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """TS-TCC's temporal contrasting loss (Eldele et al. 2021, arXiv:2106.14112, Sec. 4.2; code
    ``models/TC.py``).

    ``targets`` ``(K, B, C)``: the other view's encoder features at the K future steps; ``predictions``
    ``(K, B, C)``: ``W_k c_t`` from this view's context. For each step, a sample's own future is the
    positive among the batch's: ``-(1/(K B)) sum_k sum_b log softmax_j(z_{k,b} . p_{k,j})[j=b]``.
    ``valid`` ``(K, B)``: targets that are data (a shorter series' padding is not); the mean runs over those.
    """
    with _float32(targets):
        scores = targets.float() @ predictions.float().transpose(1, 2)  # (K, B, B): z_{k,b} . p_{k,j}
        positive = scores.log_softmax(dim=-1).diagonal(dim1=1, dim2=2)  # (K, B)
        if valid is None:
            return -positive.mean()
        weight = valid.to(positive.dtype)
        return -(positive * weight).sum() / weight.sum().clamp(min=1)


def tstcc_contextual_contrast(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """TS-TCC's contextual contrasting (Sec. 4.3; code ``models/loss.py`` ``NTXentLoss`` with cosine similarity,
    temperature 0.2 in every config): NT-Xent over the two views' projected contexts. Its value equals
    SimCLR's NT-Xent, which is reused."""
    return nt_xent(z1, z2, temperature)


# --------------------------------------------------------------------------- TF-C


def tfc_nt_xent_poly(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """TF-C's contrastive loss as its code computes it (Zhang et al. 2022, arXiv:2206.08496, Sec. 3; code
    ``code/TFC/loss.py`` ``NTXentLoss_poly``): NT-Xent with cosine similarity plus a Poly-1 term,
    ``CE/(2B) + B (1/B - p_t)``, where ``p_t`` is the positive's softmax probability averaged over
    all ``2B x (2B-1)`` logits (positive first, then the 2B-2 negatives)."""
    batch = z1.shape[0]
    with _float32(z1):
        z = F.normalize(torch.cat([z2.float(), z1.float()]), dim=-1)  # the code's order: [zjs, zis]
        sim = z @ z.T / temperature
        self_mask = torch.eye(2 * batch, dtype=torch.bool, device=z.device)
        probs_all = sim.masked_fill(self_mask, float("-inf")).softmax(dim=-1)
        i = torch.arange(2 * batch, device=z.device)
        partner = (i + batch) % (2 * batch)
        cross_entropy = -probs_all[i, partner].log().sum()
        p_t = probs_all[i, partner].sum() / (2 * batch * (2 * batch - 1))
        return cross_entropy / (2 * batch) + batch * (1 / batch - p_t)


def tfc_consistency(
    l_tf: torch.Tensor, l_pairs: list[torch.Tensor] | tuple[torch.Tensor, ...], margin: float = 1.0
) -> torch.Tensor:
    """TF-C's time-frequency consistency term (Sec. 3, the consistency loss; code ``trainer.py`` ``loss_c``):
    ``sum over pairs (l_TF - l_pair + margin)``, where ``l_TF`` is the loss between a sample's time and
    frequency embeddings and ``l_pair`` those with one or both sides augmented (the three pairs
    ``(z_t, z~_f)``, ``(z~_t, z_f)``, ``(z~_t, z~_f)``). Not clamped at zero, as the code; note that the
    code's returned pre-training loss is ``0.2 (L_T + L_F) + l_TF`` and leaves this term out."""
    return sum(l_tf - pair + margin for pair in l_pairs)


# --------------------------------------------------------------------------- frame projections


def frame_projection_loss(
    time: torch.Tensor,
    gabor: torch.Tensor,
    fourier: torch.Tensor,
    mapped_fourier: torch.Tensor,
    mapped_gabor: torch.Tensor,
    temperature: float = 0.15,
) -> torch.Tensor:
    """Frame projections' objective (Demirel & Holz 2025, arXiv:2510.22655, Sec. 3; code
    ``models/frameworks.py`` ``IsoAlign.calc_loss``): NT-Xent at temperature 0.15 between each pair of the
    time, Gabor and Fourier embeddings, plus the L1 errors of the latent mappers predicting the
    (normalised) Fourier and Gabor embeddings from the time one. As in the code, each L1 term is the
    element mean divided once more by the batch size. ``mapped_*`` are the mappers' outputs on the
    normalised time embedding."""
    batch = time.shape[0]
    with _float32(time):
        e_time, e_gabor, e_fourier = (F.normalize(e.float(), dim=1) for e in (time, gabor, fourier))
        contrast = (
            nt_xent(e_time, e_gabor, temperature)
            + nt_xent(e_time, e_fourier, temperature)
            + nt_xent(e_gabor, e_fourier, temperature)
        )
        mapping = (F.l1_loss(mapped_fourier.float(), e_fourier) + F.l1_loss(mapped_gabor.float(), e_gabor)) / batch
        return contrast + mapping
