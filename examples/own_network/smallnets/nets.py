"""SmallCNN: a three-block conv net small enough to train on a laptop CPU.

What lmcpipe needs of it (docs/own-network-and-data.md, "The network contract"):
- it is a ``torch.nn.Module`` built as ``SmallCNN(input_shape=..., num_classes=..., **model_args)``;
- it returns ``(batch, num_classes)`` logits;
- its output layer is the last linear layer (``fc``, 4 x width x classes weights after global
  average pooling), which IMP leaves unpruned by default;
- nothing else: lmcpipe initialises it (seeded), prunes its conv and linear weights and trains it.
"""

from __future__ import annotations

import torch
from torch import nn


class SmallCNN(nn.Module):
    # forward never mixes channels across members of a stack (convs, ReLU, pools, flatten, one
    # linear layer), so lmcpipe may train a stack of its runs as one grouped network
    groupable = True

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, width: int = 16) -> None:
        super().__init__()
        channels = input_shape[0]  # any height and width: global average pooling at the end
        self.conv1 = nn.Conv2d(channels, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.conv3 = nn.Conv2d(2 * width, 4 * width, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        x = self.gap(torch.relu(self.conv3(x)))
        return self.fc(x.flatten(1))
