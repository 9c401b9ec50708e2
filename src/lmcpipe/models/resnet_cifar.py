"""ResNet-20: the CIFAR residual network of paper A (He et al. 2016, sec. 4.2; ~272 K parameters).

Layout: a 3x3 conv with 16 filters, then three stages of ``(depth - 2) / 6`` basic blocks with
16, 32 and 64 filters (the first block of stages 2 and 3 halves the resolution with a stride-2
conv), global average pooling and one linear layer. Every conv is followed by BatchNorm. Where a
block changes the shape, its shortcut is a strided 1x1 conv + BatchNorm (option B); otherwise it
is the identity. Convs have no bias (BatchNorm follows them); the linear layer has one.

IMP prunes every conv and linear weight, 1x1 shortcut convs and the output layer included, so
nothing is excluded. Initialisation is left to ``lmcpipe.models.initialise``.
"""

from __future__ import annotations

import torch
from torch import nn

from lmcpipe.models.base import PrunableModel


class BasicBlock(nn.Module):
    """Two 3x3 conv + BN layers with a residual connection; ReLU after the sum."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        if stride != 1 or in_channels != out_channels:
            self.shortcut: nn.Module = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class CifarResNet(PrunableModel):
    """The CIFAR ResNet family: depth = 6n + 2, widths (w, 2w, 4w)."""

    excluded: tuple[str, ...] = ()
    groupable = True  # conv, BatchNorm, ReLU, sums and a mean over H, W: all per channel

    def __init__(
        self,
        input_shape: tuple[int, ...] = (3, 32, 32),
        num_classes: int = 10,
        depth: int = 20,
        width: int = 16,
    ):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n + 2 with n >= 1, got {depth}")
        blocks_per_stage = (depth - 2) // 6
        self.conv = nn.Conv2d(input_shape[0], width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        blocks: list[nn.Module] = []
        channels = width
        for stage in range(3):
            out_channels = width * 2**stage
            for i in range(blocks_per_stage):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(BasicBlock(channels, out_channels, stride))
                channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.conv(x)))
        x = self.blocks(x)
        return self.fc(x.mean(dim=(2, 3)))


class ResNet20(CifarResNet):
    """ResNet-20 (three blocks per stage, widths 16/32/64)."""

    def __init__(self, input_shape: tuple[int, ...] = (3, 32, 32), num_classes: int = 10):
        super().__init__(input_shape, num_classes, depth=20, width=16)
