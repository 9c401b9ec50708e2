"""What is known about each dataset without reading it, and the error every data module raises.

Stdlib only, on purpose: the Snakemake rules, the config checker and the model builders read
these facts at every start, and none of them should pay for importing torch or numpy to do so.
Every other module of ``lmcpipe.data`` imports this one; it imports none of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from lmcpipe.errors import StageError


class DataError(StageError):
    """A dataset is missing or malformed; the message names the file or folder (and says where
    files are expected). A ``StageError``: ``lmcpipe <stage>`` prints it as one line."""


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


DATASETS = {
    "mnist": DatasetInfo(
        "mnist", "idx", (1, 28, 28), 10, 60_000, torchvision_name="MNIST",
        download_host="ossci-datasets.s3.amazonaws.com",
    ),
    "fashion_mnist": DatasetInfo(
        "fashion_mnist", "idx", (1, 28, 28), 10, 60_000, torchvision_name="FashionMNIST",
        system_dirs=("/usr/share/datasets/fashion-mnist",),
        # torchvision's Fashion-MNIST mirror is plain HTTP
        download_host="fashion-mnist.s3-website.eu-central-1.amazonaws.com", download_port=80,
    ),
    "cifar10": DatasetInfo(
        "cifar10", "cifar", (3, 32, 32), 10, 50_000, augment="cifar", torchvision_name="CIFAR10",
        download_host="www.cs.toronto.edu",
    ),
    "cifar100": DatasetInfo(
        "cifar100", "cifar", (3, 32, 32), 100, 50_000, augment="cifar",
        torchvision_name="CIFAR100", download_host="www.cs.toronto.edu",
    ),
    "imagenet": DatasetInfo(
        "imagenet", "imagefolder", (3, 224, 224), 1000, 1_281_167, augment="imagenet",
    ),
}
