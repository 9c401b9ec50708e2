"""What every registered network provides beyond ``nn.Module``."""

from __future__ import annotations

import torch
from torch import nn


class PrunableModel(nn.Module):
    """A network that names the weights IMP may prune.

    Subclasses set ``excluded``: parameter names never pruned (e.g. LeNet's output layer). Only
    conv/linear weights are candidates; biases and BatchNorm parameters are never pruned.
    """

    excluded: tuple[str, ...] = ()
    # True when ``forward`` never mixes channels across stacked members (no channel concat or
    # split), so ``training.grouped`` may run K members as one network; checked per layer there
    groupable: bool = False

    def weight_names(self) -> list[str]:
        """Every conv/linear weight: open_lth's ``prunable_layer_names``, the set its mask holds
        and its pruning count and density are over."""
        return [f"{mod_name}.weight" if mod_name else "weight"
                for mod_name, module in self.named_modules()
                if isinstance(module, nn.Linear | nn.Conv2d)]

    def prunable_names(self) -> list[str]:
        """The weights IMP prunes: ``weight_names`` minus ``excluded``."""
        return [n for n in self.weight_names() if n not in self.excluded]

    def frozen_names(self) -> list[str]:
        """Conv/linear weights never pruned (``excluded``), which open_lth counting includes."""
        return [n for n in self.weight_names() if n in self.excluded]

    def training_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The loss the training loop minimises (cross-entropy of the output; a network with an
        auxiliary head, Inception-v3, adds that head's term)."""
        return nn.functional.cross_entropy(self(x), y)
