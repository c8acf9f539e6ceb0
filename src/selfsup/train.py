"""The one training loop, for every method and every device.

Per step: take a uint8 batch (already on the device), make the method's views with batched
per-sample augmentation, ``loss = method(views)["loss"]``, optimiser step, ``method.after_step``.
Nothing in a step waits for the host: losses are accumulated on the device and read once every
``train.log_every`` steps and once per epoch, which is also where a non-finite loss is caught.
A checkpoint is written only after its epoch's loss has been checked, so the last checkpoint on
disk is always a good one.

Launched by ``torchrun`` with several processes, the same loop runs data-parallel (DDP) on the
global batch ``train.batch_size``; :mod:`selfsup.distributed` explains the conventions. Rank 0
alone writes the run folder; the others hold the same state.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import platform
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from . import __version__, distributed
from .augment.views import ViewRecipe, channel_stats
from .backbones import backbone_for
from .config import Config, TrainConfig, dump_config, load_run_config
from .data import Dataset, load_dataset
from .data.loader import BatchLoader
from .errors import TrainingError, UsageError
from .evaluate import extract_features, knn_top1, raw_pixel_features
from .evaluate.online import OnlineKNN, OnlineProbe
from .methods import METHODS
from .optim import build_optimizer, lr_at, set_lr, set_weight_decay, wd_at
from .runs import ENCODER_FORMAT, RunFolder, atomic_torch_save, default_run_name


class Interrupted(Exception):
    """Training was stopped by a signal after a checkpoint was written."""

    exit_code = 130


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {name} requested but CUDA is not available here; use --device cpu")
    return device


@dataclass
class Setup:
    """Everything built from a config: data, views, model, optimiser and the step counts."""
    cfg: Config
    device: torch.device
    data: Dataset
    loader: BatchLoader
    recipe: ViewRecipe
    mean: tuple[float, ...]   # normalisation the views and the exported encoder use
    std: tuple[float, ...]
    method: torch.nn.Module
    optimizer: torch.optim.Optimizer
    amp_dtype: torch.dtype | None
    channels_last: bool
    total_steps: int
    warmup_steps: int
    peak_lr: float
    ctx: distributed.Context = distributed.Context()
    forward: torch.nn.Module | None = None   # what a step calls: the method, or its DDP wrapper
    online: "OnlineEval | None" = None
    input_dtype: torch.dtype = torch.float32  # what views enter the model as (float64 under fp64)


class FeatureTap:
    """Keeps the encoder's output of the first call in a step (the features of the first view,
    which the method computes anyway) for the online probes: a forward hook, no extra forward."""

    def __init__(self, encoder: torch.nn.Module):
        self.value, self.armed = None, False
        encoder.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        if self.armed:
            self.value, self.armed = output, False

    def arm(self) -> None:
        self.value, self.armed = None, True


class OnlineEval(torch.nn.Module):
    """The online linear probe and kNN of a run (:mod:`selfsup.evaluate.online`), fed each step with
    the detached features of the first view and the batch's labels, gathered over all ranks (so
    every rank's probe stays identical). They never touch the encoder's gradients."""

    def __init__(self, encoder: torch.nn.Module, labels: torch.Tensor, num_classes: int, knn_size: int):
        super().__init__()
        self.probe = OnlineProbe(encoder.feature_dim, num_classes)
        self.knn = OnlineKNN(encoder.feature_dim, size=knn_size)
        self.register_buffer("labels", labels.long(), persistent=False)
        self.num_classes = num_classes
        self.tap = FeatureTap(encoder)

    def step(self, idx: torch.Tensor) -> None:
        h, self.tap.value = self.tap.value, None
        if h is None or h.dim() != 2 or h.shape[0] < len(idx):
            return  # this method never calls its encoder on whole views (masked modelling)
        h, y = h[:len(idx)].detach().float(), self.labels[idx]
        if distributed.world_size() > 1:  # one gather: the labels ride along as a float32 column (exact < 2**24)
            both = distributed.gather_nograd(torch.cat([h, y[:, None].float()], dim=1))
            h, y = both[:, :-1].contiguous(), both[:, -1].long()
        self.knn.score(h, y, self.num_classes)  # scored against earlier batches, then stored
        self.probe.step(h, y)                   # scored before its step

    def record(self) -> dict:
        out = {"online_linear_top1": self.probe.accuracy(), "online_knn_top1": self.knn.accuracy()}
        self.probe.reset_accuracy()
        self.knn.reset_accuracy()
        return {k: round(v, 4) for k, v in out.items() if v is not None}


def build(cfg: Config, device: torch.device | None = None, data: Dataset | None = None) -> Setup:
    ctx = distributed.context()
    device = device or resolve_device(cfg.train.device)
    if ctx.distributed and device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)  # one GPU per process
        torch.cuda.set_device(device)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    if device.type == "cuda":  # the step's shapes never change, so timing cuDNN's algorithms once pays
        torch.backends.cudnn.benchmark = cfg.train.cudnn_benchmark
    torch.manual_seed(cfg.seed)
    data = data or load_dataset(cfg.data.name, data_dir=cfg.data.data_dir, skip_bad=cfg.data.skip_bad)
    if cfg.data.subset:
        data = training_subset(data, cfg.data.subset)
    channels = cfg.augment.channels
    mean, std = input_stats(data, channels)
    recipe = ViewRecipe(cfg.view_configs(), channels, mean, std)
    loader = BatchLoader(data.train, distributed.check_batch(cfg.train.batch_size, ctx), device, cfg.data.placement,
                         seed=cfg.seed, rank=ctx.rank, world_size=ctx.world_size)
    backbone = backbone_for(cfg)
    method_cls = METHODS[cfg.method]
    method = method_cls(backbone, method_cls.Args(**cfg.method_args))
    sync_bn = cfg.train.sync_bn == "true" or (cfg.train.sync_bn == "auto" and method_cls.sync_bn)
    if ctx.distributed and sync_bn:
        method = distributed.convert_batchnorm(method, device.type)
    method = method.to(device)
    if cfg.train.precision == "fp64":  # for numerical checks (the distributed tests): float64 throughout
        method = method.double()
    channels_last = cfg.train.channels_last == "true" or (cfg.train.channels_last == "auto" and device.type == "cuda")
    if channels_last:
        method = method.to(memory_format=torch.channels_last)
    peak_lr = cfg.optim.lr * cfg.train.batch_size / 256
    optimizer = build_optimizer(cfg.optim.name, method, peak_lr, cfg.optim.weight_decay, cfg.optim.momentum,
                                cfg.optim.lars_eta, cfg.optim.exclude_bias_norm, cfg.optim.betas)
    use_bf16 = cfg.train.precision == "bf16" or (cfg.train.precision == "auto" and device.type == "cuda")
    total = cfg.train.epochs * loader.steps_per_epoch
    method.configure(loader.steps_per_epoch, total)
    forward = method
    if ctx.distributed:
        from torch.nn.parallel import DistributedDataParallel
        # Buffers (BatchNorm statistics, queues, centres) are kept identical by the methods and
        # global BatchNorm, so DDP need not broadcast them every step.
        forward = DistributedDataParallel(method, device_ids=[device.index] if device.type == "cuda" else None,
                                          forward_sync_buffers=False)
    if ctx.rank:  # every rank drew the same initial weights; from here on their own random streams
        torch.manual_seed(cfg.seed + 1_000_003 * ctx.rank)
    online = None
    if cfg.eval.online and data.train_labels is not None:
        online = OnlineEval(method.encoder, data.train_labels.to(device), data.num_classes,
                            cfg.eval.online_knn_size).to(device)
    return Setup(cfg, device, data, loader, recipe, tuple(mean), tuple(std), method, optimizer,
                 torch.bfloat16 if use_bf16 else None, channels_last, total,
                 round(cfg.optim.warmup_epochs * loader.steps_per_epoch), peak_lr, ctx, forward, online,
                 torch.float64 if cfg.train.precision == "fp64" else torch.float32)


def input_stats(data: Dataset, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of ``data``'s training images as the model sees them with
    ``channels`` input channels (a grayscale image's statistics replicated to 3 channels)."""
    mean, std = channel_stats(data.train)
    if channels == 3 and data.channels == 1:
        return mean * 3, std * 3
    if channels == 1 and data.channels == 3:
        raise UsageError(f"{data.name} has 3 channels; set augment.channels=3")
    return mean, std


def training_subset(data: Dataset, n: int) -> Dataset:
    """The same dataset with a fixed random ``n`` of its training images (the test split is kept)."""
    if n >= len(data.train):
        return data
    keep = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(0))[:n].sort().values
    labels = data.train_labels[keep] if data.train_labels is not None else None
    return dataclasses.replace(data, name=f"{data.name}[{n}]", train=data.train[keep], train_labels=labels)


def make_update(s: Setup) -> Callable[[list[torch.Tensor], int], dict]:
    """One optimisation step on ready views; returns the method's outputs (device tensors)."""
    method, optimizer = s.method, s.optimizer
    module = s.forward or method
    forward = torch.compile(module) if s.cfg.train.compile else module
    amp = (lambda: torch.autocast(s.device.type, dtype=s.amp_dtype)) if s.amp_dtype else contextlib.nullcontext
    memory_format = torch.channels_last if s.channels_last else torch.contiguous_format
    clip = s.cfg.optim.clip_grad

    def update(views: list[torch.Tensor], step: int) -> dict:
        views = [v.to(s.input_dtype).contiguous(memory_format=memory_format) for v in views]
        with amp():
            out = forward(views)
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        if clip:  # the global norm, after DDP's averaging; no host sync
            torch.nn.utils.clip_grad_norm_(method.parameters(), clip)
        method.before_optimizer_step(step)
        optimizer.step()
        return out

    return update


def make_step(s: Setup) -> Callable[[torch.Tensor, torch.Generator, int], dict]:
    """One training step on this rank's share of a uint8 global batch: the method's views, then
    :func:`make_update`."""
    update = make_update(s)
    shard = (s.ctx.rank, s.ctx.world_size)
    return lambda batch, generator, step: update(s.recipe(batch, generator, shard), step)


@contextlib.contextmanager
def _stop_on_signal():
    """Turn SIGINT/SIGTERM (Ctrl-C, a scheduler's pre-emption) into a flag checked between steps."""
    flag = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda *_: flag.set())
    try:
        yield flag
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def evaluate_knn(s: Setup, encoder: torch.nn.Module | None = None) -> float | None:
    """Weighted kNN top-1 (train split as memory, test split as queries), or None without labels."""
    d = s.data
    if d.train_labels is None or d.test is None or d.test_labels is None:
        return None
    encoder = encoder or s.method.encoder
    kw = dict(batch_size=s.cfg.eval.batch_size, device=s.device, amp_dtype=s.amp_dtype, channels_last=s.channels_last)

    def features(images):  # each rank encodes its share once; the features are gathered
        if not s.ctx.distributed:
            return extract_features(encoder, images, s.recipe.eval_transform, **kw)
        rows = distributed.shard_rows(len(images), s.ctx)
        local = extract_features(encoder, images[rows], s.recipe.eval_transform, **kw)
        return distributed.unshard_rows(local.to(s.device), len(images))

    train_f, test_f = features(d.train), features(d.test)
    if not s.ctx.main:
        return None
    return knn_top1(train_f, d.train_labels.to(s.device), test_f, d.test_labels,
                    k=s.cfg.eval.knn_k, temperature=s.cfg.eval.knn_t, num_classes=d.num_classes)


def probe_batch(s: Setup) -> torch.Tensor:
    """The fixed images the diagnostics look at every time: a seeded sample of the training split."""
    n = min(s.cfg.eval.probe_size, len(s.data.train))
    keep = torch.randperm(len(s.data.train), generator=torch.Generator().manual_seed(s.cfg.seed))[:n]
    return s.data.train[keep].to(s.device)


@torch.no_grad()
def diagnose_model(s: Setup, probe: torch.Tensor) -> tuple[dict, list[str]]:
    """Collapse diagnostics (RankMe, spectrum, alignment/uniformity, normalised std) of the backbone
    and the projector on the probe batch, in eval mode, and the alarm's reasons (empty if healthy)."""
    from .evaluate.diagnostics import collapse_alarm, diagnose
    method, cfg = s.method, s.cfg.eval
    was_training = method.training
    method.eval()
    amp = torch.autocast(s.device.type, dtype=s.amp_dtype) if s.amp_dtype else contextlib.nullcontext()
    memory_format = torch.channels_last if s.channels_last else torch.contiguous_format
    try:
        with amp:
            x = s.recipe.eval_transform(probe).to(s.input_dtype).contiguous(memory_format=memory_format)
            features = method.encoder(x).float()
            projection = method.projection(x)
            # Positive pairs: the method's first two views of the probe images, from a fixed seed.
            views = s.recipe(probe, torch.Generator(s.device).manual_seed(s.cfg.seed))
            pair = [method.projection(v.to(s.input_dtype).contiguous(memory_format=memory_format)) for v in views[:2]] \
                if len(views) >= 2 and projection is not None else [None, None]
    finally:
        method.train(was_training)
    diag = diagnose(features, None if projection is None else projection.float(),
                    *[None if p is None else p.float() for p in pair], spectrum=True)
    reasons = collapse_alarm(diag, cfg.min_rank_fraction, cfg.min_std_ratio)
    diag["thresholds"] = {"rankme_fraction": cfg.min_rank_fraction, "proj_rankme_fraction": cfg.min_rank_fraction,
                          "norm_std_ratio": cfg.min_std_ratio, "proj_norm_std_ratio": cfg.min_std_ratio}
    return diag, reasons


def raw_pixel_knn(cfg: Config, data: Dataset) -> float | None:
    """The same kNN protocol on raw pixels: the baseline a representation has to beat."""
    if data.train_labels is None or data.test is None or data.test_labels is None:
        return None
    return knn_top1(raw_pixel_features(data.train), data.train_labels, raw_pixel_features(data.test),
                    data.test_labels, k=cfg.eval.knn_k, temperature=cfg.eval.knn_t, num_classes=data.num_classes)


def export_encoder(s: Setup, path: Path) -> None:
    backbone = s.method.encoder
    state = {k: v.detach().to("cpu", memory_format=torch.contiguous_format) for k, v in backbone.state_dict().items()}
    atomic_torch_save({
        "format": ENCODER_FORMAT, "backbone": backbone.spec, "feature_dim": backbone.feature_dim,
        "state_dict": state,
        "input": {"size": s.recipe.size, "channels": s.cfg.augment.channels,
                  "mean": list(s.mean), "std": list(s.std)},
        "method": s.cfg.method, "dataset": s.cfg.data.name,
    }, path)


def _checkpoint(s: Setup, epoch: int, step_in_epoch: int, global_step: int, generator: torch.Generator) -> dict:
    """The training state (every rank's random streams included; a collective, call it on all ranks)."""
    own_rng = (torch.get_rng_state(), torch.cuda.get_rng_state(s.device) if s.device.type == "cuda" else None)
    return {"method": s.method.state_dict(), "optimizer": s.optimizer.state_dict(),
            "online": s.online.state_dict() if s.online is not None else None,
            "epoch": epoch, "step_in_epoch": step_in_epoch, "global_step": global_step,
            "aug_rng": generator.get_state(), "rng": distributed.gather_objects(own_rng),
            "config": s.cfg.to_dict(), "version": __version__}


def _restore(s: Setup, ckpt: dict, generator: torch.Generator) -> None:
    s.method.load_state_dict(ckpt["method"])
    s.optimizer.load_state_dict(ckpt["optimizer"])
    if s.online is not None and ckpt.get("online") is not None:
        s.online.load_state_dict(ckpt["online"])
    generator.set_state(ckpt["aug_rng"])  # the same on every rank (global-batch draws)
    rng = ckpt["rng"]
    if len(rng) == s.ctx.world_size:  # the same number of processes: each continues its own stream
        cpu_state, cuda_state = rng[s.ctx.rank]
        torch.set_rng_state(cpu_state)
        if cuda_state is not None and s.device.type == "cuda":
            torch.cuda.set_rng_state(cuda_state, s.device)
    else:  # another number: fresh streams, fixed by the seed, the rank and the step
        torch.manual_seed(s.cfg.seed + 1_000_003 * s.ctx.rank + 7919 * ckpt["global_step"])


class _NoRun(RunFolder):
    """What ranks other than 0 hold instead of the run folder: its paths, and they write nothing."""

    def create(self):
        return self

    def log(self, event, **values):
        pass

    def update_summary(self, **values):
        return values

    def read_summary(self):
        return {}


def _check_ranks_agree(s: Setup) -> None:
    """Every rank must hold the same parameters (DDP applies the same averaged gradients): compare a
    fingerprint before each checkpoint, so a method whose state drifts between ranks fails loudly."""
    if not s.ctx.distributed:
        return
    with torch.no_grad():
        fingerprint = float(sum(p.detach().double().sum() for p in s.method.parameters()))
    prints = distributed.gather_objects(fingerprint)
    if max(prints) != min(prints):
        raise TrainingError(f"the processes' models differ (parameter sums {prints}); this method's state is not "
                            "kept identical across ranks; train it in one process and report the method")


def _save(s: Setup, obj_fn, path) -> None:
    """Build (on every rank: it may gather) and write (on rank 0) a checkpoint."""
    _check_ranks_agree(s)
    obj = obj_fn()
    if s.ctx.main:
        atomic_torch_save(obj, path)


def _versions(device: torch.device) -> dict:
    info = {"selfsup": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "device": str(device)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    else:
        info["cpu"] = platform.processor() or platform.machine()
        info["threads"] = torch.get_num_threads()
    return info


def train(cfg: Config | None = None, out: str | Path | None = None, resume: str | Path | None = None,
          reporter=None) -> dict:
    """Pretrain ``cfg.method`` on ``cfg.data``; returns the run's summary (also in ``summary.json``).

    ``resume``: a run folder to continue from its last checkpoint (its own config is used).
    ``reporter``: receives progress callbacks (see :mod:`selfsup.progress`); silent when None.
    Under ``torchrun`` every process calls this; rank 0 reads and writes the run folder.
    """
    timeout = cfg.train.dist_timeout if cfg is not None else TrainConfig().dist_timeout
    ctx = distributed.setup(timeout)  # kept until the process exits: a script may train again
    return _train(ctx, cfg, out, resume, reporter)


def _open_run(cfg, out, resume) -> tuple[Config, RunFolder, dict | None]:
    """Rank 0's part of starting: the run folder, the config and the checkpoint to resume from."""
    if resume is not None:
        run = RunFolder(resume)
        ckpt_path = run.require("checkpoint")
        cfg = load_run_config(run.require("config"))
        return cfg, run, torch.load(ckpt_path, map_location="cpu", weights_only=False)
    assert cfg is not None, "give a config or a run folder to resume"
    run = RunFolder(out or Path("runs") / default_run_name(cfg.method, cfg.data.name))
    if run.checkpoint.exists():
        raise UsageError(f"{run.path} already holds a run; continue it with --resume {run.path} "
                         "or choose another --out")
    return cfg, run, None


def _train(ctx: distributed.Context, cfg, out, resume, reporter) -> dict:
    from .progress import SilentReporter
    reporter = reporter if reporter is not None and ctx.main else SilentReporter()
    started = None
    if ctx.main:
        try:
            started = _open_run(cfg, out, resume)
        except UsageError as e:  # every rank stops with rank 0's message
            started = e
    started = distributed.broadcast_object(started)
    if isinstance(started, UsageError):
        raise started
    cfg, run, ckpt = started
    if not ctx.main:
        run = _NoRun(run.path)

    s = build(cfg)
    if ctx.main:
        run.create()
        if ckpt is None:
            run.config.write_text(dump_config(cfg))
    generator = torch.Generator(s.device).manual_seed(cfg.seed)
    epoch, start_step, global_step = 0, 0, 0
    if ckpt is not None:
        _restore(s, ckpt, generator)
        epoch, start_step, global_step = ckpt["epoch"], ckpt["step_in_epoch"], ckpt["global_step"]
        run.log("resume", epoch=epoch, step=global_step, world_size=ctx.world_size)
        del ckpt
    step_fn = make_step(s)
    tc = cfg.train
    spe = s.loader.steps_per_epoch
    summary_base = {"method": cfg.method, "dataset": s.data.name, "epochs": tc.epochs,
                    "batch_size": tc.batch_size, "world_size": ctx.world_size, "steps_per_epoch": spe,
                    "placement": s.loader.placement, "versions": _versions(s.device)}
    train_seconds = run.read_summary().get("train_seconds", 0.0) if global_step else 0.0
    images_trained, session_seconds = 0, 0.0
    probe = probe_batch(s) if cfg.eval.diagnose_every and ctx.main else None
    reporter.start(run.path, s, epoch, global_step)
    stop_epoch = min(tc.epochs, epoch + tc.stop_after) if tc.stop_after else tc.epochs
    online = s.online
    wd_schedule = cfg.optim.final_weight_decay >= 0

    with _stop_on_signal() as stop:
        while epoch < stop_epoch:
            s.method.train()
            epoch_loss = torch.zeros((), device=s.device)
            window_loss = torch.zeros((), device=s.device)
            window_steps, window_start = 0, time.perf_counter()
            epoch_start, steps_done = time.perf_counter(), 0
            batches = s.loader.batches(epoch, start_step, with_indices=True)
            for i, (idx, batch) in enumerate(batches, start=start_step):
                lr = lr_at(global_step, s.total_steps, s.warmup_steps, s.peak_lr, cfg.optim.final_lr_ratio)
                set_lr(s.optimizer, lr)
                if wd_schedule:
                    wd = wd_at(global_step, s.total_steps, cfg.optim.weight_decay, cfg.optim.final_weight_decay)
                    set_weight_decay(s.optimizer, wd)
                if online is not None:
                    online.tap.arm()
                out = step_fn(batch, generator, global_step)
                global_step += 1
                extra = s.method.after_step(global_step, s.total_steps)
                if online is not None:
                    online.step(idx)
                loss = out["loss"].detach().float()
                epoch_loss += loss
                window_loss += loss
                window_steps += 1
                steps_done += 1
                at_log = global_step % tc.log_every == 0
                if at_log:
                    # The one host sync of the window (and, distributed, its one extra collective).
                    mean = (distributed.all_reduce_(window_loss, "mean") / window_steps).item()
                    elapsed = time.perf_counter() - window_start
                    ips = window_steps * tc.batch_size / elapsed
                    _check_finite(mean, run, epoch, global_step)
                    scalars = {k: _scalar(v) for k, v in out.items() if k != "loss"}
                    if wd_schedule:
                        scalars["weight_decay"] = wd  # of this step, as lr
                    run.log("step", epoch=epoch, step=global_step, loss=mean, lr=lr,
                            images_per_second=round(ips, 1), **scalars, **extra)
                    reporter.step(epoch, i + 1, global_step, mean, ips)
                    window_loss.zero_()
                    window_steps, window_start = 0, time.perf_counter()
                if _stopping(stop, ctx, at_log):
                    _sync(s.device)
                    _check_finite((distributed.all_reduce_(epoch_loss, "mean") / max(steps_done, 1)).item(),
                                  run, epoch, global_step)
                    _save(s, lambda: _checkpoint(s, epoch, i + 1, global_step, generator), run.checkpoint)
                    train_seconds += time.perf_counter() - epoch_start
                    run.update_summary(**summary_base, train_seconds=round(train_seconds, 2), finished=False)
                    run.log("interrupted", epoch=epoch, step=global_step)
                    raise Interrupted(f"stopped at epoch {epoch + 1} step {i + 1}; the checkpoint is saved: "
                                      f"continue with: selfsup train --resume {run.path}")
            mean_loss = (distributed.all_reduce_(epoch_loss, "mean") / max(steps_done, 1)).item()
            seconds = time.perf_counter() - epoch_start
            train_seconds += seconds
            session_seconds += seconds
            images_trained += steps_done * tc.batch_size
            _check_finite(mean_loss, run, epoch, global_step)
            epoch += 1
            start_step = 0
            record = {"epoch": epoch, "step": global_step, "loss": mean_loss, "seconds": round(seconds, 3),
                      "images_per_second": round(steps_done * tc.batch_size / seconds, 1)}
            if online is not None:
                record.update(online.record())
            if tc.knn_every and epoch % tc.knn_every == 0 and epoch < tc.epochs:
                record["knn_top1"] = evaluate_knn(s)
            run.log("epoch", **record)
            reporter.epoch(epoch, record)
            collapsed = []
            if cfg.eval.diagnose_every and (epoch % cfg.eval.diagnose_every == 0 or epoch == tc.epochs):
                if ctx.main:
                    diag, collapsed = diagnose_model(s, probe)
                    run.log("diagnostics", epoch=epoch, step=global_step, **diag)
                    if collapsed:
                        run.log("collapse", epoch=epoch, step=global_step, reasons=collapsed)
                        reporter.warn(f"collapse alarm at epoch {epoch}: {'; '.join(collapsed)}")
                collapsed = distributed.broadcast_object(collapsed)
            if epoch % tc.checkpoint_every == 0 or epoch == stop_epoch or (collapsed and cfg.eval.stop_on_collapse):
                _save(s, lambda: _checkpoint(s, epoch, 0, global_step, generator), run.checkpoint)
            if collapsed and cfg.eval.stop_on_collapse:
                run.update_summary(**summary_base, epochs_done=epoch, train_seconds=round(train_seconds, 2),
                                   finished=False, collapsed=True)
                raise TrainingError(f"the representation collapsed at epoch {epoch} ({'; '.join(collapsed)}); "
                                    f"stopped as eval.stop_on_collapse asks, checkpoint kept in {run.checkpoint}")

    summary = {**summary_base, "epochs_done": epoch, "train_seconds": round(train_seconds, 2),
               "images_per_second": round(images_trained / session_seconds, 1) if images_trained
               else run.read_summary().get("images_per_second")}
    if epoch < tc.epochs:
        return run.update_summary(**summary, finished=False)
    if ctx.main:
        export_encoder(s, run.encoder)
    reporter.evaluating()
    knn = evaluate_knn(s)  # every rank encodes a share; rank 0 scores
    raw = raw_pixel_knn(cfg, s.data) if ctx.main else None
    run.log("eval", protocol="knn", knn_top1=knn, knn_top1_raw_pixels=raw, k=cfg.eval.knn_k, t=cfg.eval.knn_t)
    summary = run.update_summary(**summary, knn_top1=knn, knn_top1_raw_pixels=raw, finished=True,
                                 run_dir=str(run.path))
    reporter.finish(summary)
    return summary


def _stopping(stop: threading.Event, ctx: distributed.Context, at_log: bool) -> bool:
    """Whether to stop after this step. One process checks its signal flag every step; several
    agree at logging steps only (one tiny all-reduce), so they stop at the same step."""
    if not ctx.distributed:
        return stop.is_set()
    if not at_log:
        return False
    flag = torch.tensor(float(stop.is_set()))
    return bool(distributed.all_reduce_(flag, "max"))


def _scalar(v):
    return v.detach().float().item() if isinstance(v, torch.Tensor) else v


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _check_finite(loss: float, run: RunFolder, epoch: int, step: int) -> None:
    if math.isfinite(loss):
        return
    run.log("nonfinite", epoch=epoch, step=step, loss=str(loss))
    kept = (f"the last good checkpoint is kept in {run.checkpoint}" if run.checkpoint.exists()
            else "no checkpoint had been written yet")
    raise TrainingError(f"the loss became {loss} at epoch {epoch + 1} (step {step}); {kept}. "
                        "Lower optim.lr, raise optim.warmup_epochs or use train.precision=fp32, then train again")
