"""A dataset as tensors (``Data``) and the training-pixel statistics that normalise it.

``loader`` builds a ``Data``; the decode cache also needs ``train_stats``, for its side files.
Both live here, in a module that knows no on-disk format, so that the cache (used by the format
modules) and the loader (which uses the format modules) form no import cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from lmcpipe.augment import channel_stats


@dataclass
class Data:
    """Train and test splits as image tensors (N, C, H, W) and int64 labels.

    MNIST-style and CIFAR images are held normalised in float32 on ``device``. ImageNet images stay
    uint8 in a memory-mapped file on the host (``imagefolder.cached_split``): ``prepare`` moves
    each batch to ``device`` and normalises it there. ``device`` is where models run.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    mean: torch.Tensor | None = None  # per-channel statistics of the training pixels / 255
    std: torch.Tensor | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    source: str = ""  # the folder read (``lmcpipe.data.source``); records name it
    note: str = ""  # why not the data root's own folder (``lmcpipe.data.note``); "" when it is

    @property
    def fill(self) -> torch.Tensor | None:
        """Per-channel value of a black pixel after normalisation (CIFAR's zero padding)."""
        return None if self.mean is None else -self.mean / self.std

    @property
    def host_resident(self) -> bool:
        """Whether the images stay on the host (uint8, memory-mapped) whatever ``device`` is."""
        return self.train_x.dtype == torch.uint8

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """A batch on ``device`` as normalised float32: uint8 images are moved and normalised,
        floats pass through."""
        if x.dtype != torch.uint8:
            return x
        x = x.to(self.device, non_blocking=True)
        view = (1, -1) + (1,) * (x.dim() - 2)
        return (x.float() / 255.0 - self.mean.view(view)) / self.std.view(view)

    def to(self, device: str | torch.device) -> Data:
        self.device = torch.device(device)
        names = ["mean", "std"]
        if not self.host_resident:
            names += ["train_x", "train_y", "test_x", "test_y"]
        for name in names:
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value.to(self.device))
        return self


def train_stats(fmt: str, train_x: torch.Tensor,
                shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of the training pixels / 255: scalar for one-channel IDX data (as before),
    per channel (``augment.channel_stats``) otherwise."""
    if fmt == "idx":
        train = train_x.float() / 255.0
        return train.mean().reshape(1), train.std().reshape(1)
    return channel_stats(train_x.reshape(-1, *shape))
