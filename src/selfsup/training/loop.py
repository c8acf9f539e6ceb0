"""The one training loop, for every method, every modality and every device.

:func:`train` opens the run folder, builds the run (:mod:`.build`), restores a checkpoint when
resuming, then runs epochs of :func:`~selfsup.training.step.train_step` (:func:`run_epoch`).
Nothing in a step waits for the host: losses are accumulated on the device and read once every
``train.log_every`` steps and once per epoch, which is also where a non-finite loss is caught. A
checkpoint is written only after its epoch's loss has been checked, so the last checkpoint on disk
is always a good one. After each epoch come the online probes' records, the optional kNN and the
collapse diagnostics (:mod:`.monitor`); at the end the encoder is exported (:mod:`.export`) and
evaluated beside the raw input.

Launched by ``torchrun`` with several processes, the same loop runs data-parallel (DDP) on the
global batch ``train.batch_size``; :mod:`selfsup.distributed` explains the conventions. Rank 0
alone writes the run folder; the others hold the same state.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import distributed
from ..config import Config, TrainConfig, dump_config, load_run_config
from ..data.base import unpack
from ..device import synchronize, versions
from ..errors import Interrupted, TrainingError, UsageError
from ..methods.base import Method
from ..optim import set_lr, set_weight_decay
from ..runs import RunFolder, default_run_name
from . import checkpoint
from .build import Setup, build
from .export import export_encoder
from .graph import StaticStep
from .monitor import diagnose_model, evaluate_knn, probe_batch, raw_knn
from .schedules import learning_rate, weight_decay
from .step import train_step


def train(
    cfg: Config | None = None,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    reporter=None,
    backbone: torch.nn.Module | None = None,
) -> dict:
    """Pretrain ``cfg.method`` on ``cfg.data``; returns the run's summary (also in ``summary.json``).

    ``resume``: a run folder to continue from its last checkpoint (its own config is used).
    ``reporter``: receives progress callbacks (see :mod:`selfsup.progress`); silent when None.
    ``backbone``: a module to train instead of the one ``cfg.model`` names.
    Under ``torchrun`` every process calls this; rank 0 reads and writes the run folder.
    """
    timeout = cfg.train.dist_timeout if cfg is not None else TrainConfig().dist_timeout
    ctx = distributed.setup(timeout)  # kept until the process exits: a script may train again
    return _train(ctx, cfg, out, resume, reporter, backbone)


@dataclass
class Position:
    """Where a run is: the epoch under way, the step within it, the optimiser steps taken."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0


@dataclass
class Clock:
    train_seconds: float = 0.0  # over the whole run, resumed sessions included
    session_seconds: float = 0.0  # this invocation's
    session_images: int = 0
    last_save: float = dataclasses.field(default_factory=time.monotonic)  # for train.checkpoint_minutes


def _open_run(cfg, out, resume) -> tuple[Config, RunFolder, dict | None, str | None]:
    """Rank 0's part of starting: the run folder, the config, the checkpoint to resume from and a
    warning when that is the previous checkpoint (the last one could not be read)."""
    if resume is not None:
        run = RunFolder(resume)
        cfg = load_run_config(run.require("config"))
        ckpt, warning = checkpoint.load_for_resume(run)
        if warning and run.checkpoint.is_file():  # kept for inspection, out of the rotation's way
            os.replace(run.checkpoint, run.checkpoint.with_name("last.unreadable.pt"))
        return cfg, run, ckpt, warning
    assert cfg is not None, "give a config or a run folder to resume"
    if cfg.train.init_from:  # checked before anything is written
        RunFolder(cfg.train.init_from).require("encoder")
        RunFolder(cfg.train.init_from).require("checkpoint")
    run = RunFolder(out or Path("runs") / default_run_name(cfg.method, cfg.data.name))
    if run.checkpoint.exists() or run.previous_checkpoint.exists():
        raise UsageError(
            f"{run.path} already holds a run; continue it with --resume {run.path} or choose another --out"
        )
    return cfg, run, None, None


def _start(ctx: distributed.Context, cfg, out, resume):
    """Open the run on rank 0 and share it: every rank stops with rank 0's message on a mistake."""
    started = None
    if ctx.main:
        try:
            started = _open_run(cfg, out, resume)
        except UsageError as e:
            started = e
    started = distributed.broadcast_object(started)
    if isinstance(started, UsageError):
        raise started
    cfg, run, ckpt, warning = started
    return cfg, (run if ctx.main else _NoRun(run.path)), ckpt, warning


def _train(ctx: distributed.Context, cfg, out, resume, reporter, backbone) -> dict:
    from ..progress import SilentReporter

    reporter = reporter if reporter is not None and ctx.main else SilentReporter()
    cfg, run, ckpt, warning = _start(ctx, cfg, out, resume)
    if warning:
        reporter.warn(warning)
        run.log("checkpoint_fallback", message=warning)
    s = build(cfg, backbone=backbone)
    if ctx.main:
        run.create()
        run.attach_loggers(cfg)  # train.loggers: every record of run.log also goes to them (selfsup.loggers)
        if ckpt is None:
            run.config.write_text(dump_config(cfg))
    generator = torch.Generator(s.device).manual_seed(cfg.seed)
    pos = Position()
    if ckpt is None and cfg.train.init_from:
        taken = checkpoint.initialise_from(s, RunFolder(cfg.train.init_from))
        run.log("init_from", run_dir=cfg.train.init_from, **taken)
    if ckpt is not None:
        checkpoint.restore(s, ckpt, generator)
        pos = Position(ckpt["epoch"], ckpt["step_in_epoch"], ckpt["global_step"])
        run.log("resume", epoch=pos.epoch, step=pos.global_step, world_size=ctx.world_size)
        del ckpt
    _set_batch_groups(s, run)
    tc = cfg.train
    summary_base = {
        "method": cfg.method,
        "dataset": s.data.name,
        "modality": s.modality.name,
        "epochs": tc.epochs,
        "batch_size": tc.batch_size,
        "world_size": ctx.world_size,
        "steps_per_epoch": s.loader.steps_per_epoch,
        "placement": s.loader.placement,
        "versions": versions(s.device),
    }
    clock = Clock(run.read_summary().get("train_seconds", 0.0) if pos.global_step else 0.0)
    probe = probe_batch(s) if cfg.eval.diagnose_every and ctx.main else None
    reporter.start(run.path, s, pos.epoch, pos.global_step)
    stop_epoch = min(tc.epochs, pos.epoch + tc.stop_after) if tc.stop_after else tc.epochs

    static = StaticStep(s, generator) if cfg.train.cuda_graph else None  # after restore: binds the optimiser
    with _stop_on_signal() as stop:
        while pos.epoch < stop_epoch:
            record = run_epoch(s, run, reporter, generator, pos, clock, stop, summary_base, static)
            collapsed = _after_epoch(s, run, reporter, pos, record, probe)
            due = pos.epoch % tc.checkpoint_every == 0 or pos.epoch == stop_epoch or _timer_due(clock, tc, ctx)
            if due or (collapsed and cfg.eval.stop_on_collapse):
                checkpoint.save(s, lambda: checkpoint.state(s, pos.epoch, 0, pos.global_step, generator), run)
                clock.last_save = time.monotonic()
            if collapsed and cfg.eval.stop_on_collapse:
                run.update_summary(
                    **summary_base,
                    epochs_done=pos.epoch,
                    train_seconds=round(clock.train_seconds, 2),
                    finished=False,
                    collapsed=True,
                )
                raise TrainingError(
                    f"the representation collapsed at epoch {pos.epoch} ({'; '.join(collapsed)}); "
                    f"stopped as eval.stop_on_collapse asks, checkpoint kept in {run.checkpoint}"
                )
    if static is not None:  # whether the step ran as a replayed graph or eagerly (no CUDA)
        summary_base["cuda_graph"] = "captured" if static.captured else "eager"
    return _finish(s, run, reporter, pos, clock, summary_base)


def run_epoch(
    s: Setup,
    run,
    reporter,
    generator: torch.Generator,
    pos: Position,
    clock: Clock,
    stop: threading.Event,
    summary_base: dict,
    static: StaticStep | None = None,
) -> dict:
    """Train epoch ``pos.epoch`` from step ``pos.step_in_epoch`` on; returns the epoch's record.
    On a stop signal: a checkpoint at the current step, then :class:`Interrupted`. ``static``: the
    captured form of the step (``train.cuda_graph``), which sets its own schedules on the device."""
    tc = s.cfg.train
    s.method.train()
    epoch_loss = torch.zeros((), device=s.device)
    window_loss = torch.zeros((), device=s.device)
    window_steps, window_start = 0, time.perf_counter()
    epoch_start, steps_done = time.perf_counter(), 0
    batches = s.loader.batches(pos.epoch, pos.step_in_epoch, with_indices=True)
    for i, (idx, batch) in enumerate(batches, start=pos.step_in_epoch):
        lr, wd = learning_rate(s, pos.global_step), weight_decay(s, pos.global_step)
        if static is not None:
            out, extra = static(batch, pos.global_step)
            pos.global_step += 1
        else:
            set_lr(s.optimizer, lr, s.peak_lr)
            if wd is not None:
                set_weight_decay(s.optimizer, wd)
            out = train_step(s, batch, generator, pos.global_step)
            pos.global_step += 1
            extra = s.method.after_step(pos.global_step, s.total_steps)
        if s.online is not None:
            s.online.step(idx, out.get("features"))
        loss = out["loss"].detach().float()
        epoch_loss += loss
        window_loss += loss
        window_steps += 1
        steps_done += 1
        at_log = pos.global_step % tc.log_every == 0
        if at_log:
            # The one host sync of the window (and, distributed, its one extra collective).
            mean = (distributed.all_reduce_(window_loss, "mean") / window_steps).item()
            elapsed = time.perf_counter() - window_start
            ips = window_steps * tc.batch_size / elapsed
            _check_finite(mean, run, pos.epoch, pos.global_step)
            scalars = {k: _scalar(v) for k, v in out.items() if k not in ("loss", "features")}
            if wd is not None:
                scalars["weight_decay"] = wd  # of this step, as lr
            run.log(
                "step",
                epoch=pos.epoch,
                step=pos.global_step,
                loss=mean,
                lr=lr,
                images_per_second=round(ips, 1),
                **scalars,
                **extra,
            )
            reporter.step(pos.epoch, i + 1, pos.global_step, mean, ips)
            window_loss.zero_()
            window_steps, window_start = 0, time.perf_counter()
        if _stopping(stop, s.ctx, at_log):
            synchronize(s.device)
            _check_finite(
                (distributed.all_reduce_(epoch_loss, "mean") / max(steps_done, 1)).item(),
                run,
                pos.epoch,
                pos.global_step,
            )
            state = functools.partial(checkpoint.state, s, pos.epoch, i + 1, pos.global_step, generator)
            checkpoint.save(s, state, run)
            clock.train_seconds += time.perf_counter() - epoch_start
            run.update_summary(**summary_base, train_seconds=round(clock.train_seconds, 2), finished=False)
            run.log("interrupted", epoch=pos.epoch, step=pos.global_step)
            raise Interrupted(
                f"stopped at epoch {pos.epoch + 1} step {i + 1}; the checkpoint is saved: "
                f"continue with: selfsup train --resume {run.path}"
            )
        if i + 1 < s.loader.steps_per_epoch and _timer_due(clock, tc, s.ctx, at_log):
            # A checkpoint on the clock, mid-epoch: long epochs lose at most checkpoint_minutes.
            synchronize(s.device)
            _check_finite(
                (distributed.all_reduce_(epoch_loss.clone(), "mean") / max(steps_done, 1)).item(),
                run,
                pos.epoch,
                pos.global_step,
            )
            state = functools.partial(checkpoint.state, s, pos.epoch, i + 1, pos.global_step, generator)
            checkpoint.save(s, state, run)
            clock.last_save = time.monotonic()
            run.log("checkpoint", epoch=pos.epoch, step=pos.global_step, step_in_epoch=i + 1)
    mean_loss = (distributed.all_reduce_(epoch_loss, "mean") / max(steps_done, 1)).item()
    seconds = time.perf_counter() - epoch_start
    clock.train_seconds += seconds
    clock.session_seconds += seconds
    clock.session_images += steps_done * tc.batch_size
    _check_finite(mean_loss, run, pos.epoch, pos.global_step)
    pos.epoch += 1
    pos.step_in_epoch = 0
    return {
        "epoch": pos.epoch,
        "step": pos.global_step,
        "loss": mean_loss,
        "seconds": round(seconds, 3),
        "images_per_second": round(steps_done * tc.batch_size / max(seconds, 1e-9), 1),
    }


def _after_epoch(s: Setup, run, reporter, pos: Position, record: dict, probe) -> list[str]:
    """The epoch's record (online probes, optional kNN) and diagnostics; the collapse alarm's reasons."""
    cfg, tc = s.cfg, s.cfg.train
    if s.online is not None:
        record.update(s.online.record())
    if tc.knn_every and pos.epoch % tc.knn_every == 0 and pos.epoch < tc.epochs:
        record["knn_top1"] = evaluate_knn(s)
    run.log("epoch", **record)
    reporter.epoch(pos.epoch, record)
    collapsed = []
    if cfg.eval.diagnose_every and (pos.epoch % cfg.eval.diagnose_every == 0 or pos.epoch == tc.epochs):
        if s.ctx.main:
            diag, collapsed = diagnose_model(s, probe)
            run.log("diagnostics", epoch=pos.epoch, step=pos.global_step, **diag)
            if collapsed:
                run.log("collapse", epoch=pos.epoch, step=pos.global_step, reasons=collapsed)
                reporter.warn(f"collapse alarm at epoch {pos.epoch}: {'; '.join(collapsed)}")
        collapsed = distributed.broadcast_object(collapsed)
    return collapsed


def _finish(s: Setup, run, reporter, pos: Position, clock: Clock, summary_base: dict) -> dict:
    """The summary; at the end of the run also the encoder and the final kNN beside the raw input."""
    cfg = s.cfg
    images_per_second = (
        round(clock.session_images / clock.session_seconds, 1)
        if clock.session_images
        else run.read_summary().get("images_per_second")
    )
    summary = {
        **summary_base,
        "epochs_done": pos.epoch,
        "train_seconds": round(clock.train_seconds, 2),
        "images_per_second": images_per_second,
    }
    if pos.epoch < cfg.train.epochs:
        return run.update_summary(**summary, finished=False)
    if s.ctx.main:
        export_encoder(s, run.encoder)
    reporter.evaluating()
    knn = evaluate_knn(s)  # every rank encodes a share; rank 0 scores
    raw = raw_knn(s) if s.ctx.main else None
    run.log("eval", protocol="knn", knn_top1=knn, knn_top1_raw=raw, k=cfg.eval.knn_k, t=cfg.eval.knn_t)
    summary = run.update_summary(
        **summary, knn_top1=knn, knn_top1_raw=raw, raw_name=s.modality.raw_name, finished=True, run_dir=str(run.path)
    )
    reporter.finish(summary)
    run.close_loggers(s)  # with the run's parts: TensorBoard adds the probe batch's embedding projector
    return summary


def _set_batch_groups(s: Setup, run: RunFolder) -> None:
    """The groups a method keeps apart within a batch (G-SimCLR's pseudo labels): made once by the
    main process (or taken from the restored checkpoint) and given to every process's loader."""
    if type(s.method).batch_groups is Method.batch_groups:
        return
    groups = None
    if s.ctx.main:
        train, _ = unpack(s.data.train)
        groups = s.method.batch_groups(train, s.cfg.train.batch_size * s.ctx.world_size, s.cfg.seed, s.device)
    if s.ctx.distributed:
        groups = distributed.broadcast_object(groups)
    s.loader.set_groups(groups)
    if groups is not None:
        run.log("batch_groups", groups=int(groups.unique().numel()), samples=len(groups))


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


def _stopping(stop: threading.Event, ctx: distributed.Context, at_log: bool) -> bool:
    """Whether to stop after this step. One process checks its signal flag every step; several
    agree at logging steps only (one tiny all-reduce), so they stop at the same step."""
    if not ctx.distributed:
        return stop.is_set()
    if not at_log:
        return False
    flag = torch.tensor(float(stop.is_set()))
    return bool(distributed.all_reduce_(flag, "max"))


def _timer_due(clock: Clock, tc, ctx: distributed.Context, at_log: bool = True) -> bool:
    """Whether ``train.checkpoint_minutes`` have passed since the last checkpoint. Several processes
    agree at logging steps only (one tiny all-reduce), so they all save at the same step."""
    if not tc.checkpoint_minutes:
        return False
    due = time.monotonic() - clock.last_save >= tc.checkpoint_minutes * 60
    if not ctx.distributed:
        return due
    if not at_log:
        return False
    return bool(distributed.all_reduce_(torch.tensor(float(due)), "max"))


def _scalar(v):
    return v.detach().float().item() if isinstance(v, torch.Tensor) else v


def _check_finite(loss: float, run: RunFolder, epoch: int, step: int) -> None:
    if math.isfinite(loss):
        return
    run.log("nonfinite", epoch=epoch, step=step, loss=str(loss))
    kept = (
        f"the last good checkpoint is kept in {run.checkpoint}"
        if run.checkpoint.exists()
        else "no checkpoint had been written yet"
    )
    raise TrainingError(
        f"the loss became {loss} at epoch {epoch + 1} (step {step}); {kept}. "
        "Lower optim.lr, raise optim.warmup_epochs or use train.precision=fp32, then train again"
    )


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
