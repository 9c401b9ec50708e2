"""LeNet-300-100: the fully connected MNIST network of paper A (266 K parameters)."""

from __future__ import annotations

import math

import torch
from torch import nn

from lmcpipe.models.base import PrunableModel


class LeNet300100(PrunableModel):
    excluded = ("fc3.weight",)  # open_lth: the output layer is not pruned
    groupable = True  # flatten and three Linear layers: nothing mixes members' features

    def __init__(self, input_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10):
        super().__init__()
        self.fc1 = nn.Linear(math.prod(input_shape), 300)
        self.fc2 = nn.Linear(300, 100)
        self.fc3 = nn.Linear(100, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.fc1(x.flatten(1)))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)
