"""Datasets held as tensors, read from their real on-disk formats.

The package, by layer (each module imports only those above it)::

    registry     DATASETS, DatasetInfo, DataError: facts known without reading a dataset
    idx, cifar, imagefolder
                 one module per on-disk format, each with the interface of ``formats``
    formats      FORMATS: format name -> module, for dispatch without if-chains
    tensors      Data (splits as tensors) and train_stats
    cache        decode-once, memory-mapped caches under ``<data_root>/.cache``
    loader       load(): a dataset as a normalised Data
    prefetch     Prefetcher: a memory-mapped set's next batch gathered on a thread (pinned on CUDA)
    testing      writers of each format, for tests and benchmarks

Here: the public API. The Snakemake rules import ``find``, ``missing_message``,
``download_targets``, ``download_address`` and ``network_answers`` from here at every start,
and the config and model code import ``DATASETS``: none of that may cost a torch import (about
3 s). So this module and those it imports use only the stdlib at import time, and the names that
need torch (``load``, ``Data``, ``train_stats``) are imported on first use (``__getattr__``).

MNIST-style datasets are found under the configured data root, in torchvision's layout, or
where Debian's ``dataset-fashion-mnist`` installs them; torchvision downloads them (and CIFAR)
only when they are absent and the network answers. A folder holding only part of a dataset is
passed over for the next complete copy; ``note`` says so, ``load`` prints it, and ``Data.source``
and ``Data.note`` carry the folder read and the reason into every run's provenance record.
"""

from __future__ import annotations

import importlib
import os
import socket
import tempfile
from pathlib import Path

from lmcpipe.data import formats
from lmcpipe.data.formats import FORMATS, source
from lmcpipe.data.idx import IDX_FILES, candidate_dirs, locate, read_idx
from lmcpipe.data.registry import DATASETS, DataError, DatasetInfo

__all__ = [
    "DATASETS", "FORMATS", "IDX_FILES", "Data", "DataError", "DatasetInfo", "candidate_dirs",
    "download", "download_address", "download_targets", "find", "load", "locate",
    "missing_message", "network_answers", "note", "read_idx", "source", "train_stats",
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


def network_answers(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    """Whether a download could work; LMCPIPE_OFFLINE=1 says no without asking the network."""
    if os.environ.get("LMCPIPE_OFFLINE"):
        return False
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def download_address(dataset: str) -> tuple[str, int]:
    """The (host, port) whose answer says whether ``dataset`` could be downloaded.

    ``LMCPIPE_DOWNLOAD_HOST=host[:port]`` replaces it for every dataset, so a test can point it at
    an address that drops packets and see what an offline machine does; torchvision still
    downloads from its own mirrors.
    """
    override = os.environ.get("LMCPIPE_DOWNLOAD_HOST")
    if override:
        host, colon, port = override.rpartition(":")
        return (host, int(port)) if colon else (override, 443)
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
