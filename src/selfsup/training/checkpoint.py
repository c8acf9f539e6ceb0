"""Checkpoints: the whole training state, written atomically by rank 0, restored bit for bit.

A checkpoint holds tensors and plain data only (the method's and optimiser's state dicts, every
rank's random streams, counters, the config as a dict), so it is read with
``torch.load(weights_only=True)``: opening a run folder someone sent you runs none of their code,
and a file that carries other pickled objects is refused.

Each new checkpoint first moves the last one to ``previous.pt`` (a rename), then is written
atomically as ``last.pt``: a crash at any moment leaves at least one complete checkpoint, and
``--resume`` falls back to the previous one, with a warning, when the last one cannot be read.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch

from .. import distributed
from ..errors import TrainingError, UsageError
from ..runs import atomic_torch_save
from ..version import __version__
from .schedules import plain_groups


def state(s, epoch: int, step_in_epoch: int, global_step: int, generator: torch.Generator) -> dict:
    """The training state (every rank's random streams included; a collective, call it on all ranks)."""
    own_rng = (torch.get_rng_state(), torch.cuda.get_rng_state(s.device) if s.device.type == "cuda" else None)
    return {
        "method": s.method.state_dict(),
        "optimizer": plain_groups(s.optimizer.state_dict()),
        "online": s.online.state_dict() if s.online is not None else None,
        "epoch": epoch,
        "step_in_epoch": step_in_epoch,
        "global_step": global_step,
        "aug_rng": generator.get_state(),
        "rng": distributed.gather_objects(own_rng),
        "config": s.cfg.to_dict(),
        "version": __version__,
    }


def restore(s, ckpt: dict, generator: torch.Generator) -> None:
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


def load(path: Path) -> dict:
    """A checkpoint file, or a one-line UsageError when it cannot be read as one."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # a pickled object that is not tensors or plain data
        what = str(e).strip().splitlines()[-1][:160] if str(e).strip() else type(e).__name__
        raise UsageError(
            f"{path} holds pickled objects that are not tensors or plain data ({what}); "
            "selfsup does not unpickle them: it would run code from the file"
        ) from None
    except Exception as e:  # truncated or foreign
        raise UsageError(
            f"{path} is not a readable selfsup checkpoint ({type(e).__name__}); "
            "it may be truncated or from another program"
        ) from None
    if not isinstance(ckpt, dict) or "method" not in ckpt or "global_step" not in ckpt:
        raise UsageError(f"{path} is not a selfsup checkpoint")
    return ckpt


def load_for_resume(run) -> tuple[dict, str | None]:
    """The checkpoint to resume ``run`` from and a warning when it is not the last one: the last
    checkpoint, else (unreadable or missing after a crash mid-write) the previous one."""
    last, previous = run.checkpoint, run.previous_checkpoint
    if not last.is_file() and not previous.is_file():
        run.require("checkpoint")  # the one-line "nothing to resume from"
    try:
        return load(last), None
    except UsageError as e:
        problem = str(e) if last.is_file() else f"{last} is missing"
    if previous.is_file():
        try:
            return load(previous), f"{problem}; resuming from the previous checkpoint {previous} instead"
        except UsageError as e:
            problem = f"{problem}, and {e}"
    raise UsageError(f"{problem}; no readable checkpoint to resume from: start the run again")


def initialise_from(s, run) -> dict:
    """Start ``s`` from the weights of the finished run ``run`` (continual pretraining): every entry
    of its method state whose name and shape match this method's: the encoder, and the heads and the
    teacher when it is the same method with the same sizes; the rest as initialised. Returns what was
    taken. The optimiser, the schedules and the data order start afresh."""
    run.require("encoder")  # a finished run
    ckpt, _ = load_for_resume(run)
    mine = s.method.state_dict()
    same_method = ckpt.get("config", {}).get("method") == s.cfg.method
    taken = {
        k: v
        for k, v in ckpt["method"].items()
        if k in mine
        and getattr(mine[k], "shape", None) == getattr(v, "shape", None)
        and (same_method or k.startswith("backbone."))  # another method's heads mean something else
    }
    encoder_keys = [name for name in mine if name.startswith("backbone.")]
    missing = [k for k in encoder_keys if k not in taken]
    if missing:
        raise UsageError(
            f"{run.path} holds an encoder of another architecture ({missing[0]} does not match); "
            "--init-from needs the same backbone and input channels"
        )
    s.method.load_state_dict({**mine, **taken})
    return {"taken": len(taken), "of": len(mine), "method": ckpt.get("config", {}).get("method")}


def check_ranks_agree(s) -> None:
    """Every rank must hold the same parameters (DDP applies the same averaged gradients): compare a
    fingerprint before each checkpoint, so a method whose state drifts between ranks fails loudly."""
    if not s.ctx.distributed:
        return
    with torch.no_grad():
        fingerprint = float(sum(p.detach().double().sum() for p in s.method.parameters()))
    prints = distributed.gather_objects(fingerprint)
    if max(prints) != min(prints):
        raise TrainingError(
            f"the processes' models differ (parameter sums {prints}); this method's state is not "
            "kept identical across ranks; train it in one process and report the method"
        )


def save(s, build_state, run) -> None:
    """Build (on every rank: it may gather) and write (on rank 0) a checkpoint of ``run``; the one
    it replaces becomes ``previous.pt``."""
    check_ranks_agree(s)
    obj = build_state()
    if s.ctx.main:
        if run.checkpoint.is_file():
            os.replace(run.checkpoint, run.previous_checkpoint)
        atomic_torch_save(obj, run.checkpoint)
