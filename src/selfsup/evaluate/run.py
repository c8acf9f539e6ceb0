"""Evaluation of a finished run folder from its exported encoder (``selfsup eval``)."""
from __future__ import annotations

from pathlib import Path

from ..config import load_run_config
from ..data import load_dataset
from ..encoder import check_input, load_encoder, preprocess_fn
from ..errors import UsageError
from ..runs import RunFolder
from .features import extract_features, raw_pixel_features
from .knn import knn_top1


def evaluate_run(run_dir: str | Path, data: str | None = None, data_dir: str | None = None,
                 device: str = "auto") -> dict:
    from ..train import resolve_device
    run = RunFolder(run_dir)
    cfg = load_run_config(run.require("config"))
    device = resolve_device(device)
    encoder = load_encoder(run.path, device)
    name = data or cfg.data.name
    dataset = load_dataset(name, data_dir=data_dir or (cfg.data.data_dir if data is None else None))
    if dataset.train_labels is None or dataset.test is None or dataset.test_labels is None:
        raise UsageError(f"{dataset.name} has no labelled train and test splits; kNN evaluation needs both "
                         "(give a labelled dataset with --data)")
    check_input(dataset.train, encoder.input_spec, dataset.name)
    transform = preprocess_fn(encoder.input_spec)
    kw = dict(batch_size=cfg.eval.batch_size, device=device)
    train_f = extract_features(encoder, dataset.train, transform, **kw)
    test_f = extract_features(encoder, dataset.test, transform, **kw)
    knn_kw = dict(k=cfg.eval.knn_k, temperature=cfg.eval.knn_t, num_classes=dataset.num_classes)
    return {
        "run_dir": str(run.path), "method": cfg.method, "dataset": dataset.name, "k": cfg.eval.knn_k,
        "t": cfg.eval.knn_t,
        "knn_top1": knn_top1(train_f, dataset.train_labels.to(device), test_f, dataset.test_labels, **knn_kw),
        "knn_top1_raw_pixels": knn_top1(raw_pixel_features(dataset.train), dataset.train_labels,
                                        raw_pixel_features(dataset.test), dataset.test_labels, **knn_kw),
    }
