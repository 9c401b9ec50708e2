"""A user's image folder (``imagefolder:<path>``), read as ImageNet is: the format "userfolder".

``<path>/train/<class>/<image>`` and ``<path>/val/`` (or ``<path>/test/``: see
``lmcpipe.data.user.folder_splits``), any number of classes, JPEG or PNG files of any size.
Decoding, resizing and center-cropping are ``lmcpipe.data.imagefolder``'s (``cached_split``):
each split is decoded once into ``<path>/.cache/<split>-<size>px-<key>.npy`` and memory-mapped
by every job, the key hashing the files' names, sizes and modification times, so an edited
folder is decoded again into a new entry. The normalisation statistics are the training
split's, computed while it is decoded and recorded in the cache's JSON side file.

The folder is named in the config, relative to the working directory, so ``root`` (the data
root) plays no part. A format module of ``lmcpipe.data.formats``: path functions only at
import; numpy, torch and PIL inside ``read_splits``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from lmcpipe.data import imagefolder, user
from lmcpipe.data.base import DataError, one_line
from lmcpipe.data.registry import DATASETS

if TYPE_CHECKING:
    import torch


# --- the format interface (see lmcpipe.data.formats) -----------------------------------------
def files(dataset: str, root: str | Path) -> list[Path] | None:
    """The train and held-out split folders; None when the folder lacks them."""
    try:
        _, train, held_out = user.folder_splits(dataset)
    except DataError:
        return None
    return [train, held_out]


def note(dataset: str, root: str | Path) -> str:
    """Always "": the folder is the one the config names, and no other is searched."""
    return ""


def missing_message(dataset: str, root: str | Path) -> str:
    """What is wrong with the folder (``user.folder_splits``' line)."""
    try:
        user.folder_splits(dataset)
    except DataError as e:
        return str(e)
    return f"dataset '{dataset}' is on disk"  # never asked then: files() found it


def download_targets(dataset: str, root: str | Path) -> list[Path]:
    """None: a user's folder cannot be downloaded."""
    return []


def move_download(dataset: str, root: str | Path, tmp: str | Path) -> None:
    raise DataError(missing_message(dataset, root))  # never called: there are no targets


def read_splits(dataset: str, root: str | Path, size: int,
                cache: bool = True) -> dict[str, torch.Tensor]:
    """Both splits as uint8 (N, 3, size, size) and int64 labels, with the training pixels'
    per-channel ``mean`` and ``std``. ``cache=True``: memory-mapped from the folder's cache
    (decoded there first when absent); False: decoded into memory, no cache read or written.

    Raises DataError for what ``DATASETS[dataset]`` finds (a missing folder or split, no or
    differing classes) and for an image that cannot be decoded (naming the file)."""
    import torch

    from lmcpipe.augment import channel_stats

    DATASETS[dataset]  # the folder's layout and classes, checked before any decoding
    _, train, held_out = user.folder_splits(dataset)
    if not cache:
        train_x, train_y, classes = imagefolder.read_imagefolder(train, size)
        test_x, test_y, _ = imagefolder.read_imagefolder(held_out, size, classes)
        mean, std = channel_stats(train_x)
    else:
        try:
            train_x, train_y, classes, meta = imagefolder.cached_split(train, size)
            test_x, test_y, _, _ = imagefolder.cached_split(held_out, size, classes)
        except OSError as e:  # a read-only folder or file system, a full disk
            raise DataError(f"dataset '{dataset}': cannot write the decode cache in "
                            f"{train.parent / '.cache'} ({one_line(e)}); make the folder "
                            "writable, or copy it somewhere writable") from None
        mean, std = torch.tensor(meta["mean"]), torch.tensor(meta["std"])
    return {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y,
            "mean": mean, "std": std}
