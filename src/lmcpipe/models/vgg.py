"""VGG-16 for CIFAR with BatchNorm: the 14.7 M-parameter network of paper A.

Thirteen 3x3 conv layers (64, 64, M, 128, 128, M, 256 x 3, M, 512 x 3, M, 512 x 3), each followed
by BatchNorm and ReLU; ``M`` is a 2x2 max-pool. There is no max-pool after the last block: a
global average pool (2x2 -> 1x1 on 32x32 inputs) feeds a single linear layer 512 -> classes.
Each conv keeps its bias, as open_lth's VGG does (14,728,266 parameters with 10 classes), though
the BatchNorm after it makes the bias redundant; ``vgg16_nobias`` drops them (14,724,042), the
variant lmcpipe used before matching open_lth. Biases are never pruned.

IMP does not prune the output layer (``fc.weight``), as in Frankle's open_lth; every conv weight
is prunable. Initialisation is left to ``lmcpipe.models.initialise``.
"""

from __future__ import annotations

import torch
from torch import nn

from lmcpipe.models.base import PrunableModel

PLAN_16: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512,
)


class CifarVGG(PrunableModel):
    """A VGG conv stack described by a plan of widths and ``"M"`` (max-pool) entries."""

    excluded = ("fc.weight",)
    groupable = True  # conv, BatchNorm, ReLU, max-pool and a mean over H, W: all per channel

    def __init__(
        self,
        input_shape: tuple[int, ...] = (3, 32, 32),
        num_classes: int = 10,
        plan: tuple[int | str, ...] = PLAN_16,
        conv_bias: bool = True,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        channels = input_shape[0]
        for entry in plan:
            if entry == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                width = int(entry)
                layers += [
                    nn.Conv2d(channels, width, 3, padding=1, bias=conv_bias),
                    nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True),
                ]
                channels = width
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


class VGG16(CifarVGG):
    """VGG-16 (13 conv layers + 1 linear layer)."""

    def __init__(self, input_shape: tuple[int, ...] = (3, 32, 32), num_classes: int = 10):
        super().__init__(input_shape, num_classes, PLAN_16)


class VGG16NoBias(CifarVGG):
    """VGG-16 without conv biases (redundant before BatchNorm): not open_lth's network."""

    def __init__(self, input_shape: tuple[int, ...] = (3, 32, 32), num_classes: int = 10):
        super().__init__(input_shape, num_classes, PLAN_16, conv_bias=False)
