"""Watching a run while it trains: the online probes, the kNN of the encoder and of the raw input,
and the collapse diagnostics on a fixed probe batch. Nothing here changes the training state."""

from __future__ import annotations

import torch

from .. import distributed
from ..evaluate.diagnostics import collapse_alarm, diagnose
from ..evaluate.features import extract_features, raw_features
from ..evaluate.knn import knn_top1
from ..evaluate.online import OnlineKNN, OnlineProbe


class OnlineEval(torch.nn.Module):
    """The online linear probe and kNN of a run (:mod:`selfsup.evaluate.online`), fed each step with
    the detached features of the first view (the method's ``"features"`` output) and the batch's
    labels, gathered over all ranks (so every rank's probe stays identical). They never touch the
    encoder's gradients."""

    def __init__(self, feature_dim: int, labels: torch.Tensor, num_classes: int, knn_size: int):
        super().__init__()
        self.probe = OnlineProbe(feature_dim, num_classes)
        self.knn = OnlineKNN(feature_dim, size=knn_size)
        self.register_buffer("labels", labels.long(), persistent=False)
        self.num_classes = num_classes

    def step(self, idx: torch.Tensor, features: torch.Tensor | None) -> None:
        """``features``: this rank's first-view encoder output (None: the method has none, as masked
        modelling, which never encodes whole views)."""
        if features is None:
            return
        h, y = features.detach().float(), self.labels[idx]
        if distributed.world_size() > 1:  # one gather: the labels ride along as a float32 column (exact < 2**24)
            both = distributed.gather_nograd(torch.cat([h, y[:, None].float()], dim=1))
            h, y = both[:, :-1].contiguous(), both[:, -1].long()
        self.knn.score(h, y, self.num_classes)  # scored against earlier batches, then stored
        self.probe.step(h, y)  # scored before its step

    def record(self) -> dict:
        out = {"online_linear_top1": self.probe.accuracy(), "online_knn_top1": self.knn.accuracy()}
        self.probe.reset_accuracy()
        self.knn.reset_accuracy()
        return {k: round(v, 4) for k, v in out.items() if v is not None}


def evaluate_knn(s, encoder: torch.nn.Module | None = None) -> float | None:
    """Weighted kNN top-1 (train split as memory, test split as queries), or None without class
    labels. Every rank encodes a share of the samples; rank 0 scores."""
    d = s.data
    if d.task != "classification" or d.test is None or d.test_labels is None:
        return None
    encoder = encoder or s.method.encoder
    kw = dict(batch_size=s.cfg.eval.batch_size, device=s.device, amp_dtype=s.amp_dtype, memory_format=s.memory_format)

    def features(samples):  # each rank encodes its share once; the features are gathered
        if not s.ctx.distributed:
            return extract_features(encoder, samples, s.views.eval_transform, **kw)
        rows = distributed.shard_rows(len(samples), s.ctx)
        local = extract_features(encoder, samples[rows], s.views.eval_transform, **kw)
        return distributed.unshard_rows(local.to(s.device), len(samples))

    train_f, test_f = features(d.train), features(d.test)
    if not s.ctx.main:
        return None
    e = s.cfg.eval
    return knn_top1(
        train_f,
        d.train_labels.to(s.device),
        test_f,
        d.test_labels,
        k=e.knn_k,
        temperature=e.knn_t,
        num_classes=d.num_classes,
    )


def raw_knn(s) -> float | None:
    """The same kNN on the modality's raw-input features: the floor a representation must beat.
    The features are computed chunk by chunk and are bounded per sample (images: at most 32 x 32
    pixels a channel), so a memory-mapped split is streamed, never read in whole."""
    d, e = s.data, s.cfg.eval
    if d.task != "classification" or d.test is None or d.test_labels is None:
        return None
    train, test = raw_features(s.modality, d.train), raw_features(s.modality, d.test)
    return knn_top1(
        train, d.train_labels, test, d.test_labels, k=e.knn_k, temperature=e.knn_t, num_classes=d.num_classes
    )


def probe_batch(s):
    """The fixed samples the diagnostics look at every time: a seeded sample of the training split,
    with their extras when it has any (as :class:`~selfsup.data.base.Rows`), on the training device.
    Only those rows are read: a memory-mapped split stays on disk."""
    n = min(s.cfg.eval.probe_size, len(s.data.train))
    keep = torch.randperm(len(s.data.train), generator=torch.Generator().manual_seed(s.cfg.seed))[:n]
    return s.data.rows("train")[keep].to(s.device)


def probe_labels(s) -> torch.Tensor | None:
    """The class labels of :func:`probe_batch`'s samples (the same seeded rows of the training
    split), on the training device; None when the data has no class labels."""
    d = s.data
    if d.task != "classification" or d.train_labels is None:
        return None
    n = min(s.cfg.eval.probe_size, len(d.train))
    keep = torch.randperm(len(d.train), generator=torch.Generator().manual_seed(s.cfg.seed))[:n]
    return d.train_labels[keep].to(s.device)


@torch.no_grad()
def diagnose_model(s, probe: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[dict, list[str]]:
    """Collapse diagnostics (RankMe, spectrum, alignment/uniformity, normalised std) of the backbone
    and the projector on the probe batch, in eval mode, and the alarm's reasons (empty if healthy).
    With class labels, also the tolerance (Wang & Liu 2021) beside the uniformity: ``labels`` are
    the probe samples' labels, by default :func:`probe_labels` (``probe`` is :func:`probe_batch`)."""
    method, cfg = s.method, s.cfg.eval
    labels = probe_labels(s) if labels is None else labels
    was_training = method.training
    method.eval()
    try:
        with s.autocast():
            x = s.model_input(s.views.eval_transform(probe))
            features = method.encoder(x).float()
            projection = method.projection(x)
            # Positive pairs: the method's first two views of the probe samples, from a fixed seed.
            views = s.views(probe, torch.Generator(s.device).manual_seed(s.cfg.seed))
            pair = (
                [method.projection(s.model_input(v)) for v in views[:2]]
                if len(views) >= 2 and projection is not None
                else [None, None]
            )
    finally:
        method.train(was_training)
    diag = diagnose(
        features,
        None if projection is None else projection.float(),
        *[None if p is None else p.float() for p in pair],
        spectrum=True,
        labels=labels,
    )
    reasons = collapse_alarm(diag, cfg.min_rank_fraction, cfg.min_std_ratio)
    diag["thresholds"] = {
        "rankme_fraction": cfg.min_rank_fraction,
        "proj_rankme_fraction": cfg.min_rank_fraction,
        "norm_std_ratio": cfg.min_std_ratio,
        "proj_norm_std_ratio": cfg.min_std_ratio,
    }
    return diag, reasons
