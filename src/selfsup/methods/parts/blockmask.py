"""Block masks on a ``grid x grid`` token grid, shared by the masked-modelling methods.

Two samplers:

* :func:`block_masks`: masks made of connected groups of tokens covering a requested fraction of
  the grid, for GMML (Atito et al., "GMML is All you Need", arXiv:2205.14986, Sec. 3: "groups of
  connected tokens" are corrupted) and SiT (arXiv:2104.03602). Rectangles are drawn as BEiT's
  blockwise masking (Bao et al. 2022, arXiv:2106.08254, Algorithm 1): a target area uniform between
  a minimum block and the tokens still to mask, a log-uniform aspect ratio in ``(0.3, 1/0.3)``, a
  uniform position, accepted when it adds at least one and at most the remaining number of tokens
  (BEiT tries 10 times per block; here every sample gets one proposal per round, for 10 rounds per
  block an average block would need, at least 30). Two choices where the papers are silent:

  - *Token-aligned groups.* The GMML/SiT code corrupts pixel rectangles (``drop_align=1``) of
    sides up to 30% of the image; here the groups are whole tokens (the code's
    ``drop_align=patch``), so "connected groups of tokens" is exact and the loss region is a set of
    tokens.
  - *Exact coverage.* BEiT stops when no rectangle fits the remainder (it then masks fewer tokens
    than asked). Here the remainder is filled by growing the existing groups one 4-neighbour at
    a time, so a mask covers exactly ``round(coverage * L)`` tokens and every connected group is
    still at least one whole rectangle (two tokens or more; a single token only when one token
    is asked for, or on grids under 3x3 where no rectangle of two tokens fits).

  The minimum block is BEiT's 16 of 196 tokens scaled to the grid (8% of ``L``, at least 2):
  5 tokens on 8x8, 2 on 4x4, 20 on 16x16. BEiT does not bound a block's area; GMML's code bounds
  its sides by ``max_block_sz = 30%`` of the image side, which ``max_area`` expresses as an area
  (GMML passes ``(0.3 * grid)^2`` tokens, so its masks are several smaller groups, not one blob).

* :func:`multiblock_masks`: I-JEPA's multi-block sampler (Assran et al. 2023, arXiv:2301.08243, Sec.
  3 and the authors' ``src/masks/multiblock.py``): ``M = 4`` target blocks of scale (0.15, 0.2) and
  aspect ratio (0.75, 1.5), one context block of scale (0.85, 1.0) and aspect 1 from which every
  target region is removed, so context and targets are disjoint. As the authors, one block size per
  batch (per kind) and positions per sample; a block side is ``round(sqrt( int(L * scale) *
  aspect))`` made strictly smaller than the grid. Scaled to small grids, since the fractions are the
  paper's: on 8x8 the targets are 3x3 to 4x3 tokens and the context block 7x7; on 4x4 the targets
  are 1x1 to 2x2 and the context 3x3 (where 4 targets leave little context: use ``num_targets=2``
  there). ``min_keep`` (the authors' 10 context tokens at 14x14 to 16x16, 5% of ``L``, at least 2
  here). Differences from the authors' code, each to keep the paper's stated property: (a) when 20
  context positions (the code's timeout) all leave fewer than ``min_keep`` tokens, the targets are
  redrawn too, where the code relaxes the no-overlap constraint (which would let context and targets
  overlap); (b) positions are uniform over every valid top-left corner (the code's ``randint(0, H -
  h)`` never reaches the last one); (c) scale and aspect ratio are two draws (the code reuses one
  uniform for both); (d) contexts are cut to the batch's smallest context (needed for a dense batch,
  as the code) by a random subset rather than the first tokens in row-major order, so the context
  stays spread over its block.

Both samplers are batched torch code (a fixed number of proposal rounds for every sample at
once), so they run on the device next to the model; randomness comes from torch's generator of
that device, which the training loop checkpoints, so runs resume exactly. A few host syncs per
call (the number of growing steps; the block sizes and the batch's smallest context).
"""

from __future__ import annotations

import math

import numpy as np
import torch

BEIT_ASPECT = (0.3, 1 / 0.3)
BEIT_MIN_FRACTION = 16 / 196  # BEiT's min_num_patches on its 14x14 grid
BEIT_ATTEMPTS = 10  # BEiT's attempts per block
IJEPA_MIN_KEEP_FRACTION = 0.05  # the authors' min_keep=10 on 14x14 (196) to 16x16 (256) grids


def default_min_area(length: int) -> int:
    return max(2, round(BEIT_MIN_FRACTION * length))


def _rects(top: torch.Tensor, left: torch.Tensor, h, w, grid: int) -> torch.Tensor:
    """Boolean (..., grid, grid) rectangles ``[top, top + h) x [left, left + w)``."""
    pos = torch.arange(grid, device=top.device)
    rows = (pos >= top[..., None]) & (pos < (top + h)[..., None])
    cols = (pos >= left[..., None]) & (pos < (left + w)[..., None])
    return rows[..., :, None] & cols[..., None, :]


def _neighbours(mask: torch.Tensor) -> torch.Tensor:
    """Cells 4-adjacent to a True cell of (n, g, g) ``mask``, themselves not True."""
    near = torch.zeros_like(mask)
    near[:, 1:] |= mask[:, :-1]
    near[:, :-1] |= mask[:, 1:]
    near[:, :, 1:] |= mask[:, :, :-1]
    near[:, :, :-1] |= mask[:, :, 1:]
    return near & ~mask


# ------------------------------------------------------------------------------------- GMML / BEiT


def block_masks(
    n: int,
    grid: int,
    coverage: float | tuple[float, float],
    device=None,
    min_area: int | None = None,
    max_area: int | None = None,
    aspect: tuple[float, float] = BEIT_ASPECT,
    rounds: int | None = None,
) -> torch.Tensor:
    """Boolean (n, grid*grid) masks (True = masked), row-major like :func:`~selfsup.backbones.vit.patchify`.

    ``coverage``: the fraction of tokens to mask, or a range ``(lo, hi)`` from which each sample
    draws its own fraction uniformly; a sample masks exactly ``round(fraction * L)`` tokens, in
    connected groups. ``min_area``/``max_area``: the range of a block's target area in tokens
    (BEiT's ``min_num_patches``/``max_num_patches``; default 8% of ``L`` and unbounded).
    ``rounds``: rectangle proposals per sample (default: BEiT's 10 attempts for each of the blocks
    an average-size block would need, at least 30).
    """
    length = grid * grid
    lo, hi = (float(coverage),) * 2 if isinstance(coverage, (int, float)) else map(float, coverage)
    if not 0 <= lo <= hi <= 1:
        raise ValueError(f"coverage must be in [0, 1] (a fraction or an increasing pair), got {coverage}")
    min_area = default_min_area(length) if min_area is None else min_area
    max_area = length if max_area is None else max(max_area, 1)
    count = torch.round((lo + (hi - lo) * torch.rand(n, device=device)) * length).long()
    if rounds is None:
        mean_block = (min_area + min(hi * length, max_area)) / 2
        rounds = max(30, BEIT_ATTEMPTS * math.ceil(hi * length / max(mean_block, 1)))
    mask = torch.zeros(n, grid, grid, dtype=torch.bool, device=device)
    masked = torch.zeros(n, dtype=torch.long, device=device)
    log_lo, log_hi = math.log(aspect[0]), math.log(aspect[1])
    for _ in range(rounds):
        remaining = count - masked
        most = remaining.clamp(max=max_area)  # BEiT's max_mask_patches
        u = torch.rand(4, n, device=device)
        a_lo = most.clamp(max=min_area).float()
        a_hi = most.clamp(min=min_area).float()
        area = a_lo + (a_hi - a_lo) * u[0]  # BEiT: uniform(min_num_patches, max_mask_patches)
        ratio = torch.exp(log_lo + (log_hi - log_lo) * u[1])
        h = torch.round(torch.sqrt(area * ratio)).long()
        w = torch.round(torch.sqrt(area / ratio)).long()
        fits = (h >= 1) & (h < grid) & (w >= 1) & (w < grid) & (h * w >= 2)
        top = torch.minimum((u[2] * (grid - h + 1)).long(), grid - h).clamp(min=0)
        left = torch.minimum((u[3] * (grid - w + 1)).long(), grid - w).clamp(min=0)
        rect = _rects(top, left, h, w, grid)
        new = (rect & ~mask).sum(dim=(1, 2))
        accept = fits & (new > 0) & (new <= most)
        mask |= rect & accept[:, None, None]
        masked += new * accept
    # What no rectangle filled: grow the groups one 4-neighbour at a time, to the exact count.
    remaining = count - masked
    for _ in range(int(remaining.max()) if n else 0):
        need = remaining > 0
        cand = _neighbours(mask)
        cand = torch.where(cand.flatten(1).any(1)[:, None, None], cand, ~mask)  # nothing masked yet
        pick = (torch.rand(n, length, device=device) + 2 * cand.flatten(1)).argmax(dim=1)
        add = torch.zeros(n, length, dtype=torch.bool, device=device)
        add[torch.arange(n, device=device), pick] = need
        mask |= add.view(n, grid, grid)
        remaining = remaining - need.long()
    return mask.flatten(1)


def components(mask) -> list[int]:
    """Sizes of the 4-connected groups of True cells of a 2-D boolean array (a flood fill)."""
    mask = np.asarray(mask, dtype=bool)
    seen = np.zeros_like(mask)
    sizes = []
    rows, cols = mask.shape
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        seen[start] = True
        stack, size = [start], 0
        while stack:
            r, c = stack.pop()
            size += 1
            for rr, cc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
                if 0 <= rr < rows and 0 <= cc < cols and mask[rr, cc] and not seen[rr, cc]:
                    seen[rr, cc] = True
                    stack.append((rr, cc))
        sizes.append(size)
    return sizes


# --------------------------------------------------------------------------------------- I-JEPA


def _block_size(grid: int, scale: float, aspect: float) -> tuple[int, int]:
    keep = int(grid * grid * scale)
    h = int(round(math.sqrt(keep * aspect)))
    w = int(round(math.sqrt(keep / aspect)))
    return min(max(h, 1), grid - 1), min(max(w, 1), grid - 1)


def _uniform(lo_hi, device) -> float:
    lo, hi = lo_hi
    return lo + (hi - lo) * float(torch.rand((), device=device))


def _place(shape: tuple, h: int, w: int, grid: int, device) -> torch.Tensor:
    top = torch.randint(0, grid - h + 1, shape, device=device)
    left = torch.randint(0, grid - w + 1, shape, device=device)
    return _rects(top, left, h, w, grid)


def _sorted_true(mask: torch.Tensor, k: int, shuffle: bool = False) -> torch.Tensor:
    """Indices of ``k`` True entries of each row of (..., L) ``mask``, ascending (a random ``k`` of
    them when ``shuffle``; the first ``k`` otherwise)."""
    length = mask.shape[-1]
    key = (~mask).float() * 2
    key = key + (
        torch.rand(mask.shape, device=mask.device) if shuffle else torch.arange(length, device=mask.device) / length
    )
    return key.argsort(dim=-1)[..., :k].sort(dim=-1).values


def multiblock_masks(
    n: int,
    grid: int,
    num_targets: int = 4,
    target_scale=(0.15, 0.2),
    target_aspect=(0.75, 1.5),
    context_scale=(0.85, 1.0),
    context_aspect=(1.0, 1.0),
    min_keep: int = 0,
    device=None,
    tries: int = 20,
    max_redraws: int = 100,
) -> tuple[torch.Tensor, torch.Tensor]:
    """I-JEPA's masks for a batch of ``n`` images on a ``grid x grid`` token grid.

    Returns ``context`` (n, Kc) and ``targets`` (n, num_targets, Kt), LongTensors of row-major
    token indices, ascending within each block; no target token is in the context.
    """
    if grid < 2:
        raise ValueError("I-JEPA's blocks need a token grid of at least 2x2")
    length = grid * grid
    min_keep = min_keep or max(2, round(IJEPA_MIN_KEEP_FRACTION * length))
    th, tw = _block_size(grid, _uniform(target_scale, device), _uniform(target_aspect, device))
    ch, cw = _block_size(grid, _uniform(context_scale, device), _uniform(context_aspect, device))
    targets = torch.zeros(n, num_targets, grid, grid, dtype=torch.bool, device=device)
    context = torch.zeros(n, grid, grid, dtype=torch.bool, device=device)
    todo = torch.arange(n, device=device)
    for _ in range(max_redraws):
        m = todo.numel()
        blocks = _place((m, num_targets), th, tw, grid, device)  # (m, M, g, g)
        covered = blocks.any(dim=1)
        candidates = _place((m, tries), ch, cw, grid, device) & ~covered[:, None]  # (m, T, g, g)
        ok = candidates.flatten(2).sum(-1) >= min_keep  # (m, T)
        first = ok.float().argmax(dim=1)  # the first valid try
        found = ok.any(dim=1)
        targets[todo] = blocks
        context[todo] = candidates[torch.arange(m, device=device), first]
        todo = todo[~found]
        if todo.numel() == 0:
            break
    else:
        raise ValueError(
            f"I-JEPA masks: no context of {min_keep}+ tokens outside {num_targets} target "
            f"blocks of {th}x{tw} on a {grid}x{grid} grid; use fewer targets"
        )
    context = context.flatten(1)
    k = int(context.sum(1).min())
    return _sorted_true(context, k, shuffle=True), _sorted_true(targets.flatten(2), th * tw)
