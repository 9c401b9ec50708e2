"""Datasets held as tensors, read from their real on-disk formats.

The package, by layer (each module imports only those above it)::

    base         DataError, DatasetInfo, UserDataset, network_answers: what every module uses
    folders, torchvision_sets
                 an image folder's files and classes; the torchvision sets lmcpipe can read
    user         user datasets' names (imagefolder:, torchvision:, import path, entry point)
                 resolved to their facts, checked without decoding
    registry     DATASETS: name -> DatasetInfo, lmcpipe's five and the user names resolved
    idx, cifar, imagefolder, userfolder, converted
                 one module per on-disk format, each with the interface of ``formats``
    formats      FORMATS: format name -> module, for dispatch without if-chains
    tensors      Data (splits as tensors) and train_stats
    cache        decode-once, memory-mapped caches under ``<data_root>/.cache``
    loader       load(): a dataset as a normalised Data
    prefetch     Prefetcher: a memory-mapped set's next batch gathered on a thread (pinned on CUDA)
    testing      writers of each format, for tests and benchmarks

Here: the public API. The Snakemake rules import ``find``, ``missing_message``,
``download_targets``, ``download_address`` and ``network_answers`` from here at every start,
the config check calls ``check`` and the code version ``code_files`` and ``code_tag``, and the
config and model code import ``DATASETS``: none of that may cost a torch import (about 3 s).
So this module and those it imports use only the stdlib at import time, and the names that
need torch (``load``, ``Data``, ``train_stats``) are imported on first use (``__getattr__``).

MNIST-style datasets are found under the configured data root, in torchvision's layout, or
where Debian's ``dataset-fashion-mnist`` installs them; torchvision downloads them (and CIFAR)
only when they are absent and the network answers. A folder holding only part of a dataset is
passed over for the next complete copy; ``note`` says so, ``load`` prints it, and ``Data.source``
and ``Data.note`` carry the folder read and the reason into every run's provenance record.

Datasets lmcpipe does not ship are named by one string as well, and ``DATASETS`` resolves them:
``imagefolder:<path>`` (a user's image folder, read as ImageNet is), ``torchvision:<Name>`` and
a ``UserDataset`` named by import path or ``lmcpipe.datasets`` entry point (both converted once
into the decode cache); see ``user``, ``userfolder`` and ``converted``.
"""

from __future__ import annotations

import importlib
import importlib.util
import socket  # noqa: F401  (network_answers' module: tests patch its create_connection here)
import tempfile
from pathlib import Path

from lmcpipe.data import formats, user
from lmcpipe.data.base import DataError, DatasetInfo, UserDataset, address_override, network_answers
from lmcpipe.data.formats import FORMATS, source
from lmcpipe.data.idx import IDX_FILES, candidate_dirs, locate, read_idx
from lmcpipe.data.registry import DATASETS, UnknownDataset, unknown_message
from lmcpipe.data.torchvision_sets import TORCHVISION
from lmcpipe.data.user import code_files, code_tag

__all__ = [
    "DATASETS", "FORMATS", "IDX_FILES", "TORCHVISION", "Data", "DataError", "DatasetInfo",
    "UserDataset", "candidate_dirs", "check", "code_files", "code_tag", "download",
    "download_address", "download_targets", "find", "load", "locate", "missing_message",
    "network_answers", "note", "read_idx", "source", "train_stats",
]


def find(dataset: str, root: str | Path) -> list[Path] | None:
    """The files (or folders) a dataset is read from, or None when it is not on disk."""
    return formats.of(dataset).files(dataset, root)


def missing_message(dataset: str, root: str | Path) -> str:
    return formats.of(dataset).missing_message(dataset, root)


def note(dataset: str, root: str | Path) -> str:
    """Why ``find``'s files are not those of an earlier folder holding part of the dataset
    (``"data/fashion_mnist/ lacks t10k-labels-idx1-ubyte[.gz]; using /usr/share/..."``); ""
    when none was passed over. ``load`` prints it and stores it in ``Data.note``; stdlib only,
    so a Snakemake rule can say it at planning time too."""
    return formats.of(dataset).note(dataset, root)


def download_targets(dataset: str, root: str | Path) -> list[Path]:
    """Where ``download`` puts a dataset's files; empty when it cannot be downloaded."""
    return formats.of(dataset).download_targets(dataset, root)


def download_address(dataset: str) -> tuple[str, int]:
    """The (host, port) whose answer says whether ``dataset`` could be downloaded.

    ``LMCPIPE_DOWNLOAD_HOST=host[:port]`` replaces it for every dataset, so a test can point it at
    an address that drops packets and see what an offline machine does; torchvision still
    downloads from its own mirrors.
    """
    override = address_override()
    if override:
        return override
    info = DATASETS[dataset]
    return info.download_host, info.download_port


def download(dataset: str, root: str | Path) -> list[Path]:
    """Fetch a dataset with torchvision and move its files to ``download_targets``.

    torchvision downloads into a temporary directory first, so a failed or killed download never
    leaves files that ``find`` would take for a complete dataset.
    """
    info = DATASETS[dataset]
    targets = download_targets(dataset, root)
    if not targets:  # before importing torchvision (seconds): this one is known at once
        raise DataError(missing_message(dataset, root))
    import torchvision.datasets as tvd
    target = Path(root) / dataset
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target) as tmp:
        try:
            for train in (True, False):
                getattr(tvd, info.torchvision_name)(tmp, train=train, download=True)
        except Exception as e:  # torchvision raises several kinds on network failure
            raise DataError(f"{missing_message(dataset, root)} (download failed: {e})") from e
        formats.of(dataset).move_download(dataset, root, tmp)
    if find(dataset, root) is None:
        raise DataError(missing_message(dataset, root))
    return targets


def check(name: str, root: str | Path | None = None) -> DatasetInfo:
    """The facts of dataset ``name``, after every check that needs no decoding; what the config
    check calls before any job. Raises DataError with one line naming the name and the fix.

    Beyond ``DATASETS[name]`` (an unknown name, a user folder's layout and classes, a user
    object that does not resolve or declares wrong facts): a torchvision set whose reader needs
    a module that is not installed (SVHN: scipy), and, when ``root`` (the data root) is given, a
    torchvision set neither on disk nor downloadable (offline, or its host does not answer:
    up to 3 s asking it). Imports the user's module for import paths and entry points; nothing
    heavier of lmcpipe's own."""
    if name not in DATASETS:
        raise UnknownDataset(unknown_message(name))
    info = DATASETS[name]
    if user.kind(name) == "torchvision":
        entry = user.torchvision_set(name)
        for module in ("torchvision", entry.requires):
            if module and importlib.util.find_spec(module) is None:
                raise DataError(f"dataset '{name}': torchvision reads it with the module "
                                f"'{module}', which is not installed (pip install {module})")
        if root is not None and find(name, root) is None \
                and not network_answers(*download_address(name)):
            raise DataError(missing_message(name, root))
    return info


# names that need torch: imported when first used, not with the package
_LAZY = {"Data": "tensors", "train_stats": "tensors", "load": "loader"}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f"lmcpipe.data.{_LAZY[name]}"), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
