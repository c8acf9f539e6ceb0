"""Evaluation of a finished run folder from its exported encoder (``selfsup eval``).

The protocols are registry entries (:mod:`.protocols`: ``knn``, ``linear``, ``lowshot``,
``cluster`` on frozen features, ``finetune`` end to end). The frozen ones share the encoder's
features of each split (computed once) and, beside every number, the same protocol on the
modality's raw-input features (flattened pixels in [0, 1] for images). Every protocol trains on
the training split and is scored on the test split; the test labels are used for scoring only.

The results are returned as a dict (headline numbers as flat keys such as ``linear_top1`` and
``linear_top1_raw``, settings and details under the protocol's name) and merged into the run's
``summary.json`` under ``"eval": {"<dataset>": {...}}``: the protocols run replace their earlier
results, the others stay.

With ``cache_features=True`` the features are also kept in the run folder as
``features_<dataset>_<split>.pt`` (float32 on the CPU, with a fingerprint of the encoder file
and of the data); a later evaluation with the same encoder and data reads them instead of
running the encoder again, and recomputes (and overwrites) them when either changed.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import load_run_config
from ..data.sources import load_dataset
from ..device import resolve_device
from ..encoder import load_encoder, preprocess_fn
from ..errors import UsageError
from ..modalities import get_modality
from ..runs import RunFolder, atomic_torch_save
from .features import extract_features, raw_features
from .finetune import FinetuneArgs
from .lowshot import DEFAULT_FRACTIONS, DEFAULT_SEEDS
from .protocols import PROTOCOLS, EvalContext, parse_protocols
from .protocols.knn import DEFAULT_MAJORITY_K

_RUN_KEYS = ("run_dir", "method", "dataset", "protocols", "raw_name")


@dataclass
class RunInputs:
    """What the protocols that train the encoder need beyond features."""

    dataset: Any
    encoder: torch.nn.Module
    modality: Any
    device: torch.device
    run_dir: Path | None = None  # the run folder (the layers protocol rebuilds the method from its checkpoint)


def evaluate_run(
    run_dir: str | Path,
    data: str | None = None,
    data_dir: str | None = None,
    device: str = "auto",
    protocols: str | Iterable[str] = ("knn",),
    knn_k: int = DEFAULT_MAJORITY_K,
    seed: int = 0,
    raw: bool = True,
    cache_features: bool = False,
    write_summary: bool = True,
    lowshot_fractions=DEFAULT_FRACTIONS,
    lowshot_seeds=DEFAULT_SEEDS,
    cluster_restarts: int | None = None,
    finetune_args: FinetuneArgs | dict | None = None,
    mlp_search: bool = False,
    pool: str | None = None,
) -> dict:
    """Run the evaluation ``protocols`` on the encoder of ``run_dir``; a JSON-ready dict.

    ``data`` picks another labelled data source (default: the run's own); ``knn_k`` is the k of
    the majority-vote kNN; ``cluster_restarts`` the number of seeded k-means runs (default 10,
    3 above 10M numbers); ``seed`` seeds the held-out split, the low-shot subsets (``seed + i``
    for the i-th of ``lowshot_seeds``) and k-means; ``raw=False`` skips the raw-input baselines;
    ``finetune_args`` (a :class:`FinetuneArgs` or its fields as a dict) sets the fine-tuning
    protocol; ``mlp_search`` tunes the ``mlp`` protocol's learning rate, dropout and width for the
    features and for the raw input separately, on a validation split of the training rows; ``pool``
    reads an encoder with a pooling choice (``tstcc-cnn``: flatten, mean, max) out another way than it
    was trained with, its results kept in the summary under ``"<dataset> (pool=<pool>)"``;
    ``write_summary=False`` leaves the run folder alone. The result holds ``run_dir``,
    ``method``, ``dataset``, ``protocols``, ``raw_name`` (what the baseline is), ``data`` (class
    count, split sizes, feature dimension), ``seconds`` per stage, and each protocol's part (see
    :mod:`.protocols`).
    """
    protocols = parse_protocols(protocols)
    if knn_k < 1:
        raise UsageError(f"--knn-k must be at least 1, got {knn_k}")
    run = RunFolder(run_dir)
    cfg = load_run_config(run.require("config"))
    run.require("encoder")
    device = resolve_device(device)
    encoder = load_encoder(run.path, device)
    if pool is not None:
        if not hasattr(encoder, "set_pool"):
            name = (getattr(encoder, "backbone_spec", None) or {}).get("name", type(encoder).__name__)
            raise UsageError(f"--pool applies to encoders with a pooling choice (tstcc-cnn); {name} has none")
        encoder.set_pool(pool)
    modality = get_modality(encoder.modality)
    name = data or cfg.data.name
    options = dict(cfg.data.options) if data is None else {}
    if data is None and cfg.data.target is not None:
        options["target"] = cfg.data.target
    dataset = load_dataset(
        name,
        data_dir=data_dir or (cfg.data.data_dir if data is None else None),
        options=options,
        input_spec=encoder.input_spec,
    )
    if dataset.modality != modality.name:
        raise UsageError(f"{dataset.name} holds {dataset.modality} data but the encoder takes {modality.name} data")
    _require_labels(dataset, protocols)
    modality.check_input(dataset, encoder.input_spec)
    seconds = {}

    frozen = any(PROTOCOLS[p].frozen for p in protocols)
    readout_name = dataset.name if pool is None else f"{dataset.name} (pool={pool})"  # cache and summary key
    start = time.perf_counter()
    transform = preprocess_fn(encoder)
    feats = {}
    for split, samples in (("train", dataset.train), ("test", dataset.test)) if frozen else ():
        feats[split] = _features(
            run, encoder, samples, transform, readout_name, split, cfg.eval.batch_size, device, cache_features
        )
    if frozen:
        seconds["features"] = round(time.perf_counter() - start, 3)
    baseline = None
    if raw and frozen:
        baseline = {
            split: raw_features(modality, samples).to(device)
            for split, samples in (("train", dataset.train), ("test", dataset.test))
        }
    labels = {"train": dataset.train_labels.to(device), "test": dataset.test_labels.to(device)}
    settings = {
        "knn_k": knn_k,
        "lowshot_fractions": lowshot_fractions,
        "lowshot_seeds": lowshot_seeds,
        "cluster_restarts": cluster_restarts,
        "finetune": finetune_args,
        "mlp": {"search": mlp_search},
    }
    ctx = EvalContext(
        feats,
        baseline,
        labels,
        dataset.num_classes,
        seed,
        cfg,
        settings,
        RunInputs(dataset, encoder, modality, device, run.path),
    )

    result: dict = {
        "run_dir": str(run.path),
        "method": cfg.method,
        "dataset": dataset.name,
        "protocols": protocols,
        "raw_name": modality.raw_name,
        "data": {
            "num_classes": dataset.num_classes,
            "n_train": len(dataset.train),
            "n_test": len(dataset.test),
            "feature_dim": encoder.feature_dim,
        },
        **({"pool": pool} if pool is not None else {}),
    }
    for protocol in protocols:
        start = time.perf_counter()
        result.update(PROTOCOLS[protocol].run(ctx))
        seconds[protocol] = round(time.perf_counter() - start, 3)
    result["seconds"] = seconds

    if write_summary:
        _merge_into_summary(run, readout_name, protocols, result)
    return result


def _merge_into_summary(run: RunFolder, dataset: str, protocols: list[str], result: dict) -> None:
    entry = {k: v for k, v in result.items() if k not in _RUN_KEYS}
    entry.pop("seconds")
    previous = run.read_summary().get("eval", {})
    previous = previous if isinstance(previous, dict) else {}
    # Results of the protocols run now replace their earlier ones (all their keys, so that a
    # baseline left out this time does not linger); other protocols' results stay.
    kept = {
        k: v
        for k, v in (previous.get(dataset) or {}).items()
        if not any(k == p or k.startswith(f"{p}_") for p in protocols)
    }
    try:
        run.update_summary(eval={**previous, dataset: {**kept, **entry}})
    except OSError as e:
        raise UsageError(
            f"cannot write {run.summary} ({e.strerror}); evaluate a writable copy of the run "
            "folder, or from Python pass write_summary=False"
        ) from None


def _require_labels(dataset, protocols: list[str]) -> None:
    missing = (
        "no labels"
        if dataset.train_labels is None
        else "no test split"
        if dataset.test is None
        else "no test labels"
        if dataset.test_labels is None
        else None
    )
    if missing:
        raise UsageError(
            f"{dataset.name} has {missing}; the {', '.join(protocols)} protocol"
            f"{'s need' if len(protocols) > 1 else ' needs'} labelled train and test splits "
            "(give a labelled dataset with --data)"
        )
    for p in protocols:
        if dataset.task not in PROTOCOLS[p].tasks:
            fitting = [n for n, q in PROTOCOLS.items() if dataset.task in q.tasks]
            raise UsageError(
                f"the {p} protocol does not take {dataset.task} targets; protocols for {dataset.name}: "
                + ", ".join(fitting)
            )


def _cache_path(run: RunFolder, dataset: str, split: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", dataset).strip("_")[-80:] or "data"
    return run.path / f"features_{safe}_{split}.pt"


def _fingerprint(run: RunFolder, samples: torch.Tensor, dataset: str) -> dict:
    st = run.encoder.stat()
    flat = samples.reshape(-1)
    step = max(1, len(flat) // 1_000_000)  # a strided sample of the values: cheap, and catches changed data
    part = flat[::step]
    total = part.sum(dtype=torch.int64) if not part.is_floating_point() else part.double().nansum()
    return {
        "encoder_size": st.st_size,
        "encoder_mtime_ns": st.st_mtime_ns,
        "dataset": dataset,
        "shape": list(samples.shape),
        "pixel_sum": total.item(),
    }


def _features(
    run: RunFolder, encoder, samples, transform, dataset: str, split: str, batch_size: int, device, cache: bool
) -> torch.Tensor:
    if not cache:
        return extract_features(encoder, samples, transform, batch_size=batch_size, device=device)
    path = _cache_path(run, dataset, split)
    key = _fingerprint(run, samples, dataset)
    if path.is_file():
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            if blob.get("key") == key:
                return blob["features"].to(device)
        except Exception:  # an unreadable cache is recomputed
            pass
    features = extract_features(encoder, samples, transform, batch_size=batch_size, device=device)
    atomic_torch_save({"key": key, "features": features.cpu()}, path)
    return features
