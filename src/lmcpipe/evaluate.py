"""Loss and classification error of a network on a split, in large no-grad batches."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 5000,
             prepare=None) -> tuple[float, float]:
    """Mean cross-entropy and error rate (fraction misclassified).

    ``prepare`` turns a stored chunk into model input (``Data.prepare``: uint8 -> normalised).
    """
    was_training = model.training
    model.eval()
    loss = wrong = None
    for i in range(0, len(x), batch):
        chunk = x[i : i + batch]
        out = model(prepare(chunk) if prepare else chunk)
        target = y[i : i + batch].to(out.device)  # images may be host-resident (ImageNet)
        part = nn.functional.cross_entropy(out, target, reduction="sum").double()
        miss = (out.argmax(1) != target).sum()
        loss, wrong = (part, miss) if loss is None else (loss + part, wrong + miss)
    model.train(was_training)
    n = len(x)
    return float(loss) / n, float(wrong) / n


def splits(data, train_examples: int = 0) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The evaluation sets: the (optionally truncated) training set and the test set."""
    n = train_examples or len(data.train_x)
    return {"train": (data.train_x[:n], data.train_y[:n]), "test": (data.test_x, data.test_y)}


def evaluate_splits(model: nn.Module, data, train_examples: int = 0, batch: int = 5000
                    ) -> dict[str, tuple[float, float]]:
    return {name: evaluate(model, x, y, batch, prepare=data.prepare)
            for name, (x, y) in splits(data, train_examples).items()}
