"""Data streams: which examples step t of stream (order, copy) sees, and their augmentation.

The data order of step t is a pure function of (order, copy, epoch) (see ``seeds``) and the
augmentation draws of (order, copy, step, position in the batch) (``augment.counter_bits``), so
a resumed run sees exactly the batches an uninterrupted one would, the two copies of a pair see
different ones, and a member of a stacked cohort sees the batches it would see alone.

``Streams`` builds a step's batch for K streams at once: one gather, one ``prepare``, one
augmentation call, whatever K is (a single run is K = 1).
"""

from __future__ import annotations

import math
import threading

import torch

from lmcpipe import augment, data
from lmcpipe.data.prefetch import Prefetcher
from lmcpipe.hparams import TrainHParams
from lmcpipe.seeds import generator


def epoch_permutation(n: int, order: int, copy: int, epoch: int) -> torch.Tensor:
    """The order of the n training examples in ``epoch`` of stream (order, copy), on the CPU
    (drawn there so that every machine draws the same one)."""
    return torch.randperm(n, generator=generator("order", order, copy, epoch))


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
        perm = epoch_permutation(n, order, copy, epoch).to(device)
        if cache is None:
            return perm[i * batch_size : (i + 1) * batch_size]
        cache.update(epoch=epoch, perm=perm)
    return cache["perm"][i * batch_size : (i + 1) * batch_size]


class Streams:
    """The training batches of K streams ``[(order_j, copy_j), ...]`` of one run or cohort.

    ``batch(step)`` returns ``(x, y)``: for K > 1, x is (B*K, C, H, W) in b-major order (row
    b*K + j is member j's b-th example, so ``x.view(B, K*C, H, W)`` is free) and y is (B, K);
    for K = 1, x is (B, C, H, W) and y is (B,). Member j's rows are ``batch_indices`` of its
    stream, gathered for all members by ONE ``index_select`` ((K, B) indices: each epoch's K
    permutations are stacked once, as (n, K), so a step's indices are a contiguous slice),
    prepared by ONE ``dataset.prepare`` and augmented by ONE call whose image (b, j) draws
    ``counter_bits(key_j, step, b * SLOTS + draw)``. Every part is per row or elementwise, so
    member j's images and labels are bit for bit those of ``Streams(hp, dataset, [stream_j])``.
    The epoch's last batch keeps its short length (50,000 = 390 x 128 + 80).

    Batches go to ``dataset.device``; ``hp`` gives the batch size and the dataset's
    augmentation. A host-resident set (memory-mapped ImageNet) is gathered one step ahead on a
    background thread (``data.prefetch``; pinned buffers and a side-stream copy on CUDA) unless
    ``prefetch=False``; the batches are the same either way. ``close()`` (or ``with``) stops the
    thread and frees its buffers.
    """

    def __init__(self, hp: TrainHParams, dataset: data.Data, streams: list[tuple[int, int]], *,
                 prefetch: bool = True):
        self.dataset, self.streams, self.k = dataset, [tuple(s) for s in streams], len(streams)
        self.x, self.y, self.device = dataset.train_x, dataset.train_y, dataset.device
        self.n, self.batch_size = len(self.x), hp.batch_size
        self.per_epoch = math.ceil(self.n / self.batch_size)
        name = hp.augment or data.DATASETS[hp.dataset].augment
        self.augment = None if name == "none" else augment.AUGMENTATIONS[name]
        self.fill = dataset.fill  # computed once, not per step
        keys = [augment.stream_key(o, c) for o, c in self.streams]
        stacked = torch.tensor(keys, device=self.device).view(1, self.k, 2)
        self._key1 = stacked[..., 1:]  # (1, K, 1)
        # key0 enters the per-step hash: for K = 1 as an int, so a single run hashes its step
        # in Python (no tensor op); the bits are the same
        self._key0 = keys[0][0] if self.k == 1 else stacked[..., :1]
        self._words: dict[int, torch.Tensor] = {}  # n draws -> position_words (B, K, n)
        self._perms: dict[int, torch.Tensor] = {}  # epoch -> (n, K) on the images' device
        self._lock = threading.Lock()  # the prefetch thread asks for epochs too
        self._prefetch = (Prefetcher(self.x, self.y, self.device, self.indices,
                                     self.batch_size * self.k, dataset.prepare)
                          if prefetch and dataset.host_resident else None)

    def _epoch(self, epoch: int) -> torch.Tensor:
        with self._lock:
            if epoch not in self._perms:
                perms = [epoch_permutation(self.n, o, c, epoch) for o, c in self.streams]
                self._perms[epoch] = torch.stack(perms, dim=1).to(self.x.device)
                for old in [e for e in self._perms if abs(e - epoch) > 1]:
                    del self._perms[old]  # the training thread's epoch and the prefetcher's
            return self._perms[epoch]

    def indices(self, step: int) -> torch.Tensor:
        """Step's example indices for all members, b-major ((rows * K,), rows <= B)."""
        epoch, i = divmod(step, self.per_epoch)
        return self._epoch(epoch)[i * self.batch_size : (i + 1) * self.batch_size].view(-1)

    def bits(self, step: int | torch.Tensor, rows: int) -> augment.Bits:
        """The random words of step's first ``rows`` positions of every member (b-major)."""

        def draw(n: int) -> torch.Tensor:
            if n not in self._words:
                if n > augment.SLOTS:
                    raise ValueError(f"{n} draws per image; at most {augment.SLOTS}")
                counter = (torch.arange(self.batch_size, device=self.device).view(-1, 1, 1)
                           * augment.SLOTS + torch.arange(n, device=self.device))
                self._words[n] = augment.position_words(self._key1, counter)
            words = augment.step_bits(self._words[n][:rows], self._key0, step)
            return words.view(rows * self.k, n)

        return draw

    def gather(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Step's rows prepared (normalised float) and labels, on the device, before
        augmentation: the synchronous path (one ``index_select``, one ``prepare``)."""
        idx = self.indices(step)
        return (self.dataset.prepare(self.x.index_select(0, idx)),
                self.y.index_select(0, idx).to(self.device, non_blocking=True))

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Step's training batch (see the class docstring)."""
        xb, yb = self._prefetch.get(step) if self._prefetch else self.gather(step)
        rows = len(yb) // self.k
        if self.augment is not None:
            xb = self.augment(xb, self.bits(step, rows), self.fill)
        return xb, (yb if self.k == 1 else yb.view(rows, self.k))

    def close(self) -> None:
        if self._prefetch is not None:
            self._prefetch.close()

    def __enter__(self) -> Streams:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
