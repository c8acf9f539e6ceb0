"""DINO: Emerging Properties in Self-Supervised Vision Transformers (Caron et al. 2021, ICCV,
arXiv:2104.14294).

A student (backbone + DINO head) matches the output distribution of a momentum teacher of the same
architecture across views (Eq. 2-3); the teacher's outputs are centred (Eq. 4) and sharpened.
Multi-crop (Sec. 3.1): the teacher sees the 2 global views, the student all views. Teacher update:
Eq. 1's EMA with a cosine schedule to 1.

Notes on defaults and deviations: docs/methods/dino.md
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..distributed import all_reduce_, world_size
from ..losses import dino_loss
from ..modalities.base import ViewPlan
from .base import Method
from .parts.multicrop import check_views, forward_multicrop
from .parts.teacher import MomentumTeacher


class WeightNormLinear(nn.Module):
    """A bias-free linear layer with weight normalisation (Salimans & Kingma 2016): row ``k`` of the
    weight is ``g_k * v_k / |v_k|``. With ``learn_norm=False`` (DINO's ``norm_last_layer``) ``g`` is
    fixed at 1, so only the direction ``v`` is learnt."""

    def __init__(self, in_dim: int, out_dim: int, learn_norm: bool = False):
        super().__init__()
        self.weight_v = nn.Parameter(torch.empty(out_dim, in_dim))
        nn.init.kaiming_uniform_(self.weight_v, a=5**0.5)  # nn.Linear's default, as DINO's
        self.weight_g = nn.Parameter(torch.ones(out_dim, 1)) if learn_norm else None

    def weight(self) -> torch.Tensor:
        w = F.normalize(self.weight_v, dim=1)
        return w * self.weight_g if self.weight_g is not None else w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight())


class DINOHead(nn.Module):
    """MLP (``layers`` linear layers, GELU, optional BatchNorm) to a ``bottleneck_dim`` vector,
    l2-normalised, then a weight-normalised linear layer to ``out_dim`` logits (DINO, Sec. 3.1)."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        layers: int = 3,
        use_bn: bool = False,
        norm_last_layer: bool = True,
    ):
        super().__init__()
        mods, dim = [], in_dim
        for _ in range(layers - 1):
            mods += [nn.Linear(dim, hidden_dim)] + ([nn.BatchNorm1d(hidden_dim)] if use_bn else []) + [nn.GELU()]
            dim = hidden_dim
        mods.append(nn.Linear(dim, bottleneck_dim))
        self.mlp = nn.Sequential(*mods)
        for m in self.mlp.modules():
            if isinstance(m, nn.Linear):  # truncated normal, std 0.02, zero bias (as the authors)
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.last_layer = WeightNormLinear(bottleneck_dim, out_dim, learn_norm=not norm_last_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last_layer(F.normalize(self.mlp(x), dim=-1))


class DINO(Method):
    name = "dino"
    capturable = True  # train.cuda_graph: no host-side state in its step
    # main_dino.py: clip_grad 3.0, each parameter's gradient on its own (utils.clip_gradients).
    optim_defaults = {"clip_grad": 3.0, "clip_grad_mode": "per_param"}
    paper = "Caron et al. 2021, Emerging Properties in Self-Supervised Vision Transformers (arXiv:2104.14294)"

    @dataclass
    class Args:
        out_dim: int = 4096  # K (65536 in the paper, for ImageNet)
        hidden_dim: int = 2048
        bottleneck_dim: int = 256
        head_layers: int = 3
        head_bn: bool = False  # the paper's ViT heads have none
        norm_last_layer: bool = True
        student_temp: float = 0.1
        teacher_temp: float = 0.07  # after the warm-up
        warmup_teacher_temp: float = 0.04
        warmup_teacher_temp_epochs: float = 30.0
        center_momentum: float = 0.9
        tau_base: float = 0.996
        freeze_last_layer: float = 1.0  # epochs during which the last layer gets no update
        eval_teacher: bool = True  # export/evaluate the teacher's backbone (the paper's choice)
        n_local: int = 8  # main_dino.py's default local_crops_number
        local_size: int = 0  # 0: half the global size
        global_scale: tuple[float, float] = (0.4, 1.0)  # main_dino.py's global_crops_scale
        local_scale: tuple[float, float] = (0.05, 0.4)  # and local_crops_scale

    def __init__(self, backbone: nn.Module, args: DINO.Args):
        super().__init__(backbone, args)
        self.head = DINOHead(
            backbone.feature_dim,
            args.out_dim,
            args.hidden_dim,
            args.bottleneck_dim,
            args.head_layers,
            args.head_bn,
            args.norm_last_layer,
        )
        self.teacher = MomentumTeacher(self._student(), args.tau_base)
        self.register_buffer("center", torch.zeros(1, args.out_dim))
        # The teacher temperature of the next forward: a buffer, so a resumed run continues the
        # schedule, and a tensor, so a compiled forward does not recompile when it changes.
        self.register_buffer("teacher_temp_now", torch.tensor(float(args.warmup_teacher_temp)))
        self.steps_per_epoch = self.total_steps = None

    def _student(self) -> nn.Sequential:
        # A view of the registered modules (not registered twice), paired with the teacher's copy.
        return nn.Sequential(self.backbone, self.head)

    @staticmethod
    def view_plan(args: DINO.Args) -> ViewPlan:
        options = {"local_size": args.local_size, "global_scale": args.global_scale, "local_scale": args.local_scale}
        return ViewPlan("multicrop", "dino", n_local=args.n_local, options=options)

    @property
    def encoder(self) -> nn.Module:
        return self.teacher.net[0] if self.args.eval_teacher else self.backbone

    def _steps(self, epochs: float) -> int:
        if self.steps_per_epoch is None:
            raise RuntimeError(
                "call configure(steps_per_epoch, total_steps) before training DINO: its schedules are given in epochs"
            )
        return round(epochs * self.steps_per_epoch)

    def teacher_temp_at(self, step: int) -> float:
        """Teacher temperature after ``step`` optimiser steps: linear from ``warmup_teacher_temp``
        to ``teacher_temp`` over ``warmup_teacher_temp_epochs``, then constant (the paper's
        per-epoch linear warm-up, here per step)."""
        a = self.args
        warmup = self._steps(a.warmup_teacher_temp_epochs)
        if step >= warmup:
            return a.teacher_temp
        return a.warmup_teacher_temp + (a.teacher_temp - a.warmup_teacher_temp) * step / warmup

    def configure(self, steps_per_epoch, total_steps):
        super().configure(steps_per_epoch, total_steps)
        self.teacher_temp_now.fill_(self.teacher_temp_at(0))  # a resumed run loads its own after this

    def forward(self, views):
        check_views(self.name, views, self.args.n_local, self.args.local_size)
        h = forward_multicrop(self.backbone, views)
        student = self.head(h).chunk(len(views))
        with torch.no_grad():
            t_backbone, t_head = self.teacher.net
            t_h = t_backbone(torch.cat(views[:2]))
            teacher = t_head(t_h)  # (2B, K)
        loss = dino_loss(student, teacher.chunk(2), self.center, self.args.student_temp, self.teacher_temp_now)
        if self.training:
            self._update_center(teacher)
        features = t_h if self.args.eval_teacher else h  # of the encoder evaluated and exported
        return {"loss": loss, "features": features[: len(views[0])].detach()}

    @torch.no_grad()
    def _update_center(self, teacher: torch.Tensor) -> None:
        """Eq. 4: ``c <- m c + (1 - m) mean_b g_t(x_b)`` over this step's teacher outputs."""
        batch_sum = all_reduce_(teacher.float().sum(dim=0, keepdim=True))  # over every rank's batch
        count = teacher.shape[0] * world_size()
        batch_mean = batch_sum / count
        self.center.mul_(self.args.center_momentum).add_(batch_mean, alpha=1 - self.args.center_momentum)

    def before_optimizer_step(self, step):
        if step < self._steps(self.args.freeze_last_layer):  # DINO's cancel_gradients_last_layer
            for p in self.head.last_layer.parameters():
                p.grad = None

    def momentum_pairs(self):
        return [(self.teacher, self._student())]

    def after_step(self, step, total_steps):
        logs = super().after_step(step, total_steps)
        temp = self.teacher_temp_at(step)
        self.teacher_temp_now.fill_(temp)
        return {**logs, "teacher_temp": temp}

    def step_phase(self, step):
        return step < self._steps(self.args.freeze_last_layer)

    def step_scalars(self):
        return {**super().step_scalars(), "teacher_temp": self.teacher_temp_at}

    def step_logs(self, step):
        return {**super().step_logs(step), "teacher_temp": self.teacher_temp_at(step)}

    def after_step_tensors(self, values):
        super().after_step_tensors(values)
        self.teacher_temp_now.copy_(values["teacher_temp"])
