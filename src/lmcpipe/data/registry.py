"""What is known about each dataset without reading it: ``DATASETS``, name -> ``DatasetInfo``.

Every stage gets a dataset as one string (``TrainHParams.dataset``) and looks its facts up here
(shape, classes, training-set size, format, default augmentation). ``DATASETS`` holds lmcpipe's
five datasets and resolves, on look-up, the names of datasets it does not ship
(``lmcpipe.data.user``: ``imagefolder:<path>``, ``torchvision:<Name>``, an import path or an
``lmcpipe.datasets`` entry point), so that those twenty-odd look-ups need no change for them.

Stdlib only, on purpose: the Snakemake rules, the config checker and the model builders read
these facts at every start, and none of them should pay for importing torch or numpy to do so.
``DataError``, ``DatasetInfo`` and ``partial_folders`` live in ``lmcpipe.data.base`` (below
``user``, which this module imports) and are re-exported here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from lmcpipe.data import user
from lmcpipe.data.base import DataError, DatasetInfo, UnknownDataset, partial_folders
from lmcpipe.data.torchvision_sets import TORCHVISION

__all__ = ["DATASETS", "DataError", "DatasetInfo", "Datasets", "UnknownDataset",
           "partial_folders", "unknown_message"]

_BUILTIN = {
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


def unknown_message(name: object) -> str:
    """The one line for a name that is no dataset: what names are, and a near miss."""
    near = [n for n in TORCHVISION if n.lower() == str(name).lower()]
    hint = f"; did you mean torchvision:{near[0]}?" if near else ""
    return (f"unknown dataset '{name}' (known: {', '.join(_BUILTIN)}; or imagefolder:<path>, "
            f"torchvision:<Name>, an import path 'package.module:attribute', or a name "
            f"registered in the entry-point group {user.GROUP}{hint})")


class Datasets(Mapping[str, DatasetInfo]):
    """A read-only mapping of dataset names to their facts.

    - ``DATASETS[name]``: lmcpipe's own facts, or a user name resolved (once per process;
      ``lmcpipe.data.user.resolve``); a user name that does not resolve raises its one-line
      ``DataError``, any other name ``UnknownDataset`` (a ``DataError`` and a ``KeyError``).
    - ``name in DATASETS``: lmcpipe's names and every name of a user syntax, by its form alone
      (nothing is read or imported), so a bad user name reaches ``DATASETS[name]`` and its own
      message rather than "unknown dataset".
    - ``get(name)``: None for an unknown plain name; a user name that fails raises.
    - Iteration and ``len``: lmcpipe's five datasets only (the Snakemake rules make download
      rules from them; messages list them as the known names).
    """

    def __init__(self, builtin: Mapping[str, DatasetInfo]) -> None:
        self._builtin = dict(builtin)

    def __getitem__(self, name: str) -> DatasetInfo:
        found = self._builtin.get(name)
        if found is not None:
            return found
        if isinstance(name, str) and user.kind(name):
            return user.resolve(name)
        raise UnknownDataset(unknown_message(name))

    def __contains__(self, name: object) -> bool:
        return name in self._builtin or (isinstance(name, str) and bool(user.kind(name)))

    def __iter__(self) -> Iterator[str]:
        return iter(self._builtin)

    def __len__(self) -> int:
        return len(self._builtin)

    def __repr__(self) -> str:
        return f"Datasets({list(self._builtin)} + user names)"


DATASETS = Datasets(_BUILTIN)
