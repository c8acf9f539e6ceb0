"""Putting a run's embeddings to work: nearest neighbours, near-duplicates, a diverse subset.

* :func:`nearest_neighbors`: the ``k`` training items most similar to each query (test items or
  files), by cosine similarity of the encoder's features (the kNN evaluation's measure);
* :func:`duplicates`: every pair of items whose cosine similarity is at least a threshold;
* :func:`k_center`: a diverse subset, greedy k-center on the embeddings: Sener & Savarese 2018
  (ICLR, "Active Learning for Convolutional Neural Networks: A Core-Set Approach", Alg. 1): start
  from a seeded random item (or the items given), then repeatedly add the item farthest from the
  chosen ones, ``u = argmax_i min_{j in s} d(x_i, x_j)``; the result covers every item within the
  printed radius (a 2-approximation of the best ``k``-center cover). The distance is Euclidean
  between L2-normalised embeddings (``sqrt(2 - 2 cos)``: the cosine geometry of the other two).

All three are exact (no approximate index) and chunked: the features live on the device and the
similarity matrix is only ever formed one block of ``chunk x chunk`` at a time, so memory is the
features plus one block. ``selfsup neighbors|duplicates|select`` write CSV files that name items by
file when the data source records the files (``Dataset.meta["files"][split]``: a list of names, one
per sample; folder data), else by index in their split.
"""

from __future__ import annotations

import csv
import re
import shutil
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

from .data.sources import load_dataset
from .device import resolve_device
from .encoder import load_encoder, preprocess_fn
from .errors import UsageError
from .evaluate.features import extract_features
from .loggers import thumbnails
from .modalities import get_modality

CHUNK = 4096  # rows and columns of one similarity block
__all__ = ["duplicates", "k_center", "nearest_neighbors", "select_diverse", "thumbnails"]


# ------------------------------------------------------------------------------------ algorithms


@torch.no_grad()
def nearest_neighbors(
    queries: torch.Tensor, memory: torch.Tensor, k: int, chunk: int = CHUNK
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(similarity, index)``, each ``(Q, k)``: the ``k`` rows of ``memory`` with the highest cosine
    similarity to each row of ``queries``, most similar first (exact, block by block)."""
    if k < 1:
        raise UsageError(f"k must be at least 1, got {k}")
    k = min(k, len(memory))
    q, m = F.normalize(queries.float(), dim=1), F.normalize(memory.float(), dim=1)
    sims, idx = [], []
    for a in range(0, len(q), chunk):
        block_q = q[a : a + chunk]
        best_s = torch.full((len(block_q), 0), float("-inf"), device=q.device)
        best_i = torch.zeros((len(block_q), 0), dtype=torch.long, device=q.device)
        for b in range(0, len(m), chunk):
            s = block_q @ m[b : b + chunk].T
            top_s, top_i = s.topk(min(k, s.shape[1]), dim=1)
            both_s, both_i = torch.cat([best_s, top_s], 1), torch.cat([best_i, top_i + b], 1)
            keep = both_s.topk(min(k, both_s.shape[1]), dim=1).indices
            best_s, best_i = both_s.gather(1, keep), both_i.gather(1, keep)
        sims.append(best_s)
        idx.append(best_i)
    return torch.cat(sims), torch.cat(idx)


@torch.no_grad()
def duplicates(
    features: torch.Tensor, threshold: float, chunk: int = CHUNK, max_pairs: int = 1_000_000
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]:
    """``(i, j, similarity, truncated)``: every pair ``i < j`` of rows whose cosine similarity is at
    least ``threshold``, most similar first; at most ``max_pairs`` (``truncated`` says when more
    were found: raise the threshold)."""
    if not -1.0 <= threshold <= 1.0:
        raise UsageError(f"the threshold is a cosine similarity in [-1, 1], got {threshold}")
    x = F.normalize(features.float(), dim=1)
    found_i, found_j, found_s, count, total = [], [], [], 0, 0
    for a in range(0, len(x), chunk):
        rows = torch.arange(a, min(a + chunk, len(x)), device=x.device)
        for b in range(a, len(x), chunk):  # the upper triangle only
            s = x[a : a + chunk] @ x[b : b + chunk].T
            cols = torch.arange(b, b + s.shape[1], device=x.device)
            hit = (s >= threshold) & (cols[None, :] > rows[:, None])
            r, c = hit.nonzero(as_tuple=True)
            if len(r):
                found_i.append(rows[r])
                found_j.append(cols[c])
                found_s.append(s[r, c])
                count += len(r)
                total += len(r)
        if count > 4 * max_pairs:  # keep memory bounded; the most similar are kept below
            i, j, s = _top_pairs(found_i, found_j, found_s, max_pairs)
            found_i, found_j, found_s, count = [i], [j], [s], len(i)
    if not found_i:
        empty = torch.zeros(0, dtype=torch.long)
        return empty, empty, torch.zeros(0), False
    i, j, s = _top_pairs(found_i, found_j, found_s, max_pairs)
    return i.cpu(), j.cpu(), s.cpu(), total > max_pairs


def _top_pairs(found_i, found_j, found_s, n):
    i, j, s = torch.cat(found_i), torch.cat(found_j), torch.cat(found_s)
    order = torch.argsort(s, descending=True, stable=True)[:n]
    return i[order], j[order], s[order]


@torch.no_grad()
def k_center(
    features: torch.Tensor, n: int, seed: int = 0, initial: list[int] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(chosen, radius)``: the indices of ``n`` rows chosen by greedy k-center (in the order they
    were chosen; ``initial`` first, else one seeded random row), and after each choice the largest
    distance from any row to its nearest chosen row (the cover's radius)."""
    total = len(features)
    if not 1 <= n <= total:
        raise UsageError(f"cannot select {n} of {total} items; choose --n between 1 and {total}")
    x = F.normalize(features.float(), dim=1)
    start = list(initial or [])
    if not start:
        start = [int(torch.randint(total, (1,), generator=torch.Generator().manual_seed(seed)))]
    if any(not 0 <= i < total for i in start) or len(set(start)) != len(start) or len(start) > n:
        raise UsageError(f"the initial items must be {min(n, total)} or fewer distinct indices below {total}")
    nearest = torch.full((total,), float("inf"), device=x.device)
    chosen, radius = [], []

    def add(c: int) -> None:
        d = (2 - 2 * (x @ x[c])).clamp_(min=0).sqrt_()
        torch.minimum(nearest, d, out=nearest)
        nearest[c] = 0.0
        chosen.append(c)
        radius.append(nearest.max())

    for c in start:
        add(c)
    while len(chosen) < n:
        add(int(nearest.argmax()))
    return torch.tensor(chosen), torch.stack(radius).cpu()


def select_diverse(features: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """The indices of a diverse subset of ``n`` rows (greedy k-center), in the order chosen."""
    return k_center(features, n, seed)[0]


# --------------------------------------------------------------------------------- run features


def item_names(dataset, split: str) -> list[str] | None:
    """The file names of ``split``'s samples when the source records them (``meta["files"]``)."""
    files = (dataset.meta or {}).get("files")
    names = files.get(split) if isinstance(files, dict) else (files if split == "train" else None)
    if callable(names):  # a prepared store reads its file list from disk only when asked
        names = names()
    if names is None or len(names) != len(getattr(dataset, split)):
        return None
    return [str(n) for n in names]


class Embedded:
    """A run's encoder features of one split of a dataset, with the items' names (files or indices)."""

    def __init__(self, features: torch.Tensor, names: list[str] | None, split: str, dataset):
        self.features, self.split, self.dataset = features, split, dataset
        self.has_files = names is not None
        self.names = names if names is not None else [str(i) for i in range(len(features))]


def _encoder_and_data(run_dir, data: str, data_dir, device):
    encoder = load_encoder(run_dir, device)
    dataset = load_dataset(data, data_dir=data_dir, input_spec=encoder.input_spec)
    modality = get_modality(encoder.modality)
    if dataset.modality != modality.name:
        raise UsageError(f"{dataset.name} holds {dataset.modality} data but the encoder takes {modality.name} data")
    modality.check_input(dataset, encoder.input_spec)
    return encoder, dataset


def _split(encoder, dataset, split: str, device, batch_size: int) -> Embedded:
    samples = dataset.rows(split) if hasattr(dataset, "rows") else getattr(dataset, split)
    if samples is None:
        raise UsageError(f"{dataset.name} has no {split} split")
    features = extract_features(encoder, samples, preprocess_fn(encoder), batch_size, device)
    return Embedded(features, item_names(dataset, split), split, dataset)


def embed_split(
    run_dir, data: str, split: str = "train", data_dir=None, device="auto", batch_size: int = 1024
) -> Embedded:
    """The run's features of ``data``'s ``split`` (on the device), with the items' names."""
    device = resolve_device(device)
    encoder, dataset = _encoder_and_data(run_dir, data, data_dir, device)
    return _split(encoder, dataset, split, device, batch_size)


_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


def parse_queries(items: list[str]) -> tuple[list[int], list[Path]]:
    """``--query`` items: indices and ranges (``3``, ``10-12``, comma-separated) and paths of image
    files or folders (a file named like a number is written ``./3``)."""
    indices, paths = [], []
    for item in items:
        parts = [item] if Path(item).exists() else [p for p in item.split(",") if p]  # a path may hold commas
        for part in parts:
            match = _RANGE.match(part)
            if match:
                lo, hi = int(match[1]), int(match[2] or match[1])
                if hi < lo:
                    raise UsageError(f"--query range {part} runs backwards")
                indices.extend(range(lo, hi + 1))
            elif Path(part).exists():
                paths.append(Path(part))
            else:
                raise UsageError(f"--query {part}: neither an item index (like 3 or 10-12) nor an existing file")
    if paths and indices:
        raise UsageError("--query takes item indices or files, not both at once")
    return indices, paths


def _embed_files(encoder, paths: list[Path], device, batch_size: int) -> Embedded:
    """Features of image files and folders, read through the ``folder:`` source (files are linked
    into a temporary folder, in the order given; folders are read as they are)."""
    tmp = Path(tempfile.mkdtemp(prefix="selfsup-query-"))
    store = Path(tempfile.mkdtemp(prefix="selfsup-query-store-"))
    try:
        features, names = [], []
        files = [p for p in paths if p.is_file()]
        folders = [p for p in paths if p.is_dir()]
        for i, p in enumerate(files):
            (tmp / f"{i:07d}{p.suffix.lower()}").symlink_to(p.resolve())
        sources = ([(tmp, [str(p) for p in files])] if files else []) + [(d, None) for d in folders]
        for folder, given in sources:
            options = {"store": str(store / str(len(names))), "workers": 1, "progress": False}
            dataset = load_dataset(f"folder:{folder}", input_spec=encoder.input_spec, options=options)
            get_modality(encoder.modality).check_input(dataset, encoder.input_spec)
            part = _split(encoder, dataset, "train", device, batch_size)
            if given is not None and len(part.features) != len(given):
                raise UsageError(f"of {len(given)} query files only {len(part.features)} could be read as images")
            base = Path(folder).resolve()
            features.append(part.features)
            names += given if given is not None else [str(base / n) for n in part.names]
        return Embedded(torch.cat(features), names, "files", None)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(store, ignore_errors=True)


def _write_csv(path: Path, header: list[str], rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(header)
        out.writerows(rows)
    return path


def neighbors_csv(
    run_dir,
    data: str,
    out: str | Path,
    split: str = "test",
    k: int = 10,
    query: list[str] | None = None,
    data_dir=None,
    device="auto",
    batch_size: int = 1024,
) -> dict:
    """``selfsup neighbors``: the ``k`` nearest training items of each query (``split``'s items, the
    ones ``query`` picks, or files), written to ``out`` as CSV: query_index, query, rank,
    neighbor_index, neighbor, similarity."""
    device = resolve_device(device)
    encoder, dataset = _encoder_and_data(run_dir, data, data_dir, device)
    memory = _split(encoder, dataset, "train", device, batch_size)
    indices, paths = parse_queries(query or [])
    if paths:
        queries = _embed_files(encoder, paths, device, batch_size)
        indices = list(range(len(queries.features)))
    else:
        queries = _split(encoder, dataset, split, device, batch_size)
        bad = [i for i in indices if i >= len(queries.features)]
        if bad:
            raise UsageError(f"--query {bad[0]}: the {split} split has {len(queries.features)} items")
        if indices:
            queries.features = queries.features[torch.tensor(indices, device=queries.features.device)]
            queries.names = [queries.names[i] for i in indices]
        else:
            indices = list(range(len(queries.features)))
    sims, idx = nearest_neighbors(queries.features, memory.features, k)
    sims, idx = sims.cpu(), idx.cpu()
    rows = []
    for q in range(len(sims)):
        for rank in range(sims.shape[1]):
            j = int(idx[q, rank])
            rows.append([indices[q], queries.names[q], rank + 1, j, memory.names[j], f"{float(sims[q, rank]):.6f}"])
    header = ["query_index", "query", "rank", "neighbor_index", "neighbor", "similarity"]
    path = _write_csv(Path(out), header, rows)
    return {"path": path, "queries": len(sims), "k": sims.shape[1], "memory": len(memory.features)}


def duplicates_csv(
    run_dir,
    data: str,
    out: str | Path,
    threshold: float,
    split: str = "train",
    data_dir=None,
    device="auto",
    batch_size: int = 1024,
    max_pairs: int = 1_000_000,
) -> dict:
    """``selfsup duplicates``: pairs of items of ``split`` (``all``: train and test together, to find
    test items that are in the training set) with cosine similarity >= ``threshold``, written to
    ``out`` as CSV: a_index, a, b_index, b, similarity (``a`` and ``b`` prefixed by their split for ``all``)."""
    device = resolve_device(device)
    encoder, dataset = _encoder_and_data(run_dir, data, data_dir, device)
    splits = ["train", "test"] if split == "all" else [split]
    parts = [_split(encoder, dataset, s, device, batch_size) for s in splits if getattr(dataset, s) is not None]
    if not parts:
        raise UsageError(f"{dataset.name} has no {split} split")
    names = [f"{p.split}:{n}" if split == "all" else n for p in parts for n in p.names]
    features = torch.cat([p.features for p in parts])
    i, j, s, truncated = duplicates(features, threshold, max_pairs=max_pairs)
    rows = [[int(a), names[a], int(b), names[b], f"{float(v):.6f}"] for a, b, v in zip(i.tolist(), j.tolist(), s)]
    path = _write_csv(Path(out), ["a_index", "a", "b_index", "b", "similarity"], rows)
    return {"path": path, "pairs": len(rows), "items": len(features), "truncated": truncated}


def select_csv(
    run_dir,
    data: str,
    out: str | Path,
    n: int,
    split: str = "train",
    seed: int = 0,
    data_dir=None,
    device="auto",
    batch_size: int = 1024,
) -> dict:
    """``selfsup select``: ``n`` diverse items of ``split`` by greedy k-center, written to ``out`` as
    CSV in the order chosen: order, index, item, radius (the cover's radius after that choice)."""
    device = resolve_device(device)
    encoder, dataset = _encoder_and_data(run_dir, data, data_dir, device)
    available = len(getattr(dataset, split)) if getattr(dataset, split) is not None else 0
    if not 1 <= n <= available:  # before any feature is computed
        raise UsageError(f"cannot select {n} of {available} items; choose --n between 1 and {available}")
    embedded = _split(encoder, dataset, split, device, batch_size)
    chosen, radius = k_center(embedded.features, n, seed)
    rows = [[r + 1, int(c), embedded.names[int(c)], f"{float(radius[r]):.6f}"] for r, c in enumerate(chosen.tolist())]
    path = _write_csv(Path(out), ["order", "index", "item", "radius"], rows)
    return {"path": path, "selected": len(rows), "items": len(embedded.features), "radius": float(radius[-1])}
