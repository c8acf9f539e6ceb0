"""What every method is: an ``nn.Module`` built from a backbone and its own typed arguments.

Contract (the training loop relies on nothing else):

* ``Args``: a dataclass of the method's hyper-parameters (validated from the config's
  ``method_args``);
* ``default_views(size)``: the list of :class:`~selfsup.augment.views.ViewConfig` the paper uses;
* ``forward(views) -> dict``: ``"loss"`` (a scalar tensor) plus any scalars worth logging;
* ``after_step(step, total_steps) -> dict``: state updates after the optimiser step (momentum
  teacher, queues, centres); returns scalars to log;
* ``encoder``: the backbone evaluated and exported.

Teachers, queues and prototypes are submodules or buffers, so ``state_dict`` checkpoints them.
A method knows nothing of files, devices or logging.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn


class Method(nn.Module):
    name: ClassVar[str]
    paper: ClassVar[str]

    @dataclass
    class Args:
        pass

    def __init__(self, backbone: nn.Module, args):
        super().__init__()
        self.backbone = backbone
        self.args = args

    @staticmethod
    def default_views(size: int) -> list:
        raise NotImplementedError

    @property
    def encoder(self) -> nn.Module:
        return self.backbone

    def forward(self, views: list[torch.Tensor]) -> dict:
        raise NotImplementedError

    def after_step(self, step: int, total_steps: int) -> dict:
        return {}
