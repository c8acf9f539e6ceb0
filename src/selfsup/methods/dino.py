"""DINO: self-DIstillation with NO labels (Caron et al. 2021, "Emerging Properties in
Self-Supervised Vision Transformers", ICCV, arXiv:2104.14294).

A student (backbone + DINO head) matches the output distribution of a momentum teacher of the same
architecture across views (Eq. 2-3, :func:`~selfsup.losses.dino_loss`). Collapse is avoided by
centring the teacher's outputs with a running mean (Eq. 4, momentum 0.9) and sharpening them with
a low temperature (0.04 warmed up linearly to 0.07 over the first 30 epochs; student 0.1).
Multi-crop (Sec. 3.1): the teacher sees only the 2 global views, the student all views.
Teacher update: Eq. 1's EMA with the cosine schedule from 0.996 to 1 (Sec. 3.1, App.).
The head (Sec. 3.1, App. "Projection head"): 3-layer MLP (hidden 2048, GELU, bottleneck 256),
l2-normalisation, weight-normalised linear layer to K outputs (65536 in the paper), whose
direction is kept unit-norm (``norm_last_layer``) and which is frozen during the first epoch.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..losses import dino_loss
from ..distributed import all_reduce_, world_size
from .base import Method
from .multicrop import (DINO_GLOBAL_SCALE, DINO_LOCAL_SCALE, check_views, forward_multicrop,
                        local_size_for, multicrop_views)
from .teacher import MomentumTeacher, cosine_tau


class WeightNormLinear(nn.Module):
    """A bias-free linear layer with weight normalisation (Salimans & Kingma 2016): row ``k`` of the
    weight is ``g_k * v_k / |v_k|``. With ``learn_norm=False`` (DINO's ``norm_last_layer``) ``g`` is
    fixed at 1, so only the direction ``v`` is learnt."""

    def __init__(self, in_dim: int, out_dim: int, learn_norm: bool = False):
        super().__init__()
        self.weight_v = nn.Parameter(torch.empty(out_dim, in_dim))
        nn.init.kaiming_uniform_(self.weight_v, a=5 ** 0.5)  # nn.Linear's default, as DINO's
        self.weight_g = nn.Parameter(torch.ones(out_dim, 1)) if learn_norm else None

    def weight(self) -> torch.Tensor:
        w = F.normalize(self.weight_v, dim=1)
        return w * self.weight_g if self.weight_g is not None else w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight())


class DINOHead(nn.Module):
    """MLP (``layers`` linear layers, GELU, optional BatchNorm) to a ``bottleneck_dim`` vector,
    l2-normalised, then a weight-normalised linear layer to ``out_dim`` logits (DINO, Sec. 3.1)."""

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int = 2048, bottleneck_dim: int = 256,
                 layers: int = 3, use_bn: bool = False, norm_last_layer: bool = True):
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
    paper = "Caron et al. 2021, Emerging Properties in Self-Supervised Vision Transformers (arXiv:2104.14294)"

    @dataclass
    class Args:
        out_dim: int = 4096               # K (65536 in the paper, for ImageNet)
        hidden_dim: int = 2048
        bottleneck_dim: int = 256
        head_layers: int = 3
        head_bn: bool = False             # the paper's ViT heads have none
        norm_last_layer: bool = True
        student_temp: float = 0.1
        teacher_temp: float = 0.07        # after the warm-up
        warmup_teacher_temp: float = 0.04
        warmup_teacher_temp_epochs: float = 30.0
        center_momentum: float = 0.9
        tau_base: float = 0.996
        freeze_last_layer: float = 1.0    # epochs during which the last layer gets no update
        eval_teacher: bool = True         # export/evaluate the teacher's backbone (the paper's choice)
        n_local: int = 8                  # main_dino.py's default local_crops_number
        local_size: int = 0               # 0: half the global size
        global_scale: tuple[float, float] = DINO_GLOBAL_SCALE
        local_scale: tuple[float, float] = DINO_LOCAL_SCALE

    def __init__(self, backbone: nn.Module, args: "DINO.Args"):
        super().__init__(backbone, args)
        self.head = DINOHead(backbone.feature_dim, args.out_dim, args.hidden_dim, args.bottleneck_dim,
                             args.head_layers, args.head_bn, args.norm_last_layer)
        self.teacher = MomentumTeacher(self._student())
        self.register_buffer("center", torch.zeros(1, args.out_dim))
        # The teacher temperature of the next forward: a buffer, so a resumed run continues the
        # schedule, and a tensor, so a compiled forward does not recompile when it changes.
        self.register_buffer("teacher_temp_now", torch.tensor(float(args.warmup_teacher_temp)))
        self.steps_per_epoch = self.total_steps = None
        self._tau = args.tau_base

    def _student(self) -> nn.Sequential:
        # A view of the registered modules (not registered twice), paired with the teacher's copy.
        return nn.Sequential(self.backbone, self.head)

    @staticmethod
    def default_views(size: int, args: "DINO.Args | None" = None) -> list:
        args = args or DINO.Args()
        return multicrop_views(size, local_size_for(size, args.local_size), args.n_local,
                               args.global_scale, args.local_scale)

    @property
    def encoder(self) -> nn.Module:
        return self.teacher.net[0] if self.args.eval_teacher else self.backbone

    def _steps(self, epochs: float) -> int:
        if self.steps_per_epoch is None:
            raise RuntimeError("call configure(steps_per_epoch, total_steps) before training DINO: its "
                               "schedules are given in epochs")
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
        student = self.head(forward_multicrop(self.backbone, views)).chunk(len(views))
        teacher = self.teacher(torch.cat(views[:2]))  # (2B, K), no gradient
        loss = dino_loss(student, teacher.chunk(2), self.center, self.args.student_temp, self.teacher_temp_now)
        if self.training:
            self._update_center(teacher)
        return {"loss": loss}

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

    def after_step(self, step, total_steps):
        # ``step`` optimiser steps have been taken; tau for the update that follows step k=step-1.
        self._tau = cosine_tau(step - 1, total_steps, self.args.tau_base)
        self.teacher.update(self._student(), self._tau)
        temp = self.teacher_temp_at(step)
        self.teacher_temp_now.fill_(temp)
        return {"tau": self._tau, "teacher_temp": temp}
