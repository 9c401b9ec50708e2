"""The on-disk formats, one module each, and the table that picks a dataset's module.

Every format module has the same functions, so that callers dispatch through ``FORMATS``
instead of branching on the format::

    files(dataset, root) -> list[Path] | None     # what it is read from; None: not on disk
    note(dataset, root) -> str                    # why not an earlier folder holding part of it
    missing_message(dataset, root) -> str         # where to put it, when it cannot be fetched
    download_targets(dataset, root) -> list[Path] # where a download puts it; []: no download
    move_download(dataset, root, tmp)             # torchvision's download in tmp -> the targets
    read_splits(dataset, root, size, cache=True)  # uint8 images and int64 labels, both splits

A new format is a new module with these functions and a line here; ``DatasetInfo.format``
names the key. The format modules import numpy, torch and PIL only inside their readers, so
this table costs no heavy import (the Snakemake rules use it at every start).
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from lmcpipe.data import cifar, converted, idx, imagefolder, userfolder
from lmcpipe.data.registry import DATASETS

FORMATS: dict[str, ModuleType] = {"idx": idx, "cifar": cifar, "imagefolder": imagefolder,
                                  "userfolder": userfolder, "converted": converted}


def of(dataset: str) -> ModuleType:
    """The format module of ``dataset`` (a key of ``DATASETS``)."""
    return FORMATS[DATASETS[dataset].format]


def source(dataset: str, root: str | Path) -> Path | None:
    """The folder ``dataset`` is read from (every format reads its files from one folder:
    the IDX files', the CIFAR pickles', an image folder's ``train``/``val`` parent, a torchvision
    set's); None when the dataset is not on disk or is made by code (a ``UserDataset``)."""
    found = of(dataset).files(dataset, root)
    return Path(found[0]).parent if found else None
