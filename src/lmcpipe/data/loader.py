"""``load``: a dataset, in whatever format it is stored, as a normalised ``Data``.

The one part of ``lmcpipe.data`` that needs torch at import; the package exposes ``load`` lazily
so that reading dataset facts never imports it.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch

from lmcpipe.data.formats import FORMATS, source
from lmcpipe.data.registry import DATASETS, DataError
from lmcpipe.data.tensors import Data, train_stats


def load(dataset: str, root: str | Path, device: str | torch.device = "cpu",
         image_size: int = 0, cache: bool = True) -> Data:
    """Read a dataset into tensors on ``device``, normalised by the training pixels' statistics.

    MNIST-style, CIFAR and converted data (torchvision's sets, ``UserDataset``s) are held
    normalised in float32; image folders (ImageNet, ``imagefolder:<path>``) stay uint8 in a
    memory-mapped cache on the host (a float copy would not fit in memory, nor often the uint8
    one) and ``Data.prepare`` moves and normalises each batch. ``image_size`` sets
    the resolution image folders are stored and trained at (0: the dataset's nominal size).
    ``cache=False`` decodes the data from the source files without reading or writing the
    decode cache (``lmcpipe.data.cache``; ImageNet is always cached).

    ``Data.source`` is the folder read and ``Data.note`` why it is not an earlier folder that
    holds part of the dataset (a partial ``<data_root>/fashion_mnist/`` passed over for Debian's
    copy); the note is also printed on stderr, into the job's log, since nothing else would say
    which copy trained the runs.
    """
    info = DATASETS[dataset]  # a one-line DataError for an unknown or unresolvable name
    shape = info.input_shape
    if image_size:
        if not info.image_folder:
            raise DataError(f"image_size applies to image folders, not to '{dataset}'")
        shape = (shape[0], image_size, image_size)
    raw = FORMATS[info.format].read_splits(dataset, root, shape[-1], cache)
    folder, note = source(dataset, root), FORMATS[info.format].note(dataset, root)
    if note:
        print(f"lmcpipe: {dataset}: {note}", file=sys.stderr, flush=True)
    for name in ("train", "test"):
        x = raw[f"{name}_x"]
        if tuple(x.shape[-2:]) != shape[-2:] or x.numel() // len(x) != math.prod(shape):
            raise DataError(f"{dataset} {name} images have shape {tuple(x.shape[1:])}, "
                            f"expected {shape}")
    if "mean" in raw:  # computed once, with the image cache
        mean, std = raw["mean"], raw["std"]
    else:  # recomputed from the (cached) pixels: bit for bit what decoding them would give
        mean, std = train_stats(info.format, raw["train_x"], shape)
    out = Data(raw["train_x"].reshape(-1, *shape), raw["train_y"],
               raw["test_x"].reshape(-1, *shape), raw["test_y"], mean=mean, std=std,
               source=str(folder.resolve()) if folder else "", note=note)
    if not info.image_folder:
        out.train_x, out.test_x = out.prepare(out.train_x), out.prepare(out.test_x)
    return out.to(device)
