"""MoCo v3: An Empirical Study of Training Self-Supervised Vision Transformers (Chen, Xie & He 2021,
ICCV, arXiv:2104.02057), with a ResNet backbone.

A query encoder (backbone, projection MLP, prediction MLP) and a momentum key encoder (backbone,
projection MLP) embed two views; there is no queue: the keys of the same batch are the negatives.
Loss: Algorithm 1, ``ctr(q1, k2) + ctr(q2, k1)`` with ``ctr(q, k) = CrossEntropy(q k^T / tau) * 2 tau``
on L2-normalised q and k (tau = 0.2; the ``2 tau`` factor makes the gradient scale insensitive to
tau). Heads (the paper's implementation details): projector 3 layers, predictor 2 layers, BatchNorm
after every hidden layer and on the projector's output. Momentum (the paper's implementation
details and the authors' code's ``--moco-m-cos``): m increases from 0.99 to 1 along a cosine. Views: BYOL's asymmetric pair, which
the paper adopts.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..augment.views import byol_views
from ..losses import infonce
from ..distributed import gather, gather_nograd
from .base import Method, views_of_size
from .heads import mlp
from .teacher import MomentumTeacher, cosine_tau


class MoCoV3(Method):
    name = "mocov3"
    paper = "Chen, Xie & He 2021, An Empirical Study of Training Self-Supervised Vision Transformers (arXiv:2104.02057)"

    @dataclass
    class Args:
        proj_hidden: int = 4096
        proj_dim: int = 256
        proj_layers: int = 3     # the paper's text; the authors' ResNet code uses 2
        pred_hidden: int = 4096
        temperature: float = 0.2
        tau_base: float = 0.99   # momentum at step 0, increased to 1 along a cosine

    def __init__(self, backbone: nn.Module, args: "MoCoV3.Args"):
        super().__init__(backbone, args)
        self.projector = mlp(backbone.feature_dim, args.proj_hidden, args.proj_dim, layers=args.proj_layers,
                             last_bn=True)
        self.predictor = mlp(args.proj_dim, args.pred_hidden, args.proj_dim)
        self.momentum_encoder = MomentumTeacher(self._online())
        self._tau = args.tau_base

    def _online(self) -> nn.Sequential:
        return nn.Sequential(self.backbone, self.projector)

    default_views = views_of_size(byol_views)

    def forward(self, views):
        v1, v2 = views
        online = self._online()
        q1, q2 = self.predictor(online(v1)), self.predictor(online(v2))
        k1, k2 = self.momentum_encoder(v1), self.momentum_encoder(v2)
        t = self.args.temperature
        q1, q2, k1, k2 = gather(q1), gather(q2), gather_nograd(k1), gather_nograd(k2)  # in-batch negatives: global
        loss = 2 * t * (infonce(q1, k2, t) + infonce(q2, k1, t))
        return {"loss": loss}

    def after_step(self, step, total_steps):
        self._tau = cosine_tau(step - 1, total_steps, self.args.tau_base)
        self.momentum_encoder.update(self._online(), self._tau)
        return {"tau": self._tau}
