"""Every number that changes from step to step, on the host and as device tensors.

:func:`learning_rate` and :func:`weight_decay` are the schedules the loop sets before each step
(``optim.schedule``, ``optim.final_weight_decay``). :class:`ScheduleTable` evaluates them, and the
method's own per-step numbers (:meth:`~selfsup.methods.base.Method.step_scalars`: a teacher's EMA
weight, DINO's teacher temperature), for every step of the run at once, in float64 on the host,
and keeps the table on the device with a device step counter: :meth:`ScheduleTable.advance` loads
the current step's row into tensors the optimiser and the method read, then counts the step, with
no host involvement, so a CUDA graph replays it (:mod:`.graph`). The values are the host's doubles,
so the optimiser computes with exactly the numbers it would have been given as floats.
"""

from __future__ import annotations

import torch

from ..optim import infinite_lr_at, lr_at, wd_at


def learning_rate(s, step: int) -> float:
    """The schedule's learning rate for optimiser step ``step`` (0-based): ``optim.schedule``."""
    o = s.cfg.optim
    if o.schedule == "infinite":
        spe = s.loader.steps_per_epoch
        return infinite_lr_at(
            step,
            s.total_steps,
            s.warmup_steps,
            s.peak_lr,
            round(o.cooldown_epochs * spe),
            o.constant_lr_ratio,
            round(o.anneal_epochs * spe),
            o.final_lr_ratio,
        )
    return lr_at(step, s.total_steps, s.warmup_steps, s.peak_lr, o.final_lr_ratio)


def weight_decay(s, step: int) -> float | None:
    """The decayed groups' weight decay for step ``step``; None without a schedule (constant)."""
    o = s.cfg.optim
    if o.final_weight_decay < 0:
        return None
    return wd_at(step, s.total_steps, o.weight_decay, o.final_weight_decay)


def group_rate(group: dict, lr: float, peak: float) -> float:
    """A parameter group's learning rate when the schedule is at ``lr`` (:func:`selfsup.optim.set_lr`)."""
    rate = peak if group.get("fixed") else lr
    return rate * group.get("lr_scale", 1.0)


class ScheduleTable:
    """The run's per-step numbers as a (steps, columns) float64 table on the device.

    Columns: each optimiser group's learning rate; the weight decay (with a schedule); the method's
    :meth:`step_scalars` (row ``k`` holds their value after step ``k``, i.e. for step count k + 1).
    :meth:`bind` puts 0-d views of the current row into the optimiser's groups; :meth:`advance`
    fills the row for the counter's step and counts it.
    """

    def __init__(self, s):
        groups = s.optimizer.param_groups
        n = s.total_steps
        scalars = s.method.step_scalars()
        self.scalar_names = list(scalars)
        self.has_wd = weight_decay(s, 0) is not None
        rows = []
        for k in range(n):
            lr = learning_rate(s, k)
            row = [group_rate(g, lr, s.peak_lr) for g in groups]
            if self.has_wd:
                row.append(weight_decay(s, k))
            row += [f(k + 1) for f in scalars.values()]
            rows.append(row)
        device = s.device
        self.table = torch.tensor(rows, dtype=torch.float64).to(device)
        self.row = torch.zeros(self.table.shape[1], dtype=torch.float64, device=device)
        self.counter = torch.zeros(1, dtype=torch.long, device=device)  # the 0-based step about to be taken
        self.groups = len(groups)

    def lr(self, i: int) -> torch.Tensor:
        return self.row[i]

    @property
    def wd(self) -> torch.Tensor | None:
        return self.row[self.groups] if self.has_wd else None

    def scalars(self) -> dict[str, torch.Tensor]:
        start = self.groups + int(self.has_wd)
        return {name: self.row[start + j] for j, name in enumerate(self.scalar_names)}

    def bind(self, optimizer: torch.optim.Optimizer) -> None:
        """Give the optimiser's groups the row's tensors instead of floats: ``lr`` everywhere, the
        weight decay in the decayed groups when it has a schedule."""
        for i, group in enumerate(optimizer.param_groups):
            group["lr"] = self.lr(i)
            if self.has_wd and group.get("decayed"):
                group["weight_decay"] = self.wd

    def start_at(self, step: int) -> None:
        """Point the counter at step ``step`` (a host write: between steps only, never captured)."""
        self.counter.fill_(step)

    def advance(self) -> None:
        """Load the counter's row into the bound tensors, then count the step (on the device)."""
        self.row.copy_(self.table.index_select(0, self.counter).squeeze(0))
        self.counter += 1


def plain_groups(state_dict: dict) -> dict:
    """An optimiser state dict with the bound tensors of its groups read back as floats, so a
    checkpoint holds the same plain numbers whether or not the step was captured."""
    for group in state_dict["param_groups"]:  # copies made by state_dict(): the optimiser keeps its tensors
        for key in ("lr", "weight_decay"):
            if isinstance(group.get(key), torch.Tensor):
                group[key] = group[key].item()
    return state_dict
