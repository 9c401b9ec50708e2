"""The bottom layer of ``lmcpipe.data``: its error, the facts a dataset is described by, the
contract of a user's dataset, and the network probe.

Stdlib only, and it imports no other module of the package: the registry, the resolution of
user datasets (``user``) and every format module build on it, so none of them has to import
another to raise a ``DataError`` or describe a dataset (which would tie them into a cycle).
``lmcpipe.data`` and ``lmcpipe.data.registry`` re-export these names.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmcpipe.errors import StageError

# the names of ``lmcpipe.augment.AUGMENTATIONS``, known here without importing torch (the config
# check validates a user dataset's ``augment`` at every start); tests/test_user_data.py checks
# that the two lists agree
AUGMENT_NAMES = ("none", "cifar", "imagenet")
IMAGE_FOLDER_FORMATS = ("imagefolder", "userfolder")


class DataError(StageError):
    """A dataset is missing or malformed; the message names the file or folder (and says where
    files are expected). A ``StageError``: ``lmcpipe <stage>`` prints it as one line."""


class UnknownDataset(DataError, KeyError):
    """``DATASETS[name]`` of a name that is neither lmcpipe's nor of a user syntax.

    A ``KeyError``, so that ``DATASETS`` behaves as a ``Mapping`` (``get`` returns its default);
    a ``DataError``, so that a stage that looks the name up prints the one line, not a
    traceback. ``str`` is the message itself (a ``KeyError`` would quote it)."""

    __str__ = Exception.__str__


def partial_folders(folders: Iterable[Path], lacking: Callable[[Path], list[str]], total: int,
                    until: Path | None = None) -> list[str]:
    """``"<folder>/ lacks <names>"`` for each of ``folders``, in order and up to ``until`` (the
    folder read), that holds some but not all of a dataset's ``total`` files: a copy the search
    passes over, which someone may think is the one in use. ``lacking(folder)``: the names of
    the files it lacks. Shared by the format modules' ``note`` and ``missing_message``."""
    found = []
    for folder in folders:
        if folder == until:
            break
        names = lacking(folder)
        if 0 < len(names) < total:
            found.append(f"{folder}/ lacks {', '.join(names)}")
    return found


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a dataset, known without reading it."""

    name: str
    format: str  # its on-disk format: a key of ``lmcpipe.data.formats.FORMATS``
    input_shape: tuple[int, ...]
    num_classes: int
    train_size: int  # nominal: converts epochs to iterations in the config
    augment: str = "none"  # a name in lmcpipe.augment.AUGMENTATIONS
    torchvision_name: str = ""
    system_dirs: tuple[str, ...] = ()
    download_host: str = ""
    download_port: int = 443

    @property
    def image_folder(self) -> bool:
        """Whether the images are decoded from an image folder into a memory-mapped uint8
        cache that stays on the host (ImageNet, a user's ``imagefolder:``), rather than held
        whole on the training device as normalised floats."""
        return self.format in IMAGE_FOLDER_FORMATS


@dataclass(frozen=True)
class UserDataset:
    """A dataset from a user's code: what an import path or an ``lmcpipe.datasets`` entry point
    names (this object, or a function of no arguments returning one).

    ``load(data_root)`` returns a mapping with ``train_x``, ``train_y``, ``test_x``, ``test_y``:
    uint8 images (N, C, H, W), or (N, H, W) for one channel, and integer labels in
    [0, num_classes), as numpy arrays (or anything ``numpy.asarray`` takes: CPU tensors,
    lists). lmcpipe calls it once and keeps the arrays in its decode cache under
    ``<data_root>/.cache``: the key is the object's name, ``version`` and the contents of the
    package's source files, so bump ``version`` when the data that ``load`` reads changes
    without a change of code. The images are normalised by the training pixels' statistics.

    ``input_shape`` (C, H, W), ``num_classes`` and ``train_size`` (the number of training
    images, which the config uses to turn epochs into iterations) are checked against what
    ``load`` returns. ``augment``: the default augmentation (``none``, ``cifar``: flip and
    padded crop, ``imagenet``: random-resized crop and flip).
    """

    input_shape: tuple[int, ...]
    num_classes: int
    train_size: int
    load: Callable[[str], Mapping[str, Any]]
    augment: str = "none"
    version: str = ""


def one_line(e: BaseException) -> str:
    """An exception's message on one line (torchvision's and PIL's may span several)."""
    return " ".join(str(e).split())


def address_override() -> tuple[str, int] | None:
    """``LMCPIPE_DOWNLOAD_HOST=host[:port]``: the address asked instead of every dataset's own
    (``lmcpipe.data.download_address``), so that a test can point it at an address that drops
    packets and see what an offline machine does; None when unset."""
    override = os.environ.get("LMCPIPE_DOWNLOAD_HOST")
    if not override:
        return None
    host, colon, port = override.rpartition(":")
    return (host, int(port)) if colon else (override, 443)


def network_answers(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    """Whether a download could work; LMCPIPE_OFFLINE=1 says no without asking the network."""
    if os.environ.get("LMCPIPE_OFFLINE"):
        return False
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
