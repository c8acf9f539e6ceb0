"""Evaluation of a finished run folder from its exported encoder (``selfsup eval``).

Protocols, all on frozen features of the run's backbone (computed once per split and shared by
every protocol) and each next to the same protocol on raw pixels (flattened, scaled to [0, 1]):

* ``knn``: weighted kNN (Wu et al. 2018) with the run's ``eval.knn_k`` and ``eval.knn_t``, and a
  plain majority vote of the ``knn_k`` nearest neighbours (default 20);
* ``linear``: a logistic-regression probe, weight decay chosen on a held-out 10% of the training
  split (:mod:`.linear`);
* ``lowshot``: the same probe trained on class-balanced 1% and 10% of the training labels, three
  seeds, mean and std (:mod:`.lowshot`);
* ``cluster``: k-means with k = number of classes on L2-normalised features, NMI, ARI and
  Hungarian-matched accuracy (:mod:`.cluster`).

and one that trains the encoder: ``finetune``, end-to-end fine-tuning of a copy of the encoder
with a linear head, the epoch chosen on a held-out 10% of the training split (:mod:`.finetune`;
no raw-pixel baseline, and not part of ``all``, which names the frozen-feature protocols).

Every protocol trains on the training split and is scored on the test split; the test labels are
used for scoring only. The results are returned as a dict (headline numbers as flat keys such as
``linear_top1`` and ``linear_top1_raw_pixels``, settings and details under the protocol's name;
see :func:`evaluate_run`) and merged into the run's ``summary.json`` under
``"eval": {"<dataset>": {...}}``: the protocols run replace their earlier results, the others stay.

With ``cache_features=True`` the features are also kept in the run folder as
``features_<dataset>_<split>.pt`` (float32 on the CPU, with a fingerprint of the encoder file
and of the images); a later evaluation with the same encoder and data reads them instead of
running the encoder again, and recomputes (and overwrites) them when either changed.
"""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Iterable

import torch

from ..config import load_run_config
from ..data import load_dataset
from ..encoder import check_input, load_encoder, preprocess_fn
from ..errors import UsageError, unknown
from ..runs import RunFolder, atomic_torch_save
from ..augment.views import ViewConfig
from ..backbones import build_backbone
from .cluster import cluster_eval
from .features import extract_features, raw_pixel_features
from .finetune import FinetuneArgs, finetune, finetune_settings
from .knn import knn_top1
from .linear import linear_probe
from .lowshot import DEFAULT_FRACTIONS, DEFAULT_SEEDS, fraction_key, fraction_name, lowshot_probe

PROTOCOLS = {
    "knn": "weighted kNN (the run's k and T) and majority-vote kNN (--knn-k)",
    "linear": "linear probe, weight decay chosen on 10% of the training split",
    "lowshot": "linear probe on 1% and 10% of the labels, 3 seeds",
    "cluster": "k-means with k = classes: NMI, ARI, cluster accuracy",
    "finetune": "end-to-end fine-tuning with a linear head, epoch chosen on 10% of the training split",
}
FROZEN_PROTOCOLS = ("knn", "linear", "lowshot", "cluster")  # what "all" expands to
DEFAULT_MAJORITY_K = 20
_RUN_KEYS = ("run_dir", "method", "dataset", "protocols")


def parse_protocols(protocols: str | Iterable[str]) -> list[str]:
    """``"knn,linear"`` or ``["knn", "linear"]`` (or ``"all"``) as a checked, ordered list without repeats."""
    names = protocols.split(",") if isinstance(protocols, str) else list(protocols)
    out: list[str] = []
    for name in (n.strip() for n in names):
        if not name:
            continue
        expanded = list(FROZEN_PROTOCOLS) if name == "all" else [name]
        for p in expanded:
            if p not in PROTOCOLS:
                raise unknown("protocol", p, [*PROTOCOLS, "all"])
            if p not in out:
                out.append(p)
    if not out:
        raise UsageError(f"no protocol given; choose from: {', '.join(PROTOCOLS)}, all")
    return out


def evaluate_run(run_dir: str | Path, data: str | None = None, data_dir: str | None = None,
                 device: str = "auto", protocols: str | Iterable[str] = ("knn",), knn_k: int = DEFAULT_MAJORITY_K,
                 seed: int = 0, raw_pixels: bool = True, cache_features: bool = False,
                 write_summary: bool = True, lowshot_fractions=DEFAULT_FRACTIONS, lowshot_seeds=DEFAULT_SEEDS,
                 cluster_restarts: int | None = None, finetune_args: FinetuneArgs | dict | None = None) -> dict:
    """Run the evaluation ``protocols`` on the encoder of ``run_dir``; a JSON-ready dict.

    ``data`` picks another labelled data source (default: the run's own); ``knn_k`` is the k of
    the majority-vote kNN; ``cluster_restarts`` the number of seeded k-means runs (default 10,
    3 above 10M numbers, e.g. 60,000 x 512 features); ``seed`` seeds the held-out split, the
    low-shot subsets (``seed + i`` for the i-th of ``lowshot_seeds``) and k-means;
    ``raw_pixels=False`` skips the raw-pixel baselines; ``finetune_args`` (a :class:`FinetuneArgs`
    or its fields as a dict) sets the fine-tuning protocol; ``write_summary=False`` leaves the run
    folder alone. The result holds ``run_dir``, ``method``, ``dataset``, ``protocols``, ``data``
    (class count, split sizes, feature dimension), ``seconds`` per stage, and per protocol:

    * headline numbers as flat keys ``<protocol>_<measure>``, each with ``<...>_raw_pixels``
      for the baseline: ``knn_top1``, ``knn_majority_top1``; ``linear_top1``;
      ``lowshot_1pct_top1`` and ``lowshot_1pct_top1_std`` (likewise ``10pct``; mean and sample
      std over seeds); ``cluster_acc``, ``cluster_nmi``, ``cluster_ari``; ``finetune_top1``, with
      ``finetune_top1_random_init`` (the same fine-tuning from a fresh initialisation) as its
      baseline when ``finetune_args`` asks for it;
    * the settings and details under the protocol's name: ``knn`` (k, t, majority_k), ``linear``
      (chosen weight decay, hold-out top-1, the sweep), ``lowshot`` (subset sizes, per-seed
      top-1), ``cluster`` (k, restarts, inertia), ``finetune`` (settings, split sizes, hold-out
      top-1 per epoch, chosen epoch; ``random_init`` for the baseline).
    """
    from ..train import resolve_device
    protocols = parse_protocols(protocols)
    if knn_k < 1:
        raise UsageError(f"--knn-k must be at least 1, got {knn_k}")
    run = RunFolder(run_dir)
    cfg = load_run_config(run.require("config"))
    run.require("encoder")
    device = resolve_device(device)
    encoder = load_encoder(run.path, device)
    name = data or cfg.data.name
    dataset = load_dataset(name, data_dir=data_dir or (cfg.data.data_dir if data is None else None))
    _require_labels(dataset, protocols)
    check_input(dataset.train, encoder.input_spec, dataset.name)
    num_classes = dataset.num_classes
    seconds = {}

    frozen = any(p in FROZEN_PROTOCOLS for p in protocols)
    start = time.perf_counter()
    transform = preprocess_fn(encoder.input_spec)
    feats = {}
    for split, images in (("train", dataset.train), ("test", dataset.test)) if frozen else ():
        feats[split] = _features(run, encoder, images, transform, dataset.name, split, cfg.eval.batch_size, device,
                                 cache_features)
    if frozen:
        seconds["features"] = round(time.perf_counter() - start, 3)
    train_f, test_f = feats.get("train"), feats.get("test")
    train_y, test_y = dataset.train_labels.to(device), dataset.test_labels.to(device)
    pixels = None
    if raw_pixels and frozen:
        pixels = {split: (raw_pixel_features(images) / 255).to(device)
                  for split, images in (("train", dataset.train), ("test", dataset.test))}

    result: dict = {"run_dir": str(run.path), "method": cfg.method, "dataset": dataset.name, "protocols": protocols,
                    "data": {"num_classes": num_classes, "n_train": len(dataset.train), "n_test": len(dataset.test),
                             "feature_dim": encoder.feature_dim}}

    def headline(key: str, value: float, baseline: float | None) -> None:
        result[key] = value
        if baseline is not None:
            result[f"{key}_raw_pixels"] = baseline

    for protocol in protocols:
        start = time.perf_counter()
        if protocol == "knn":
            weighted = dict(k=cfg.eval.knn_k, temperature=cfg.eval.knn_t, num_classes=num_classes)
            majority = dict(k=knn_k, weighted=False, num_classes=num_classes)
            for key, kw in (("knn_top1", weighted), ("knn_majority_top1", majority)):
                headline(key, knn_top1(train_f, train_y, test_f, test_y, **kw),
                         knn_top1(pixels["train"], train_y, pixels["test"], test_y, **kw) if pixels else None)
            result["knn"] = {"k": cfg.eval.knn_k, "t": cfg.eval.knn_t, "majority_k": knn_k}
        elif protocol == "linear":
            res = linear_probe(train_f, train_y, test_f, test_y, num_classes, seed=seed)
            raw = linear_probe(pixels["train"], train_y, pixels["test"], test_y, num_classes, seed=seed) \
                if pixels else None
            headline("linear_top1", res.pop("top1"), raw and raw.pop("top1"))
            if raw:
                res["raw_pixels"] = {k: raw[k] for k in ("weight_decay", "val_top1", "train_top1", "seconds")}
            result["linear"] = res
        elif protocol == "lowshot":
            seeds = [seed + s for s in lowshot_seeds]
            res = lowshot_probe(train_f, train_y, test_f, test_y, num_classes, lowshot_fractions, seeds)
            raw = lowshot_probe(pixels["train"], train_y, pixels["test"], test_y, num_classes,
                                lowshot_fractions, seeds) if pixels else None
            details = {"weight_decay": res["weight_decay"], "seeds": seeds}
            for f in lowshot_fractions:
                name, key = fraction_name(f), f"lowshot_{fraction_key(f)}_top1"
                mine, base = res[name], raw[name] if raw else None
                headline(key, mine["mean"], base and base["mean"])
                headline(f"{key}_std", mine["std"], base and base["std"])
                details[name] = {"n": mine["n"], "top1": mine["top1"]}
                if base:
                    details[name]["top1_raw_pixels"] = base["top1"]
            details["seconds"] = round(res["seconds"] + (raw["seconds"] if raw else 0), 3)
            result["lowshot"] = details
        elif protocol == "cluster":
            res = cluster_eval(train_f, test_f, test_y, num_classes, n_init=_restarts(cluster_restarts, train_f),
                               seed=seed)
            raw = cluster_eval(pixels["train"], pixels["test"], test_y, num_classes,
                               n_init=_restarts(cluster_restarts, pixels["train"]), seed=seed) if pixels else None
            for measure in ("acc", "nmi", "ari"):
                headline(f"cluster_{measure}", res.pop(measure), raw and raw[measure])
            result["cluster"] = res
        elif protocol == "finetune":
            ft = finetune_args if isinstance(finetune_args, FinetuneArgs) else finetune_settings(finetune_args)
            views = cfg.view_configs()
            first = views[0] if views else ViewConfig()  # crop and flip of the run's first view
            def tune(model):
                return finetune(model, dataset.train, dataset.train_labels, dataset.test, dataset.test_labels,
                                num_classes, encoder.input_spec, ft.crop_scale or first.crop_scale, first.flip_p,
                                device, seed, ft)
            res = tune(encoder)
            headline("finetune_top1", res.pop("top1"), None)
            if ft.random_init_baseline:  # the same architecture, freshly initialised: training from scratch
                torch.manual_seed(seed)
                base = tune(build_backbone(**encoder.backbone_spec).to(device))
                result["finetune_top1_random_init"] = base.pop("top1")
                res["random_init"] = {k: base[k] for k in ("val_top1", "best_epoch", "val_history", "seconds")}
            result["finetune"] = res
        seconds[protocol] = round(time.perf_counter() - start, 3)
    result["seconds"] = seconds

    if write_summary:
        entry = {k: v for k, v in result.items() if k not in _RUN_KEYS}
        entry.pop("seconds")
        previous = run.read_summary().get("eval", {})
        previous = previous if isinstance(previous, dict) else {}
        # Results of the protocols run now replace their earlier ones (all their keys, so that a
        # baseline left out this time does not linger); other protocols' results stay.
        kept = {k: v for k, v in (previous.get(dataset.name) or {}).items()
                if not any(k == p or k.startswith(f"{p}_") for p in protocols)}
        try:
            run.update_summary(eval={**previous, dataset.name: {**kept, **entry}})
        except OSError as e:
            raise UsageError(f"cannot write {run.summary} ({e.strerror}); evaluate a writable copy of the run "
                             "folder, or from Python pass write_summary=False") from None
    return result


def _restarts(given: int | None, x: torch.Tensor) -> int:
    """k-means restarts: as given, else 10, or 3 for large inputs (more than 10M numbers)."""
    return given if given is not None else (10 if x.numel() <= 10_000_000 else 3)


def _require_labels(dataset, protocols: list[str]) -> None:
    missing = ("no labels" if dataset.train_labels is None else "no test split" if dataset.test is None
               else "no test labels" if dataset.test_labels is None else None)
    if missing:
        raise UsageError(f"{dataset.name} has {missing}; the {', '.join(protocols)} protocol"
                         f"{'s need' if len(protocols) > 1 else ' needs'} labelled train and test splits "
                         "(give a labelled dataset with --data)")


def _cache_path(run: RunFolder, dataset: str, split: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", dataset).strip("_")[-80:] or "data"
    return run.path / f"features_{safe}_{split}.pt"


def _fingerprint(run: RunFolder, images: torch.Tensor, dataset: str) -> dict:
    st = run.encoder.stat()
    flat = images.reshape(-1)
    step = max(1, len(flat) // 1_000_000)  # a strided sample of the pixels: cheap, and catches changed data
    return {"encoder_size": st.st_size, "encoder_mtime_ns": st.st_mtime_ns, "dataset": dataset,
            "shape": list(images.shape), "pixel_sum": int(flat[::step].sum(dtype=torch.int64))}


def _features(run: RunFolder, encoder, images, transform, dataset: str, split: str, batch_size: int, device,
              cache: bool) -> torch.Tensor:
    if not cache:
        return extract_features(encoder, images, transform, batch_size=batch_size, device=device)
    path = _cache_path(run, dataset, split)
    key = _fingerprint(run, images, dataset)
    if path.is_file():
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            if blob.get("key") == key:
                return blob["features"].to(device)
        except Exception:  # an unreadable cache is recomputed
            pass
    features = extract_features(encoder, images, transform, batch_size=batch_size, device=device)
    atomic_torch_save({"key": key, "features": features.cpu()}, path)
    return features
