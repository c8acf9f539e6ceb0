"""What every method is: an ``nn.Module`` built from a backbone and its own typed arguments.

Contract (the training loop relies on nothing else):

* ``Args``: a dataclass of the method's hyper-parameters (validated from the config's
  ``method_args``);
* ``view_plan(args)``: the kind of views it needs (:class:`~selfsup.modalities.base.ViewPlan`);
  the data's modality turns the plan into concrete views. ``modalities`` names the kinds of data
  the method makes sense for (None: every modality that has views for its plan);
* ``forward(views) -> dict``: ``"loss"`` (a scalar tensor), ``"features"`` (the first view's
  encoder output, detached, for the online probes; absent when the method never encodes whole
  views) and any scalars worth logging;
* ``configure(steps_per_epoch, total_steps)``: told once before training;
* ``before_optimizer_step(step)``: gradient surgery between backward and the optimiser step;
* ``after_step(step, total_steps) -> dict``: state updates after the optimiser step; the default
  steps every (teacher, online) pair of :meth:`momentum_pairs` (the one EMA update); methods with
  queues or centres extend it; returns scalars to log;
* ``capturable``, ``step_phase``, ``step_scalars``, ``after_step_tensors``: the same step in the
  form a CUDA graph takes (``train.cuda_graph``, :mod:`selfsup.training.graph`);
* ``encoder``: the backbone evaluated and exported;
* ``sync_bn``: whether BatchNorm sees the global batch in a distributed run (the paper's setting).

Distributed runs: a loss defined over the batch gathers its embeddings with
:func:`selfsup.distributed.gather` (identity in one process) and computes the global batch's loss;
queues push :func:`~selfsup.distributed.gather_nograd` keys; every other state update must leave all
ranks identical.

Teachers, queues and prototypes are submodules or buffers, so ``state_dict`` checkpoints them.
A method knows nothing of files, devices, logging or the kind of data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..modalities.base import ViewPlan
from .parts.teacher import MomentumTeacher


class Method(nn.Module):
    name: ClassVar[str]
    paper: ClassVar[str]
    # Whether the paper normalises batches over all devices (SyncBatchNorm): the default of
    # ``train.sync_bn: auto`` in a run of several processes.
    sync_bn: ClassVar[bool] = True
    # The kinds of data this method makes sense for; None: any modality with views for its plan.
    modalities: ClassVar[tuple[str, ...] | None] = None
    # Optimiser settings of the paper or the authors' code that differ from the generic defaults
    # (config ``optim`` keys); a recipe or --set overrides them.
    optim_defaults: ClassVar[dict] = {}
    # Whether ``train.cuda_graph`` may capture this method's step: its forward and its hooks keep no
    # state on the host (no Python counters or pointers, no reads of device values) and its
    # per-step numbers come from ``step_scalars``.
    capturable: ClassVar[bool] = False

    @dataclass
    class Args:
        pass

    def __init__(self, backbone: nn.Module, args):
        super().__init__()
        self.backbone = backbone
        self.args = args

    @staticmethod
    def view_plan(args) -> ViewPlan:
        raise NotImplementedError

    @property
    def encoder(self) -> nn.Module:
        return self.backbone

    def forward(self, views: list[torch.Tensor]) -> dict:
        raise NotImplementedError

    def projection(self, x: torch.Tensor) -> torch.Tensor | None:
        """The embedding the loss sees, for diagnostics: the projector's output when the method has
        one called ``projector``, else None. Methods with another head override this."""
        projector = getattr(self, "projector", None)
        return projector(self.backbone(x)) if projector is not None else None

    def configure(self, steps_per_epoch: int, total_steps: int) -> None:
        """Called by the loop before training, so schedules given in epochs can become steps."""
        self.steps_per_epoch, self.total_steps = steps_per_epoch, total_steps

    def before_optimizer_step(self, step: int) -> None:
        """Called after ``backward`` and before the optimiser step ``step`` (0-based), for example to
        drop gradients of parameters frozen early in training (DINO's last layer)."""

    def fixed_lr_parameters(self) -> list[nn.Parameter]:
        """Parameters whose learning rate stays at the peak instead of following the schedule
        (SimSiam's ``--fix-pred-lr``); none by default."""
        return []

    def batch_groups(
        self, train: torch.Tensor, batch_size: int, seed: int, device: torch.device
    ) -> torch.Tensor | None:
        """Group labels of the training samples that the loader keeps apart within a batch
        (G-SimCLR's pseudo labels); None (the default): a plain shuffle."""
        return None

    def momentum_pairs(self) -> list[tuple[MomentumTeacher, nn.Module]]:
        """The (teacher, online network) pairs whose EMA :meth:`after_step` updates."""
        return []

    def after_step(self, step: int, total_steps: int) -> dict:
        """Called after optimiser step ``step`` (1-based count of steps taken)."""
        return {teacher.log_name: teacher.step(online, step, total_steps) for teacher, online in self.momentum_pairs()}

    # The step in the form a CUDA graph takes (``capturable`` methods).

    def step_phase(self, step: int) -> object:
        """What :meth:`before_optimizer_step` does at step ``step`` (0-based), as a hashable key:
        a captured step is recorded once per phase (DINO's frozen last layer: two). None: the same
        at every step."""
        return None

    def step_scalars(self) -> dict:
        """The numbers :meth:`after_step_tensors` takes at each step, as functions of the 1-based
        step count (those :meth:`after_step` computes on the host): the default, each teacher's EMA
        weight ``1 - tau``. Evaluated on the host for the whole run, then read on the device."""
        return {
            f"ema_weight{i}": lambda step, t=teacher: 1.0 - t.tau_at(step - 1, self.total_steps)
            for i, (teacher, _) in enumerate(self.momentum_pairs())
        }

    def step_logs(self, step: int) -> dict:
        """What :meth:`after_step` returns for step count ``step``, without updating anything (the
        captured step's log lines)."""
        return {teacher.log_name: teacher.tau_at(step - 1, self.total_steps) for teacher, _ in self.momentum_pairs()}

    def after_step_tensors(self, values: dict) -> None:
        """:meth:`after_step` with this step's :meth:`step_scalars` as 0-d device tensors; nothing
        read back to the host."""
        for i, (teacher, online) in enumerate(self.momentum_pairs()):
            teacher.update_weight(online, values[f"ema_weight{i}"])
