"""Heads shared by the methods: the projector/predictor MLP, written once."""

from __future__ import annotations

from torch import nn


class ScaleOnlyBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm with a learnt scale and no shift (SimCLR's output BatchNorm: the TF code's
    ``batch_norm(center=False)`` on the projection head's last layer)."""

    def __init__(self, dim: int):
        super().__init__(dim)
        self.bias.requires_grad_(False)  # stays 0: no shift


def mlp(
    in_dim: int,
    hidden_dim: int,
    out_dim: int,
    layers: int = 2,
    last_bn: bool | str = False,
    last_bias: bool | None = None,
) -> nn.Sequential:
    """``layers`` linear layers with BatchNorm and ReLU between them (BYOL's, SimCLR's and
    Barlow Twins' heads are instances: Linear-BN-ReLU-Linear for ``layers=2``).

    ``last_bn``: BatchNorm on the output too, without affine parameters (True: SimSiam's, MoCo v3's,
    NNCLR's) or with a scale and no shift (``"scale"``: SimCLR's). ``last_bias``: a bias on the last
    linear layer (default: only without an output BatchNorm; MoCo v3's predictor has none).
    """
    assert layers >= 1 and last_bn in (True, False, "scale")
    mods, dim = [], in_dim
    for _ in range(layers - 1):
        mods += [nn.Linear(dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True)]
        dim = hidden_dim
    mods.append(nn.Linear(dim, out_dim, bias=not last_bn if last_bias is None else last_bias))
    if last_bn == "scale":
        mods.append(ScaleOnlyBatchNorm1d(out_dim))
    elif last_bn:
        mods.append(nn.BatchNorm1d(out_dim, affine=False))
    return nn.Sequential(*mods)
