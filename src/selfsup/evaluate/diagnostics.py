"""Health of a representation from a batch of embeddings: rank, spectrum, alignment, uniformity,
tolerance.

Pure functions on tensors, cheap enough to run on one batch every few hundred steps:

* :func:`rankme`: the effective rank of Garrido et al. 2023 ("RankMe: Assessing the Downstream
  Performance of Pretrained Self-Supervised Representations by Their Rank", Eq. 1): with
  ``sigma`` the singular values of the (N, d) embedding matrix, ``p_k = sigma_k / ||sigma||_1 + eps``
  (eps = 1e-7 as in the paper) and RankMe = ``exp(-sum_k p_k log p_k)``, between 1 and min(N, d).
* :func:`covariance_spectrum`: the eigenvalues of the embedding covariance, sorted and normalised
  to sum to 1 (a dimensional collapse shows as a spectrum falling to zero; Jing et al. 2022).
* :func:`alignment` and :func:`uniformity` of Wang & Isola 2020 ("Understanding Contrastive
  Representation Learning through Alignment and Uniformity on the Hypersphere"): on
  L2-normalised embeddings, ``align = E ||f(x) - f(y)||^alpha`` over positive pairs (alpha = 2) and
  ``uniform = log E exp(-t ||f(x) - f(y)||^2)`` over all pairs of distinct samples (t = 2).
  Lower is better for both; uniformity is at least -4 (t=2) and 0 when everything collapses.
* :func:`tolerance` of Wang & Liu 2021 ("Understanding the Behaviour of Contrastive Loss", CVPR,
  arXiv:2012.09740, Sec. 4): with class labels, the mean cosine similarity of pairs of samples of
  the same class. Higher: the embedding keeps semantically similar samples close. Their
  uniformity-tolerance dilemma: a lower contrastive temperature makes the embedding more uniform
  and less tolerant.
* :func:`normalized_std`: the std over the batch of each dimension of the L2-normalised
  embeddings, averaged over dimensions (the collapse measure of SimSiam, Chen & He 2021, Sec. 4.1):
  about ``1/sqrt(d)`` for embeddings spread over the sphere, 0 when all embeddings coincide.

:func:`diagnose` runs them all and returns a flat dict of floats to log; :func:`collapse_alarm`
turns that dict into a list of reasons to worry (empty when healthy).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .linear import threads_for

RANKME_EPS = 1e-7

# Default alarm thresholds, calibrated on batches of 256 digits test images (resnet-small, 128-d
# backbone features, BYOL's 128-d projector output):
#                                     backbone rank frac / std ratio   projector rank frac / std ratio
#   BYOL digits demo, 60 epochs (healthy)       0.34 / 0.62                    0.17 / 0.93
#   BYOL, 2 epochs                              0.45 / 0.53                    0.38 / 0.81
#   untrained network (eval mode)               0.25 / 0.23                    0.18 / 0.20
#   siamese net without stop-gradient or        0.53 / 0.55                    0.13 / 0.08 after 80
#   predictor (collapsing, train-mode batch)                                   steps, and falling
# plus, synthetic: constant or rank-1 embeddings have rank fraction 1/min(N, d) and std ratio ~0;
# Gaussian ones ~0.6-0.9 and ~1. So the std ratio is the sharp signal of (complete) collapse and
# 0.1 separates the collapsing projector from everything healthy, untrained nets included; the rank
# threshold is kept low (2%: about 2.6 of 128 dims, 5 of 256) so that low-rank but useful
# representations do not raise it, while rank-1 collapse does for any min(N, d) > 50.
DEFAULT_MIN_RANK_FRACTION = 0.02
DEFAULT_MIN_STD_RATIO = 0.1


def _matrix(z: torch.Tensor, what: str = "embeddings") -> torch.Tensor:
    if z.ndim != 2:
        z = z.reshape(len(z), -1)
    if len(z) < 2:
        raise ValueError(f"{what}: need at least 2 samples, got {len(z)}")
    return z.detach().double()


def singular_values(z: torch.Tensor) -> torch.Tensor:
    """Singular values of the (N, d) embedding matrix (float64, descending)."""
    return torch.linalg.svdvals(_matrix(z))


def rankme(z: torch.Tensor, eps: float = RANKME_EPS) -> float:
    """Effective rank (RankMe, Garrido et al. 2023) of the (N, d) embeddings ``z``.

    Computed on the embeddings as they are (not centred), as in the paper. About ``r`` for ``r``
    orthogonal directions of equal energy; 1 for a rank-1 matrix; for all-zero embeddings, where
    the normalised spectrum is undefined, it is taken as 1 (total collapse) as well.
    """
    s = singular_values(z)
    total = s.sum()
    if total <= 0 or not torch.isfinite(total):
        return 1.0
    p = s / total + eps
    return float(torch.exp(-(p * torch.log(p)).sum()))


def covariance_spectrum(z: torch.Tensor) -> list[float]:
    """Eigenvalues of the covariance of ``z`` (centred), descending, normalised to sum 1.

    ``d`` values (zeros beyond the rank); all zeros for constant embeddings.
    """
    z = _matrix(z)
    zc = z - z.mean(0)
    # Eigenvalues of the covariance are the squared singular values of the centred matrix / N.
    ev = torch.linalg.svdvals(zc).pow(2) / len(z)
    ev = torch.cat([ev, ev.new_zeros(max(0, z.shape[1] - len(ev)))])
    total = ev.sum()
    return (ev / total if total > 0 else ev).tolist()


def alignment(a: torch.Tensor, b: torch.Tensor, alpha: float = 2.0) -> float:
    """``E ||a_i - b_i||^alpha`` over positive pairs ``(a_i, b_i)`` after L2 normalisation (Wang & Isola 2020)."""
    if a.shape != b.shape:
        raise ValueError(f"positive pairs must have one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    a, b = F.normalize(_matrix(a), dim=1), F.normalize(_matrix(b), dim=1)
    return float((a - b).norm(dim=1).pow(alpha).mean())


def uniformity(z: torch.Tensor, t: float = 2.0, chunk_size: int = 2048) -> float:
    """``log E exp(-t ||z_i - z_j||^2)`` over pairs ``i < j`` of L2-normalised ``z`` (Wang & Isola 2020).

    Exact, computed in row chunks with a log-sum-exp, so a large batch needs no N x N matrix.
    """
    z = F.normalize(_matrix(z), dim=1)
    n = len(z)
    parts = []
    for s in range(0, n - 1, chunk_size):
        rows = z[s : s + chunk_size]
        d2 = (2 - 2 * rows @ z.T).clamp_(min=0)  # ||u - v||^2 = 2 - 2 u.v on the unit sphere
        i = torch.arange(s, s + len(rows), device=z.device).unsqueeze(1)
        j = torch.arange(n, device=z.device).unsqueeze(0)
        parts.append(torch.logsumexp((-t * d2).masked_fill(j <= i, -math.inf).flatten(), 0))
    pairs = n * (n - 1) / 2
    return float(torch.logsumexp(torch.stack(parts), 0) - math.log(pairs))


def tolerance(z: torch.Tensor, labels: torch.Tensor) -> float:
    """Tolerance (Wang & Liu 2021, arXiv:2012.09740, Sec. 4, "tolerance to potential positive
    samples"): ``T = E[ s(x)^T s(y) | l(x) = l(y) ]``, the mean similarity ``s(x)^T s(y)`` of the
    L2-normalised embeddings ``s`` over pairs of distinct samples ``x != y`` that share a class
    label ``l``. Between -1 and 1; 1 when every class collapses to a point.

    The paper writes it as an expectation over all pairs weighted by the indicator
    ``I[l(x) = l(y)]`` and describes it as "the mean similarities of samples belonging to the same
    class"; this is that mean (the indicator-weighted expectation over all pairs is it times the
    fraction of pairs that share a class, a constant of the data set: 1/K for K balanced classes).
    Self-pairs (similarity 1 by construction) are left out.

    Exact in O(N d) without an N x N matrix: for class c with normalised embeddings summing to
    ``S_c``, the sum over its pairs ``i < j`` of ``s_i . s_j`` is ``(||S_c||^2 - sum_i ||s_i||^2) / 2``.
    """
    z = F.normalize(_matrix(z), dim=1)
    labels = torch.as_tensor(labels, device=z.device).reshape(-1)
    if len(labels) != len(z):
        raise ValueError(f"tolerance: {len(labels)} labels for {len(z)} embeddings")
    if labels.is_floating_point():
        raise ValueError("tolerance: labels must be integer classes")
    _, cls = torch.unique(labels, return_inverse=True)
    k = int(cls.max()) + 1
    sums = z.new_zeros(k, z.shape[1]).index_add_(0, cls, z)  # S_c
    sq = z.new_zeros(k).index_add_(0, cls, z.pow(2).sum(1))  # sum_i ||s_i||^2 (1 each, 0 for a zero row)
    count = torch.bincount(cls, minlength=k).double()
    pairs = float((count * (count - 1) / 2).sum())
    if pairs == 0:
        raise ValueError("tolerance: no two samples share a label")
    return float(((sums.pow(2).sum(1) - sq) / 2).sum()) / pairs


def geometry(z: torch.Tensor, labels: torch.Tensor, max_samples: int = 2048, seed: int = 0) -> dict:
    """``uniformity`` and ``tolerance`` of the L2-normalised embeddings ``z`` of a labelled split:
    Wang & Liu's two sides of the temperature's trade-off, side by side. The uniformity, quadratic
    in the number of samples, is taken on a seeded sample of at most ``max_samples`` rows (exact
    below that); the tolerance on all of them."""
    keep = torch.randperm(len(z), generator=torch.Generator().manual_seed(seed))[:max_samples]
    return {"uniformity": uniformity(z[keep.to(z.device)]), "tolerance": tolerance(z, labels)}


def normalized_std(z: torch.Tensor) -> float:
    """Mean over dimensions of the batch std of L2-normalised ``z`` (about 1/sqrt(d) when spread out)."""
    z = F.normalize(_matrix(z), dim=1)
    return float(z.std(0, unbiased=False).mean())


def _embedding_stats(z: torch.Tensor, prefix: str) -> dict:
    z = _matrix(z)
    n, d = z.shape
    rank = rankme(z)
    std = normalized_std(z)
    return {
        f"{prefix}rankme": rank,
        f"{prefix}rankme_fraction": rank / min(n, d),
        f"{prefix}norm_std": std,
        f"{prefix}norm_std_ratio": std * math.sqrt(d),
        f"{prefix}dim": float(d),
    }


@torch.no_grad()
def diagnose(
    encoder_features: torch.Tensor,
    projector_features: torch.Tensor | None = None,
    pair_a: torch.Tensor | None = None,
    pair_b: torch.Tensor | None = None,
    spectrum: bool = False,
    labels: torch.Tensor | None = None,
) -> dict:
    """Every diagnostic of one batch, as a flat dict of floats ready for ``metrics.jsonl``.

    * ``encoder_features`` (N, d): backbone outputs. Gives ``rankme``, ``rankme_fraction``
      (RankMe / min(N, d)), ``norm_std``, ``norm_std_ratio`` (``norm_std * sqrt(d)``, about 1
      when spread out, 0 when collapsed), ``dim`` and ``uniformity``.
    * ``projector_features`` (N, p): the same under a ``proj_`` prefix.
    * ``pair_a``, ``pair_b`` (M, e): embeddings of two augmented views of the same M images
      (row i of each is a positive pair). Gives ``alignment``, and ``uniformity`` becomes the mean
      of the two views' uniformities (Wang & Isola's own combination) instead of the backbone's.
    * ``spectrum=True`` adds ``spectrum`` (and ``proj_spectrum``): the normalised covariance
      spectra as lists, for plots; left out by default so that the dict holds floats only.
    * ``labels`` (N,): class labels of the batch's samples. Gives ``tolerance`` (Wang & Liu 2021) of
      the backbone features and, with ``projector_features``, ``proj_tolerance`` beside
      ``proj_uniformity``, both of the projector's output on the same samples (the embedding the
      contrastive loss sees, where Wang & Liu measure the uniformity-tolerance trade-off).

    Everything is computed in float64 on detached copies; no gradient flows.
    """
    with threads_for(encoder_features):
        return _diagnose(encoder_features, projector_features, pair_a, pair_b, spectrum, labels)


def _diagnose(encoder_features, projector_features, pair_a, pair_b, spectrum, labels=None) -> dict:
    out = _embedding_stats(encoder_features, "")
    out["uniformity"] = uniformity(encoder_features)
    if projector_features is not None:
        out.update(_embedding_stats(projector_features, "proj_"))
    if (pair_a is None) != (pair_b is None):
        raise ValueError("give both pair_a and pair_b (two views of the same images), or neither")
    if pair_a is not None:
        out["alignment"] = alignment(pair_a, pair_b)
        out["uniformity"] = (uniformity(pair_a) + uniformity(pair_b)) / 2
    if labels is not None:
        out["tolerance"] = tolerance(encoder_features, labels)
        if projector_features is not None:
            out["proj_uniformity"] = uniformity(projector_features)
            out["proj_tolerance"] = tolerance(projector_features, labels)
    if spectrum:
        out["spectrum"] = covariance_spectrum(encoder_features)
        if projector_features is not None:
            out["proj_spectrum"] = covariance_spectrum(projector_features)
    return out


def collapse_alarm(
    diag: dict, min_rank_fraction: float = DEFAULT_MIN_RANK_FRACTION, min_std_ratio: float = DEFAULT_MIN_STD_RATIO
) -> list[str]:
    """Reasons to think the representation collapsed (empty list: healthy), from :func:`diagnose`'s dict.

    * RankMe below ``min_rank_fraction`` of min(batch, dim) (default 2%): dimensional collapse,
      or complete collapse (RankMe ~ 1);
    * ``norm_std_ratio`` below ``min_std_ratio`` (default 0.1): the L2-normalised embeddings
      barely move across the batch (complete collapse gives 0, spread-out ones about 1).

    The defaults and the runs they were calibrated on are listed at the top of this module.

    Checked for the backbone and, when present, the projector (``proj_`` keys).
    """
    reasons = []
    for prefix, what in (("", "backbone"), ("proj_", "projector")):
        if f"{prefix}rankme" not in diag:
            continue
        rank, frac = diag[f"{prefix}rankme"], diag[f"{prefix}rankme_fraction"]
        if not math.isfinite(frac) or frac < min_rank_fraction:
            reasons.append(
                f"{what} effective rank {rank:.2f} is below {min_rank_fraction:.0%} of its maximum, "
                f"min(batch, dim) (RankMe fraction {frac:.4f}): dimensional collapse"
            )
        ratio = diag[f"{prefix}norm_std_ratio"]
        if not math.isfinite(ratio) or ratio < min_std_ratio:
            reasons.append(
                f"{what} normalised embeddings hardly vary across the batch (std x sqrt(d) = "
                f"{ratio:.4f} < {min_std_ratio}): complete collapse"
            )
    return reasons
