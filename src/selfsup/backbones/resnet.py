"""ResNets (He et al. 2016, "Deep Residual Learning for Image Recognition") with the stems that
self-supervised work on small images uses.

* ``stem="imagenet"``: 7x7 stride-2 convolution and 3x3 max-pool, as in the paper.
* ``stem="cifar"``: one 3x3 stride-1 convolution and no max-pool, the variant SimCLR (Chen et al.
  2020, Appendix B.9) and the peer libraries use for 32x32 inputs: the feature map stays at full
  resolution until the first strided stage.

The classifier is omitted: ``forward`` returns the globally pooled features, ``feature_dim`` wide.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import unknown
from .registry import Family, register


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = _shortcut(cin, cout, stride)
        self.last_bn = self.bn2

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        # Stride on the 3x3 convolution ("ResNet v1.5"), as torchvision and the SSL papers use.
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.shortcut = _shortcut(cin, cout, stride)
        self.last_bn = self.bn3

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return torch.relu(out + self.shortcut(x))


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class ResNet(nn.Module):
    """A ResNet trunk: stem, one stage per entry of ``layers``, global average pooling."""

    def __init__(
        self,
        block: type,
        layers: list[int],
        widths: list[int],
        in_channels: int = 3,
        stem: str = "cifar",
        zero_init_residual: bool = False,
    ):
        super().__init__()
        if stem == "cifar":
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)
            )
        elif stem == "imagenet":
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, widths[0], 7, 2, 3, bias=False),
                nn.BatchNorm2d(widths[0]),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(3, 2, 1),
            )
        else:
            raise ValueError(f"stem must be 'cifar' or 'imagenet', not {stem!r}")
        stages, cin = [], widths[0]
        for i, (n, width) in enumerate(zip(layers, widths)):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(block(cin, width, stride))
                cin = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.feature_dim = cin
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if zero_init_residual:  # Goyal et al. 2017: each block starts as the identity
            for m in self.modules():
                if hasattr(m, "last_bn"):
                    nn.init.zeros_(m.last_bn.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.stages(self.stem(x)).mean(dim=(2, 3)), 1)


STEMS = ("cifar", "imagenet")
_WIDE = [64, 128, 256, 512]
PRESETS = {
    "resnet18": (BasicBlock, [2, 2, 2, 2], _WIDE),
    "resnet34": (BasicBlock, [3, 4, 6, 3], _WIDE),
    "resnet50": (Bottleneck, [3, 4, 6, 3], _WIDE),
    # For 8x8 and 16x16 inputs (the digits demo): three stages, 8 -> 4 -> 2 at 8x8, 128-d features.
    "resnet-small": (BasicBlock, [1, 1, 1], [32, 64, 128]),
}


@dataclass
class ResNetOptions:
    stem: str = "cifar"  # cifar (3x3 conv, stride 1, no max-pool) | imagenet (7x7/2 conv + max-pool)
    zero_init_residual: bool = False  # each block starts as the identity (Goyal et al. 2017)


def build(name: str, input_spec: dict, options: ResNetOptions) -> ResNet:
    if options.stem not in STEMS:
        raise unknown("stem", options.stem, STEMS)
    block, layers, widths = PRESETS[name]
    return ResNet(
        block,
        layers,
        widths,
        in_channels=input_spec["channels"],
        stem=options.stem,
        zero_init_residual=options.zero_init_residual,
    )


register(Family("resnet", tuple(PRESETS), ResNetOptions, build, ("image",)))
