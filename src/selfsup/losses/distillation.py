"""Cross-entropy between a student's softmax and a fixed target distribution over prototypes /
output dimensions, summed over pairs of views (DINO, SwAV).

Every function accepts float32 or bf16 inputs and computes in float32, so a loss called inside
``torch.autocast`` has the value it has outside it up to the inputs' rounding. The targets
(teacher logits, codes) are constants: no gradient reaches them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

Views = Sequence[torch.Tensor] | torch.Tensor


def _views(x: Views, detach: bool = False) -> list[torch.Tensor]:
    views = list(x.unbind(0)) if isinstance(x, torch.Tensor) else list(x)
    return [v.detach().float() if detach else v.float() for v in views]


def dino_loss(
    student_logits: Views,
    teacher_logits: Views,
    center: torch.Tensor,
    student_temp: float = 0.1,
    teacher_temp: float | torch.Tensor = 0.04,
) -> torch.Tensor:
    """DINO's loss (Caron et al. 2021, "Emerging Properties in Self-Supervised Vision Transformers",
    arXiv:2104.14294, Eq. 2-3 and Algorithm 1, with the centring of Sec. 3.1 / Eq. 4).

    ``min  sum_{t in global} sum_{s != t} H(P_t(x_t), P_s(x_s))`` where the teacher's probabilities
    are ``P_t = softmax((g_t - center) / teacher_temp)`` (centred and sharpened), the student's
    ``P_s = softmax(g_s / student_temp)`` and ``H(a, b) = -a . log b``; the cross-entropies are
    averaged over the batch and over the pairs, as the authors' ``DINOLoss`` does.

    Args:
        student_logits: the student's outputs of every view, a list of V tensors (B, K) or one
            (V, B, K) tensor, global views first.
        teacher_logits: the teacher's outputs of the T global views, a list of T tensors (B, K) or
            one (T, B, K) tensor; teacher view ``t`` is the same crop as student view ``t``, and
            those same-crop pairs are skipped.
        center: the running mean of the teacher's outputs, (K,) or (1, K).
        student_temp: ``tau_s`` (0.1 in the paper).
        teacher_temp: ``tau_t``, a float or a 0-d tensor (0.04 warmed up to 0.07 in the paper).

    Returns a float32 scalar. No gradient reaches ``teacher_logits`` or ``center``.
    """
    student = _views(student_logits)
    teacher = _views(teacher_logits, detach=True)
    center = center.detach().float().reshape(1, -1)
    log_p = [F.log_softmax(s / student_temp, dim=-1) for s in student]
    targets = [F.softmax((t - center) / teacher_temp, dim=-1) for t in teacher]
    # Sum over all (t, s) pairs, then take out the same-crop pairs (t, t):
    # sum_t sum_s q_t . log p_s = (sum_t q_t) . (sum_s log p_s).
    cross = (torch.stack(targets).sum(0) * torch.stack(log_p).sum(0)).sum(-1)
    same = sum((q * lp).sum(-1) for q, lp in zip(targets, log_p))
    pairs = len(targets) * len(log_p) - min(len(targets), len(log_p))
    return -(cross - same).mean() / pairs


def swav_loss(scores: Views, codes: Views, temperature: float = 0.1) -> torch.Tensor:
    """SwAV's swapped prediction (Caron et al. 2020, "Unsupervised Learning of Visual Features by
    Contrasting Cluster Assignments", arXiv:2006.09882, Eq. 1-2, with multi-crop as in Eq. 6).

    For each view ``i`` that has codes, every *other* view ``v`` predicts them:
    ``l(z_v, q_i) = -sum_k q_i^k log softmax(z_v . c / temperature)^k``, averaged over the batch and
    over the ``V - 1`` predicting views, then over the views with codes (the reference code's
    normalisation).

    Args:
        scores: prototype scores ``z . c`` of every view, a list of V tensors (B, K) or one
            (V, B, K) tensor, the views with codes first.
        codes: the codes ``q`` (e.g. from :func:`~selfsup.methods.parts.sinkhorn.sinkhorn`) of the first
            ``len(codes)`` views, each (B, K) with rows summing to 1.
        temperature: ``tau`` of Eq. 2 (0.1 in the paper).

    Returns a float32 scalar. No gradient reaches ``codes``.
    """
    scores = _views(scores)
    codes = _views(codes, detach=True)
    if len(scores) < 2 or len(codes) > len(scores):
        raise ValueError(
            f"swav_loss needs at least 2 views of scores and at most as many codes, got {len(scores)} and {len(codes)}"
        )
    log_p = [F.log_softmax(s / temperature, dim=-1) for s in scores]
    total = 0.0
    for i, q in enumerate(codes):
        others = [lp for v, lp in enumerate(log_p) if v != i]
        total = total + sum(-(q * lp).sum(-1).mean() for lp in others) / len(others)
    return total / len(codes)
