"""The momentum (exponential moving average) teacher and its schedules, written once for every
method that has one.

BYOL (Grill et al. 2020, Eq. 1 and Sec. 3.2): target parameters follow the online ones as
``xi <- tau * xi + (1 - tau) * theta`` after every optimiser step, with ``tau`` increased from
``tau_base`` to 1 along a cosine: ``tau = 1 - (1 - tau_base) * (cos(pi * k / K) + 1) / 2``.
I-JEPA (Assran et al. 2023) raises it linearly; MoCo (He et al. 2020, Eq. 2) keeps it constant.

Only parameters follow the online network. A teacher's buffers (BatchNorm running statistics) are
its own, updated by its own forward passes in training mode, as in the authors' code of DINO
(``main_dino.py``), BYOL (its target keeps its own batch-norm state) and MoCo (the key encoder's);
losses never read them (teachers run in training mode), but an exported or evaluated teacher does.
``copy_buffers=True`` copies the online network's instead (what selfsup did before).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

SCHEDULES = ("cosine", "linear", "constant")


def cosine_tau(step: int, total_steps: int, tau_base: float) -> float:
    """BYOL's momentum schedule at optimiser step ``step`` of ``total_steps``."""
    progress = min(step / max(total_steps, 1), 1.0)
    return 1 - (1 - tau_base) * (math.cos(math.pi * progress) + 1) / 2


def linear_tau(step: int, total_steps: int, tau_base: float, tau_end: float = 1.0) -> float:
    """I-JEPA's momentum at optimiser step ``step`` of ``total_steps``: linear from base to end."""
    progress = min(step / max(total_steps, 1), 1.0)
    return tau_base + (tau_end - tau_base) * progress


class MomentumTeacher(nn.Module):
    """A frozen copy of ``online`` that is updated only by :meth:`step`, never by gradients.

    ``base``, ``schedule`` (cosine | linear | constant) and ``end`` give tau over the run;
    ``log_name`` is the key the loop logs it under.
    """

    def __init__(
        self,
        online: nn.Module,
        base: float = 0.996,
        schedule: str = "cosine",
        end: float = 1.0,
        log_name: str = "tau",
        copy_buffers: bool = False,
    ):
        super().__init__()
        assert schedule in SCHEDULES, schedule
        self.net = copy.deepcopy(online)
        for p in self.net.parameters():
            p.requires_grad_(False)
        for module in self.net.modules():  # teachers never drop paths (DINO's teacher, I-JEPA's target)
            if hasattr(module, "set_drop_path"):
                module.set_drop_path(0.0)
        self.base, self.schedule, self.end, self.log_name = base, schedule, end, log_name
        self.copy_buffers = copy_buffers
        self.tau = base  # of the last update

    def forward(self, *args, **kwargs):
        with torch.no_grad():
            return self.net(*args, **kwargs)

    def tau_at(self, step: int, total_steps: int) -> float:
        if self.schedule == "cosine":
            return cosine_tau(step, total_steps, self.base)
        if self.schedule == "linear":
            return linear_tau(step, total_steps, self.base, self.end)
        return self.base

    def step(self, online: nn.Module, step: int, total_steps: int) -> float:
        """The EMA update after optimiser step ``step`` (1-based count of steps taken): tau of step
        k = step - 1 of the schedule. Returns that tau."""
        self.tau = self.tau_at(step - 1, total_steps)
        self.update(online, self.tau)
        return self.tau

    @torch.no_grad()
    def update(self, online: nn.Module, tau: float) -> None:
        self.update_weight(online, 1.0 - tau)

    @torch.no_grad()
    def update_weight(self, online: nn.Module, weight: float | torch.Tensor) -> None:
        """``xi <- xi + weight * (theta - xi)``, ``weight = 1 - tau``: a float, or a 0-d device tensor
        (a CUDA graph's form, read on the device at each replay)."""
        t_params = list(self.net.parameters())
        o_params = list(online.parameters())
        if isinstance(weight, torch.Tensor):
            torch._foreach_lerp_(t_params, o_params, [weight] * len(t_params))
        else:  # one fused kernel per dtype/device group
            torch._foreach_lerp_(t_params, o_params, weight)
        if self.copy_buffers:  # one grouped copy (a copy per buffer is ~60 launches for a ResNet-18)
            t_bufs, o_bufs = list(self.net.buffers()), list(online.buffers())
            if t_bufs:
                torch._foreach_copy_(t_bufs, o_bufs)
