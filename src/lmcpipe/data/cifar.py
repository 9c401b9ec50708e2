"""CIFAR-10 and CIFAR-100 read from their real on-disk format: the "python version" pickles.

Each file is a pickled dict with bytes keys (the files were written by Python 2's cPickle at
protocol 2, so they are loaded with ``encoding="bytes"``): ``b"data"`` is a uint8 array (N, 3072)
holding, per row, the 1024 red, then green, then blue pixels of a 32x32 image in row-major order;
the labels are a list of ints under ``b"labels"`` (CIFAR-10) or ``b"fine_labels"`` (CIFAR-100).

Layout (as in the archives and torchvision's download folder)::

    cifar-10-batches-py/  data_batch_1 .. data_batch_5, test_batch, batches.meta
    cifar-100-python/     train, test, meta

Unpickling is restricted to the few numpy globals an array needs, so a file that tries to call
anything else is refused with a ``DataError`` instead of being executed.

A format module of ``lmcpipe.data.formats``. The functions that only look at paths (``files``,
``missing_message``, ``download_targets``) run at every Snakemake start, so numpy, torch and the
decode cache are imported inside the functions that read pickles, not at the top.
``lmcpipe.data.testing.write_cifar`` writes this format (byte for byte the opcodes Python 2 numpy
wrote) for tests.
"""

from __future__ import annotations

import codecs
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lmcpipe.data.registry import DataError, partial_folders

if TYPE_CHECKING:
    import numpy as np
    import torch


@dataclass(frozen=True)
class CifarLayout:
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_key: bytes
    meta_file: str
    classes: int


CIFAR = {
    "cifar10": CifarLayout(
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        ("test_batch",),
        b"labels",
        "batches.meta",
        10,
    ),
    "cifar100": CifarLayout("cifar-100-python", ("train",), ("test",), b"fine_labels", "meta", 100),
}
_BY_CLASSES = {layout.classes: layout for layout in CIFAR.values()}
SIDE = 32
ROW = 3 * SIDE * SIDE


def layout_for(classes: int) -> CifarLayout:
    if classes not in _BY_CLASSES:
        raise ValueError(f"CIFAR has 10 or 100 classes, not {classes}")
    return _BY_CLASSES[classes]


# --- reading ---------------------------------------------------------------------------------
def _numpy_attr(modules: tuple[str, ...], name: str):
    import importlib

    for module in modules:
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"numpy has no {name} in {modules}")


def _latin1_encode(text, encoding="latin1"):
    """``_codecs.encode`` as Python 3 writes bytes at protocol <= 2; only latin1 is allowed."""
    if not isinstance(text, str) or codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"refusing _codecs.encode({type(text).__name__}, {encoding})")
    return codecs.encode(text, "latin1")


def _allowed_globals() -> dict[tuple[str, str], object]:
    import numpy as np

    reconstruct = _numpy_attr(("numpy._core.multiarray", "numpy.core.multiarray"), "_reconstruct")
    frombuffer = _numpy_attr(("numpy._core.numeric", "numpy.core.numeric"), "_frombuffer")
    allowed: dict[tuple[str, str], object] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for package in ("numpy.core", "numpy._core"):  # Python 2 / numpy 1 and numpy 2 spellings
        allowed[(f"{package}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{package}.numeric", "_frombuffer")] = frombuffer
    return allowed


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals needed to rebuild numpy arrays."""

    allowed: dict[tuple[str, str], object] = {}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.allowed:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return self.allowed[(module, name)]


def unpickle(path: str | Path) -> object:
    """Load one CIFAR pickle (bytes keys) without executing anything but array rebuilding."""
    path = Path(path)
    if not _ArrayOnlyUnpickler.allowed:
        _ArrayOnlyUnpickler.allowed = _allowed_globals()
    try:
        with open(path, "rb") as f:
            return _ArrayOnlyUnpickler(f, encoding="bytes").load()
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e})") from e
    except Exception as e:  # pickle raises many kinds on malformed input
        raise DataError(f"{path}: not a CIFAR python pickle ({type(e).__name__}: {e})") from e


def read_batch(path: str | Path, label_key: bytes, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One pickle file as (uint8 images (N, 3, 32, 32), int64 labels (N,)), checked."""
    import numpy as np

    path = Path(path)
    batch = unpickle(path)
    if not isinstance(batch, dict):
        raise DataError(f"{path}: not a CIFAR batch (holds a {type(batch).__name__}, "
                        "expected a dict)")
    missing = [k for k in (b"data", label_key) if k not in batch]
    if missing:
        found = ", ".join(repr(k) for k in list(batch)[:8])
        raise DataError(f"{path}: not a CIFAR-{classes} batch: missing key(s) "
                        f"{', '.join(repr(k) for k in missing)} (has {found})")
    images = batch[b"data"]
    if not (isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.ndim == 2
            and images.shape[1] == ROW):
        desc = (f"{images.dtype} array of shape {images.shape}" if isinstance(images, np.ndarray)
                else type(images).__name__)
        raise DataError(f"{path}: b'data' is a {desc}, expected uint8 (N, {ROW})")
    try:
        labels = np.asarray(batch[label_key], dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as e:
        raise DataError(f"{path}: {label_key!r} is not a list of ints ({e})") from e
    if labels.shape != (len(images),):
        raise DataError(f"{path}: {labels.size} labels for {len(images)} images")
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise DataError(f"{path}: labels range over [{labels.min()}, {labels.max()}], "
                        f"expected [0, {classes - 1}]")
    return images.reshape(-1, 3, SIDE, SIDE), labels


def read_cifar(directory: str | Path, split: str,
               classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``split`` ("train" or "test") of the CIFAR-``classes`` folder ``directory``.

    ``directory`` is the folder holding the pickles (``cifar-10-batches-py`` or
    ``cifar-100-python``). Returns uint8 images (N, 3, 32, 32) in RGB and int64 labels (N,), in
    file order (CIFAR-10 train: batches 1..5 concatenated).
    """
    import numpy as np
    import torch

    layout = layout_for(classes)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    directory = Path(directory)
    names = layout.train_files if split == "train" else layout.test_files
    parts = []
    for name in names:
        path = directory / name
        if not path.is_file():
            raise DataError(f"{path}: missing (CIFAR-{classes} {split} split)")
        parts.append(read_batch(path, layout.label_key, classes))
    images = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
    labels = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
    return torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels)


def candidate_dirs(dataset: str, root: str | Path) -> list[Path]:
    """Where ``dataset`` ("cifar10" or "cifar100") is looked for, in order."""
    folder, root = CIFAR[dataset].folder, Path(root)
    return [root / dataset / folder, root / folder]  # lmcpipe's layout, then torchvision's


def locate_cifar(dataset: str, root: str | Path) -> Path | None:
    """The first candidate folder holding every train and test file of ``dataset``."""
    layout = CIFAR[dataset]
    for directory in candidate_dirs(dataset, root):
        if all((directory / n).is_file() for n in layout.train_files + layout.test_files):
            return directory
    return None


def _partial(dataset: str, root: str | Path, until: Path | None = None) -> list[str]:
    """Candidate folders before ``until`` holding some but not all of the pickles, and what
    each lacks (``registry.partial_folders``)."""
    names = CIFAR[dataset].train_files + CIFAR[dataset].test_files
    return partial_folders(candidate_dirs(dataset, root),
                           lambda d: [n for n in names if not (d / n).is_file()], len(names),
                           until)


def note(dataset: str, root: str | Path) -> str:
    """Why the folder ``locate_cifar`` finds is not one searched earlier that holds part of the
    dataset ("<folder>/ lacks test_batch; using <folder>"); "" when none was passed over."""
    used = locate_cifar(dataset, root)
    partial = _partial(dataset, root, used) if used is not None else []
    return f"{'; '.join(partial)}; using {used}" if partial else ""


def _not_found(dataset: str, root: str | Path) -> str:
    layout = CIFAR[dataset]
    where = ", ".join(str(d) for d in candidate_dirs(dataset, root))
    names = ", ".join(layout.train_files + layout.test_files)
    partial = "; ".join(_partial(dataset, root))
    return (f"dataset '{dataset}' not found: put {names}"
            f" (the python version of the archive, folder {layout.folder}) in one of: {where}"
            + (f" ({partial})" if partial else ""))


def load_cifar(dataset: str, root: str | Path, cache: bool = True) -> dict[str, torch.Tensor]:
    """Both splits of ``dataset``: uint8 ``train_x``/``test_x``, int64 ``train_y``/``test_y``.

    Decoded once into the data root's cache and memory-mapped after that
    (``lmcpipe.data.cache.cached_splits``); ``cache=False`` reads the pickles and touches no
    cache.
    """
    from lmcpipe.data.cache import cached_splits

    directory = locate_cifar(dataset, root)
    if directory is None:
        raise DataError(_not_found(dataset, root))
    layout = CIFAR[dataset]
    sources = [directory / name for name in layout.train_files + layout.test_files]
    return cached_splits(dataset, root, sources,
                         lambda: decode_cifar(directory, layout.classes), cache)


def decode_cifar(directory: str | Path, classes: int) -> dict[str, np.ndarray]:
    """Both splits of a CIFAR folder as arrays: uint8 images, and labels as uint8 (``read_batch``
    checked them to lie in [0, classes), classes <= 100) so the cache holds only bytes."""
    import numpy as np

    out = {}
    for split in ("train", "test"):
        images, labels = read_cifar(directory, split, classes)
        out[f"{split}_x"], out[f"{split}_y"] = images.numpy(), labels.numpy().astype(np.uint8)
    return out


# --- the format interface (see lmcpipe.data.formats) -----------------------------------------
def files(dataset: str, root: str | Path) -> list[Path] | None:
    directory = locate_cifar(dataset, root)
    layout = CIFAR[dataset]
    return None if directory is None else [
        directory / name for name in layout.train_files + layout.test_files]


def missing_message(dataset: str, root: str | Path) -> str:
    """What to tell someone whose CIFAR is missing where a download cannot help."""
    return _not_found(dataset, root) + " (and the network does not answer)"


def download_targets(dataset: str, root: str | Path) -> list[Path]:
    layout = CIFAR[dataset]
    folder = Path(root) / dataset / layout.folder
    return [folder / name for name in layout.train_files + layout.test_files]


def move_download(dataset: str, root: str | Path, tmp: str | Path) -> None:
    """Move the pickle folder torchvision downloaded (and unpacked) into ``tmp`` into place."""
    folder = CIFAR[dataset].folder
    shutil.move(Path(tmp) / folder, Path(root) / dataset / folder)


def read_splits(dataset: str, root: str | Path, size: int,
                cache: bool = True) -> dict[str, torch.Tensor]:
    """``load_cifar``; ``size`` is ignored (CIFAR images are 32 x 32)."""
    return load_cifar(dataset, root, cache)
