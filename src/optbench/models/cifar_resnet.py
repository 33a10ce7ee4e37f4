"""The CIFAR ResNet skeleton of the Shake-Shake paper (Gastaldi 2017), and ``resnet_small``.

Skeleton: conv3x3(16)-BN stem; three stages of residual blocks whose widths are given, the
first block of stages 2 and 3 striding by 2; ReLU, global average pooling, linear layer.
Blocks are pre-activation style (each branch starts with a ReLU), as in Gastaldi's code.
"""

from collections import OrderedDict
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

STEM_WIDTH = 16

Block = Callable[[int, int, int], nn.Module]  # (in_channels, out_channels, stride) -> block


def residual_branch(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """ReLU-Conv3x3-BN-ReLU-Conv3x3-BN; the first convolution carries the stride."""
    return nn.Sequential(
        nn.ReLU(),
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
    )


class ShiftedPoolShortcut(nn.Module):
    """The Shake-Shake paper's shortcut where the width changes.

    ReLU, then two 1x1 convolutions with half the output channels each, one on the input
    subsampled with ``stride`` (1x1 average pooling), the other on the input shifted by one
    pixel right and down before the same pooling; the two are concatenated and batch-normalized.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(1, stride)
        self.conv = nn.Conv2d(in_channels, out_channels // 2, 1, bias=False)
        self.shifted_conv = nn.Conv2d(in_channels, out_channels // 2, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        shifted = F.pad(x, (1, -1, 1, -1))
        return self.bn(torch.cat([self.conv(self.pool(x)), self.shifted_conv(self.pool(shifted))], 1))


def shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    if in_channels == out_channels and stride == 1:
        return nn.Identity()
    return ShiftedPoolShortcut(in_channels, out_channels, stride)


class ResidualBlock(nn.Module):
    """shortcut(x) + branch(x), one branch."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.branch = residual_branch(in_channels, out_channels, stride)
        self.shortcut = shortcut(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.branch(x)


def cifar_resnet(
    block: Block, *, widths: tuple[int, ...], blocks_per_stage: int, num_classes: int, in_channels: int
) -> nn.Sequential:
    """The skeleton above, initialized as in Gastaldi's code."""
    layers = [nn.Conv2d(in_channels, STEM_WIDTH, 3, padding=1, bias=False), nn.BatchNorm2d(STEM_WIDTH)]
    channels = STEM_WIDTH
    for stage, width in enumerate(widths):
        for index in range(blocks_per_stage):
            layers.append(block(channels, width, 2 if stage > 0 and index == 0 else 1))
            channels = width
    model = nn.Sequential(
        OrderedDict(
            body=nn.Sequential(*layers),
            head=nn.Sequential(nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes)),
        )
    )
    _init_weights(model)
    return model


def _init_weights(model: nn.Module) -> None:
    """He-normal convolutions (fan-out), zero linear bias; BatchNorm keeps its (1, 0) default."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.Linear):
            nn.init.zeros_(module.bias)


def build_resnet_small(*, num_classes: int, input_shape: tuple[int, ...]) -> nn.Sequential:
    """A fast single-branch ResNet-14 (2 blocks per stage, widths 32/64/128): 0.69M parameters."""
    return cifar_resnet(
        ResidualBlock, widths=(32, 64, 128), blocks_per_stage=2, num_classes=num_classes, in_channels=input_shape[0]
    )
