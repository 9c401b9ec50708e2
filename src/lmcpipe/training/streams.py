"""Data streams: which examples step t of stream (order, copy) sees, and their augmentation.

The data order of step t is a pure function of (order, copy, epoch) (see ``seeds``) and the
augmentation draws of (order, copy, step), so a resumed run sees exactly the batches an
uninterrupted one would, and the two copies of a pair see different ones.
"""

from __future__ import annotations

import math

import torch

from lmcpipe import data
from lmcpipe.seeds import generator


def batch_indices(n: int, batch_size: int, order: int, copy: int, step: int,
                  cache: dict | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
    """Example indices of iteration ``step`` of data-order stream (order, copy).

    Each epoch is a fresh permutation seeded by (order, copy, epoch); an epoch has ceil(n / B)
    iterations, the last one possibly short. The permutation is drawn on the CPU (the same on
    every machine) and moved to ``device`` once per epoch, so a step costs no host transfer.
    """
    per_epoch = math.ceil(n / batch_size)
    epoch, i = divmod(step, per_epoch)
    if cache is None or cache.get("epoch") != epoch:
        perm = torch.randperm(n, generator=generator("order", order, copy, epoch)).to(device)
        if cache is None:
            return perm[i * batch_size : (i + 1) * batch_size]
        cache.update(epoch=epoch, perm=perm)
    return cache["perm"][i * batch_size : (i + 1) * batch_size]


def augmenter(dataset_name: str, dataset: data.Data):
    """The dataset's training augmentation as ``f(batch, order, copy, step)``, or None.

    Draws come from a generator seeded by (order, copy, step): the two copies of a pair see
    different draws, and a resumed run sees the same draws as an uninterrupted one.
    """
    name = data.DATASETS[dataset_name].augment
    if name == "none":
        return None
    from lmcpipe import augment

    fn = augment.AUGMENTATIONS[name]
    return lambda x, order, copy, step: fn(
        x, augment.augmentation_generator(order, copy, step, x.device), dataset.fill)
