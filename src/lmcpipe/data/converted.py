"""Datasets converted once into lmcpipe's cached tensors: the format "converted".

Two sources, one cache (``lmcpipe.data.cache.cached_arrays`` under ``<data_root>/.cache``: the
first job converts, the others wait on its lock and then memory-map the arrays):

- ``torchvision:<Name>``: read by torchvision's own class from ``<data_root>/torchvision/``, in
  torchvision's own layout (``download=False``), every example through the dataset's public
  ``__getitem__`` (a PIL image and an integer label, whatever the class stores internally).
  When its files are absent and the network answers (``LMCPIPE_OFFLINE=1`` says no), torchvision
  downloads them, under a lock so that concurrent jobs download once, into a temporary folder
  whose files are moved into place when complete: a killed download leaves nothing that looks
  finished. The cache key hashes the files' names, sizes and modification times and
  torchvision's version (its reader makes the pixels: USPS's are floats it rounds).
- a ``UserDataset`` (an import path or an ``lmcpipe.datasets`` entry point): its ``load``
  called with the data root; the arrays it returns are checked (uint8 images of the declared
  shape, labels in range, the declared training-set size). The key hashes the name, the
  object's ``version`` and the contents of its package's source files: an edited loader is
  converted again; data that changes under an unchanged loader needs a new ``version``.

The images stay as stored (uint8, (N, C, H, W)); ``lmcpipe.data.load`` normalises them by the
training pixels' statistics, as it does MNIST's and CIFAR's. A format module of
``lmcpipe.data.formats``: path functions only at import; numpy, torch and torchvision inside.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from lmcpipe.data import user
from lmcpipe.data.base import (
    DataError,
    DatasetInfo,
    UserDataset,
    address_override,
    network_answers,
    one_line,
)
from lmcpipe.data.registry import DATASETS
from lmcpipe.data.torchvision_sets import TorchvisionSet, version

if TYPE_CHECKING:
    import numpy as np
    import torch

KEYS = ("train_x", "train_y", "test_x", "test_y")


def torchvision_root(root: str | Path) -> Path:
    """Where torchvision's sets are read and downloaded: its own layout under the data root."""
    return Path(root) / "torchvision"


# --- the format interface (see lmcpipe.data.formats) -----------------------------------------
def files(dataset: str, root: str | Path) -> list[Path] | None:
    """A torchvision set's files when all are on disk, else None; [] for a UserDataset (made by
    its ``load``: nothing on disk to look for)."""
    if user.kind(dataset) != "torchvision":
        return []
    base = torchvision_root(root)
    paths = [base / name for name in user.torchvision_set(dataset).files]
    return paths if all(p.is_file() for p in paths) else None


def note(dataset: str, root: str | Path) -> str:
    """Always "": one folder is looked in."""
    return ""


def missing_message(dataset: str, root: str | Path) -> str:
    if user.kind(dataset) != "torchvision":
        return f"dataset '{dataset}' is made by its UserDataset's load(); nothing goes on disk"
    entry, base = user.torchvision_set(dataset), torchvision_root(root)
    lacking: dict[str, list[str]] = {}  # by folder: "cifar-10-batches-py/{data_batch_1, ...}"
    for name in entry.files:
        if not (base / name).is_file():
            folder, _, file = name.rpartition("/")
            lacking.setdefault(folder, []).append(file)
    names = ", ".join(f"{folder}/{{{', '.join(fs)}}}" if folder and len(fs) > 1
                      else f"{folder}/{fs[0]}" if folder else ", ".join(fs)
                      for folder, fs in lacking.items())
    return (f"dataset '{dataset}' is not on disk and cannot be downloaded here (LMCPIPE_OFFLINE "
            f"is set or {entry.host} does not answer): put torchvision's files {names} under "
            f"{base}/ (torchvision's own layout: copy that folder from a machine where lmcpipe "
            "or torchvision downloaded it)")


def download_targets(dataset: str, root: str | Path) -> list[Path]:
    """None: no Snakemake download rule; the first job that reads a torchvision set downloads
    it (``read_splits``), under a lock, when the network answers."""
    return []


def move_download(dataset: str, root: str | Path, tmp: str | Path) -> None:
    """Move a torchvision set's files from the download folder ``tmp`` into place."""
    entry, base = user.torchvision_set(dataset), torchvision_root(root)
    for name in entry.files:
        (base / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(Path(tmp) / name, base / name)


def read_splits(dataset: str, root: str | Path, size: int,
                cache: bool = True) -> dict[str, torch.Tensor]:
    """uint8 images (N, C, H, W) and int64 labels of both splits, converted once into the cache
    (``cache=False``: converted now, no cache read or written). ``size``: the images have one."""
    from lmcpipe.data.cache import FORMAT, file_key, split_tensors

    info = DATASETS[dataset]
    if user.kind(dataset) == "torchvision":
        entry = user.torchvision_set(dataset)
        sources = _torchvision_files(dataset, root)
        key = file_key(sources, salt=f"{dataset}\0v{FORMAT}\0torchvision {version()}")

        def decode() -> dict[str, np.ndarray]:
            return _check(info, _convert_torchvision(dataset, entry, root), "torchvision's reader")
    else:
        ud = user.user_dataset(dataset)
        sources = user.code_files(dataset)
        key = _code_key(dataset, ud, sources, FORMAT)

        def decode() -> dict[str, np.ndarray]:
            return _check(info, _call_load(dataset, ud, root), "its load()", ud)

    stem = f"{re.sub(r'[^A-Za-z0-9._-]+', '_', dataset)}-{key}"
    return split_tensors(root, stem, decode, lambda a: _describe(info, sources, a), cache)


# --- torchvision -----------------------------------------------------------------------------
def _torchvision_files(dataset: str, root: str | Path) -> list[Path]:
    """The set's files, downloaded first when absent and the network answers."""
    found = files(dataset, root)
    if found is not None:
        return found
    from lmcpipe.data.cache import locked

    entry, base = user.torchvision_set(dataset), torchvision_root(root)
    if not network_answers(*(address_override() or (entry.host, entry.port))):
        raise DataError(missing_message(dataset, root))
    base.mkdir(parents=True, exist_ok=True)
    with locked(base / f".{entry.name}.lock"):  # one download; the others wait, then read
        if files(dataset, root) is None:
            _download(dataset, entry, root)
    found = files(dataset, root)
    if found is None:
        raise DataError(f"{missing_message(dataset, root)} (torchvision's download did not "
                        "produce them)")
    return found


def _download(dataset: str, entry: TorchvisionSet, root: str | Path) -> None:
    import torchvision.datasets as tvd

    base = torchvision_root(root)
    with tempfile.TemporaryDirectory(dir=base, prefix=f".{entry.name}-download-") as tmp:
        try:
            for train in (True, False):
                getattr(tvd, entry.name)(tmp, download=True, **entry.split_kwargs(train))
        except Exception as e:  # torchvision raises several kinds on network failure
            raise DataError(f"{missing_message(dataset, root)} (download failed: "
                            f"{type(e).__name__}: {one_line(e)})") from None
        move_download(dataset, root, tmp)


def _convert_torchvision(dataset: str, entry: TorchvisionSet,
                         root: str | Path) -> dict[str, np.ndarray]:
    """Both splits read by torchvision's class, one example at a time through its public
    ``__getitem__`` (no transform: a PIL image, mode L or RGB, and an int)."""
    import numpy as np
    import torchvision.datasets as tvd

    base = torchvision_root(root)
    out = {}
    for split, train in (("train", True), ("test", False)):
        try:
            ds = getattr(tvd, entry.name)(str(base), download=False,
                                          **entry.split_kwargs(train))
            pairs = [ds[i] for i in range(len(ds))]
        except Exception as e:  # a damaged or foreign file: torchvision's own words, one line
            raise DataError(f"dataset '{dataset}': torchvision cannot read its {split} split "
                            f"from {base} ({type(e).__name__}: {one_line(e)}); delete the "
                            "damaged files (online, the next run downloads them again)") from None
        images = np.stack([np.asarray(image, dtype=np.uint8) for image, _ in pairs]) \
            if pairs else np.zeros((0, *entry.input_shape[1:]), np.uint8)
        images = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)
        out[f"{split}_x"] = np.ascontiguousarray(images)
        out[f"{split}_y"] = np.array([int(label) for _, label in pairs], dtype=np.int64)
    return out


# --- UserDataset -----------------------------------------------------------------------------
def _call_load(dataset: str, ud: UserDataset, root: str | Path) -> dict[str, np.ndarray]:
    import numpy as np

    where = f"its load({str(root)!r})"
    try:
        got = ud.load(str(root))
    except DataError:
        raise
    except Exception as e:  # the user's code: say how it failed, in one line
        raise DataError(f"dataset '{dataset}': {where} failed: {type(e).__name__}: "
                        f"{one_line(e)}") from None
    if not isinstance(got, Mapping):
        raise DataError(f"dataset '{dataset}': {where} returned a {type(got).__name__}, not a "
                        f"mapping of {', '.join(KEYS)}")
    lacking = [k for k in KEYS if k not in got]
    if lacking:
        raise DataError(f"dataset '{dataset}': {where} returned no {', '.join(lacking)} "
                        f"(it must return {', '.join(KEYS)})")
    try:
        return {k: np.asarray(got[k]) for k in KEYS}
    except Exception as e:  # a GPU tensor, ragged lists
        raise DataError(f"dataset '{dataset}': {where} returned arrays numpy cannot take "
                        f"({type(e).__name__}: {one_line(e)}); return numpy arrays") from None


def _check(info: DatasetInfo, arrays: dict[str, np.ndarray], who: str,
           ud: UserDataset | None = None) -> dict[str, np.ndarray]:
    """The arrays as (N, C, H, W) uint8 and int64 labels, after checking them against the
    declared facts; DataError naming the array and what was expected otherwise."""
    import numpy as np

    out = {}
    c, h, w = info.input_shape
    for split in ("train", "test"):
        x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
        say = f"dataset '{info.name}': {who} gave {split}_x"
        if x.dtype != np.uint8:
            raise DataError(f"{say} of dtype {x.dtype}, not uint8 images (pixel values 0..255)")
        if x.ndim == 3 and c == 1:
            x = x[:, None]
        if x.ndim != 4 or x.shape[1:] != (c, h, w) or len(x) == 0:
            raise DataError(f"{say} of shape {x.shape}: expected (N, {c}, {h}, {w})"
                            f"{' or (N, ' + str(h) + ', ' + str(w) + ')' if c == 1 else ''} "
                            f"with N > 0, as input_shape {info.input_shape} says")
        if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"dataset '{info.name}': {who} gave {split}_y of shape {y.shape} "
                            f"and dtype {y.dtype}: expected {len(x)} integer labels")
        low, high = int(y.min()), int(y.max())
        if low < 0 or high >= info.num_classes:
            raise DataError(f"dataset '{info.name}': {who} gave {split}_y labels from {low} to "
                            f"{high}, outside 0..{info.num_classes - 1} (num_classes = "
                            f"{info.num_classes})")
        out[f"{split}_x"] = np.ascontiguousarray(x)
        out[f"{split}_y"] = y.astype(np.int64)
    if ud is not None and len(out["train_x"]) != ud.train_size:
        raise DataError(f"dataset '{info.name}': its UserDataset declares train_size = "
                        f"{ud.train_size} but {who} gave {len(out['train_x'])} training "
                        f"images; declare {len(out['train_x'])}")
    return out


def _code_key(dataset: str, ud: UserDataset, sources: list[Path], fmt: int) -> str:
    """16 hex digits of sha256 over the name, ``version``, the cache format and each source
    file's path (relative to their common folder, so a moved checkout keeps its key) and
    contents: an edit of the loader's code is a new entry, a touch is not."""
    h = hashlib.sha256(f"{dataset}\0{ud.version}\0v{fmt}".encode())
    common = os.path.commonpath(sources) if sources else ""
    for path in sources:
        h.update(f"\0{os.path.relpath(path, common) if common else path}\0".encode())
        h.update(Path(path).read_bytes())
    return h.hexdigest()[:16]


def _describe(info: DatasetInfo, sources: list[Path], arrays: dict[str, np.ndarray]) -> dict:
    """The side file's facts (for people and tools; ``load`` recomputes the statistics from the
    cached pixels, as it does for MNIST and CIFAR)."""
    import torch

    from lmcpipe.data.tensors import train_stats

    mean, std = train_stats(info.format, torch.from_numpy(arrays["train_x"]), info.input_shape)
    return {"dataset": info.name, "sources": [str(Path(p).resolve()) for p in sources],
            "counts": {s: len(arrays[f"{s}_x"]) for s in ("train", "test")},
            "mean": mean.tolist(), "std": std.tolist()}
