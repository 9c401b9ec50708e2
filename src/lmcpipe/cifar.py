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

``write_cifar`` writes the same format (byte for byte the opcodes Python 2 numpy wrote) for tests.
"""

from __future__ import annotations

import codecs
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

# ``data`` imports this module once it is wired in; refer to ``data.DataError`` at call time so
# that either module can be imported first.
from lmcpipe import data as _data
from lmcpipe import datacache


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
        raise _data.DataError(f"{path}: cannot be read ({e})") from e
    except Exception as e:  # pickle raises many kinds on malformed input
        raise _data.DataError(f"{path}: not a CIFAR python pickle ({type(e).__name__}: {e})") from e


def read_batch(path: str | Path, label_key: bytes, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One pickle file as (uint8 images (N, 3, 32, 32), int64 labels (N,)), checked."""
    path = Path(path)
    batch = unpickle(path)
    if not isinstance(batch, dict):
        raise _data.DataError(f"{path}: not a CIFAR batch (holds a {type(batch).__name__}, "
                              "expected a dict)")
    missing = [k for k in (b"data", label_key) if k not in batch]
    if missing:
        found = ", ".join(repr(k) for k in list(batch)[:8])
        raise _data.DataError(f"{path}: not a CIFAR-{classes} batch: missing key(s) "
                              f"{', '.join(repr(k) for k in missing)} (has {found})")
    images = batch[b"data"]
    if not (isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.ndim == 2
            and images.shape[1] == ROW):
        desc = (f"{images.dtype} array of shape {images.shape}" if isinstance(images, np.ndarray)
                else type(images).__name__)
        raise _data.DataError(f"{path}: b'data' is a {desc}, expected uint8 (N, {ROW})")
    try:
        labels = np.asarray(batch[label_key], dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as e:
        raise _data.DataError(f"{path}: {label_key!r} is not a list of ints ({e})") from e
    if labels.shape != (len(images),):
        raise _data.DataError(f"{path}: {labels.size} labels for {len(images)} images")
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise _data.DataError(f"{path}: labels range over [{labels.min()}, {labels.max()}], "
                              f"expected [0, {classes - 1}]")
    return images.reshape(-1, 3, SIDE, SIDE), labels


def read_cifar(directory: str | Path, split: str,
               classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``split`` ("train" or "test") of the CIFAR-``classes`` folder ``directory``.

    ``directory`` is the folder holding the pickles (``cifar-10-batches-py`` or
    ``cifar-100-python``). Returns uint8 images (N, 3, 32, 32) in RGB and int64 labels (N,), in
    file order (CIFAR-10 train: batches 1..5 concatenated).
    """
    layout = layout_for(classes)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    directory = Path(directory)
    names = layout.train_files if split == "train" else layout.test_files
    parts = []
    for name in names:
        path = directory / name
        if not path.is_file():
            raise _data.DataError(f"{path}: missing (CIFAR-{classes} {split} split)")
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


def missing_message(dataset: str, root: str | Path) -> str:
    layout = CIFAR[dataset]
    where = ", ".join(str(d) for d in candidate_dirs(dataset, root))
    files = ", ".join(layout.train_files + layout.test_files)
    return (f"dataset '{dataset}' not found: put {files}"
            f" (the python version of the archive, folder {layout.folder}) in one of: {where}")


def load_cifar(dataset: str, root: str | Path, cache: bool = True) -> dict[str, torch.Tensor]:
    """Both splits of ``dataset``: uint8 ``train_x``/``test_x``, int64 ``train_y``/``test_y``.

    Decoded once into the data root's cache and memory-mapped after that
    (``datacache.cached_splits``); ``cache=False`` reads the pickles and touches no cache.
    """
    directory = locate_cifar(dataset, root)
    if directory is None:
        raise _data.DataError(missing_message(dataset, root))
    layout = CIFAR[dataset]
    sources = [directory / name for name in layout.train_files + layout.test_files]
    return datacache.cached_splits(dataset, root, sources,
                                   lambda: decode_cifar(directory, layout.classes), cache)


def decode_cifar(directory: str | Path, classes: int) -> dict[str, np.ndarray]:
    """Both splits of a CIFAR folder as arrays: uint8 images, and labels as uint8 (``read_batch``
    checked them to lie in [0, classes), classes <= 100) so the cache holds only bytes."""
    out = {}
    for split in ("train", "test"):
        images, labels = read_cifar(directory, split, classes)
        out[f"{split}_x"], out[f"{split}_y"] = images.numpy(), labels.numpy().astype(np.uint8)
    return out


# --- writing (for tests): the opcodes Python 2's cPickle wrote at protocol 2 ------------------
def _py2_str(value: bytes) -> bytes:
    if len(value) < 256:
        return b"U" + bytes([len(value)]) + value  # SHORT_BINSTRING
    return b"T" + struct.pack("<i", len(value)) + value  # BINSTRING


def _py2_int(value: int) -> bytes:
    if 0 <= value < 256:
        return b"K" + bytes([value])  # BININT1
    if 0 <= value < 65536:
        return b"M" + struct.pack("<H", value)  # BININT2
    return b"J" + struct.pack("<i", value)  # BININT


def _py2_list(items: list[bytes]) -> bytes:
    out = [b"]"]  # EMPTY_LIST, then MARK ... APPENDS in chunks of 1000 as cPickle does
    for i in range(0, len(items), 1000):
        out += [b"(", *items[i : i + 1000], b"e"]
    return b"".join(out)


def _py2_uint8_array(array: np.ndarray) -> bytes:
    array = np.ascontiguousarray(array, dtype=np.uint8)
    shape = b"".join(_py2_int(n) for n in array.shape)
    shape += {1: b"\x85", 2: b"\x86", 3: b"\x87"}[array.ndim]  # TUPLE1..3
    dtype = (b"cnumpy\ndtype\n" + _py2_str(b"u1") + _py2_int(0) + _py2_int(1) + b"\x87R"
             + b"(" + _py2_int(3) + _py2_str(b"|") + b"NNN" + b"J\xff\xff\xff\xff" * 2
             + _py2_int(0) + b"tb")
    return (b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n" + _py2_int(0)
            + b"\x85" + _py2_str(b"b") + b"\x87R"
            + b"(" + _py2_int(1) + shape + dtype + b"\x89" + _py2_str(array.tobytes()) + b"tb")


def _py2_value(value) -> bytes:
    if isinstance(value, np.ndarray):
        return _py2_uint8_array(value)
    if isinstance(value, bytes):
        return _py2_str(value)
    if isinstance(value, int):
        return _py2_int(value)
    if isinstance(value, list):
        return _py2_list([_py2_value(v) for v in value])
    raise TypeError(f"cannot write {type(value).__name__}")


def dumps_py2(batch: dict[bytes, object]) -> bytes:
    """A dict of bytes/int/list/uint8-array as the protocol-2 pickle Python 2 wrote."""
    body = b"".join(_py2_str(k) + _py2_value(v) for k, v in batch.items())
    return b"\x80\x02}(" + body + b"u."


def write_cifar(directory: str | Path, images, labels, classes: int,
                split_sizes: tuple[int, int]) -> Path:
    """Write images (N, 3, 32, 32) uint8 and labels as a CIFAR-``classes`` pickle folder.

    ``split_sizes = (n_train, n_test)``: the first n_train examples form the train split, the
    rest the test split. CIFAR-10 gets 5 train batches (``np.array_split``), ``test_batch`` and
    ``batches.meta``; CIFAR-100 gets ``train``, ``test`` (with coarse labels = fine // 5) and
    ``meta``. ``directory`` is the pickle folder itself; it is created. Returns it.
    """
    layout = layout_for(classes)
    images = np.asarray(images, dtype=np.uint8)
    labels = np.asarray(labels, dtype=np.int64)
    n_train, n_test = split_sizes
    if images.shape != (n_train + n_test, 3, SIDE, SIDE) or labels.shape != (len(images),):
        raise ValueError(f"expected {n_train + n_test} images (3, 32, 32) and labels, got "
                         f"{images.shape} and {labels.shape}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    flat = images.reshape(len(images), ROW)
    splits = {"train": np.arange(n_train), "test": np.arange(n_train, n_train + n_test)}
    for split, files in (("train", layout.train_files), ("test", layout.test_files)):
        parts = np.array_split(splits[split], len(files))
        for i, (name, idx) in enumerate(zip(files, parts, strict=True)):
            batch: dict[bytes, object] = {
                b"data": flat[idx],
                layout.label_key: [int(v) for v in labels[idx]],
                b"filenames": [f"img_{j:05d}.png".encode() for j in idx],
            }
            if classes == 10:
                batch[b"batch_label"] = (f"training batch {i + 1} of {len(files)}".encode()
                                         if split == "train" else b"testing batch 1 of 1")
            else:
                batch[b"batch_label"] = f"{split}ing".encode()
                batch[b"coarse_labels"] = [int(v) // 5 for v in labels[idx]]
            (directory / name).write_bytes(dumps_py2(batch))
    names = [f"class_{c}".encode() for c in range(classes)]
    if classes == 10:
        meta = {b"num_cases_per_batch": max(1, -(-n_train // 5)), b"label_names": names,
                b"num_vis": ROW}
    else:
        meta = {b"fine_label_names": names,
                b"coarse_label_names": [f"super_{c}".encode() for c in range(20)]}
    (directory / layout.meta_file).write_bytes(dumps_py2(meta))
    return directory
