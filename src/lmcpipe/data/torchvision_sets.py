"""The torchvision classification datasets that ``torchvision:<Name>`` can name, and what lmcpipe
knows of each without importing torchvision.

Why a table rather than any class of ``torchvision.datasets``: their constructors differ (a
``train`` flag or a ``split`` string, extra arguments), their files lie in layouts of their own,
and the facts the config needs at every start (shape, classes, training-set size) are not
attributes of the classes. Each entry is what one reading of torchvision's documentation and
source gives; a set not listed here can be brought through the ``lmcpipe.datasets`` entry
point (a ``UserDataset`` whose ``load`` builds it).

Stdlib only: the config check and the Snakemake rules read it at every start.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass


@dataclass(frozen=True)
class TorchvisionSet:
    """One torchvision dataset class and how lmcpipe reads it.

    ``files``: what torchvision reads, relative to its root (``<data_root>/torchvision``), in its
    own layout; present means on disk (``lmcpipe.data.converted.files``). ``split``: the keyword
    that chooses the split: ``"train"`` (``train=True``/``False``) or ``"split"``
    (``split="train"``/``"test"``). ``host``/``port``: the address whose answer says that
    torchvision's download could work. ``requires``: a module its reader imports that
    torchvision does not depend on (SVHN's ``.mat`` files need scipy).
    """

    name: str
    input_shape: tuple[int, int, int]
    num_classes: int
    train_size: int
    files: tuple[str, ...]
    host: str
    port: int = 443
    split: str = "train"
    augment: str = "none"
    requires: str = ""

    def split_kwargs(self, train: bool) -> dict[str, object]:
        """The constructor's keyword for the train (``True``) or the test split."""
        if self.split == "train":
            return {"train": train}
        return {"split": "train" if train else "test"}


def _idx(folder: str, prefix: str = "", labels: str = "labels-idx1-ubyte",
         test: str = "t10k") -> tuple[str, ...]:
    """The four extracted IDX files of an MNIST-style set under ``<folder>/raw``."""
    return tuple(f"{folder}/raw/{prefix}{split}-{kind}"
                 for split in ("train", test) for kind in ("images-idx3-ubyte", labels))


def _mnist_like(name: str, host: str, port: int = 443) -> TorchvisionSet:
    return TorchvisionSet(name, (1, 28, 28), 10, 60_000, _idx(name), host, port)


_CIFAR10 = tuple(f"cifar-10-batches-py/{f}" for f in (
    *(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"))
_STL10 = tuple(f"stl10_binary/{f}" for f in (
    "train_X.bin", "train_y.bin", "unlabeled_X.bin", "test_X.bin", "test_y.bin"))

TORCHVISION: dict[str, TorchvisionSet] = {s.name: s for s in (
    _mnist_like("MNIST", "ossci-datasets.s3.amazonaws.com"),
    _mnist_like("FashionMNIST", "fashion-mnist.s3-website.eu-central-1.amazonaws.com", 80),
    _mnist_like("KMNIST", "codh.rois.ac.jp", 80),
    # QMNIST's test split is its 60,000 test digits (MNIST's 10,000 and 50,000 more)
    TorchvisionSet("QMNIST", (1, 28, 28), 10, 60_000,
                   _idx("QMNIST", "qmnist-", "labels-idx2-int", "test"),
                   "raw.githubusercontent.com"),
    TorchvisionSet("CIFAR10", (3, 32, 32), 10, 50_000, _CIFAR10, "www.cs.toronto.edu",
                   augment="cifar"),
    TorchvisionSet("CIFAR100", (3, 32, 32), 100, 50_000,
                   tuple(f"cifar-100-python/{f}" for f in ("train", "test", "meta")),
                   "www.cs.toronto.edu", augment="cifar"),
    # no "cifar" augmentation by default: its horizontal flip turns house numbers into other
    # glyphs (a 2 into a mirrored 2); train.augment can still choose it
    TorchvisionSet("SVHN", (3, 32, 32), 10, 73_257, ("train_32x32.mat", "test_32x32.mat"),
                   "ufldl.stanford.edu", 80, split="split", requires="scipy"),
    TorchvisionSet("USPS", (1, 16, 16), 10, 7_291, ("usps.bz2", "usps.t.bz2"),
                   "www.csie.ntu.edu.tw"),
    TorchvisionSet("STL10", (3, 96, 96), 10, 5_000, _STL10, "ai.stanford.edu", 80,
                   split="split"),
)}


def version() -> str:
    """torchvision's installed version without its local part ("0.29.1" of "0.29.1+cu130"),
    read from the package metadata (no import); "" when it is not installed."""
    try:
        return importlib.metadata.version("torchvision").partition("+")[0]
    except importlib.metadata.PackageNotFoundError:
        return ""
