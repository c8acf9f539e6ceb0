"""Random per-sample token masking, shared by the masked-modelling methods.

:func:`random_keep` is MAE's ``random_masking`` (He et al. 2022, arXiv:2111.06377, Sec. 3,
"Masking" and "Simple implementation"): each sample draws uniform noise per token, the tokens with
the smallest noise are kept, so every sample keeps the same number of tokens (a dense batch) and
the kept set is a uniformly random subset without replacement.
"""

from __future__ import annotations

import torch


def num_kept(length: int, ratio: float) -> int:
    """Tokens kept out of ``length`` when a fraction ``ratio`` is masked: ``int(L * (1 - ratio))``
    as MAE, and at least one."""
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"masking ratio must be in [0, 1), got {ratio}")
    return max(1, int(length * (1.0 - ratio)))


def random_keep(
    n: int,
    length: int,
    ratio: float,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A random subset of ``length`` tokens for each of ``n`` samples, masking a fraction ``ratio``.

    Returns ``keep``, a LongTensor (n, K) of the kept token indices (in random order, as MAE's
    shuffle), and ``mask``, a float tensor (n, length) with 1 at masked tokens and 0 at kept ones.
    """
    k = num_kept(length, ratio)
    noise = torch.rand(n, length, device=device, generator=generator)
    keep = noise.argsort(dim=1)[:, :k]
    mask = torch.ones(n, length, device=device)
    mask.scatter_(1, keep, 0.0)
    return keep, mask
