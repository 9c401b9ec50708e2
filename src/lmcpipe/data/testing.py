"""Writers of each on-disk format, for tests and benchmarks: real files, read back by the readers.

Kept apart from the readers so that the package's modules carry no code that only tests run;
nothing in ``lmcpipe`` outside tests and benchmarks imports this module.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
from PIL import Image

from lmcpipe.data.cifar import ROW, SIDE, layout_for
from lmcpipe.data.imagefolder import SPLITS
from lmcpipe.data.torchvision_sets import TORCHVISION


# --- IDX (MNIST-style) -----------------------------------------------------------------------
def write_idx(array: np.ndarray, path: str | Path) -> None:
    """Write a uint8 array as an IDX file (gzipped when the name ends in .gz)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + array.tobytes())


# --- CIFAR: the opcodes Python 2's cPickle wrote at protocol 2 -------------------------------
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


# --- ImageNet-style folders ------------------------------------------------------------------
def write_imagefolder(root: str | Path, n_classes: int, per_class: int, size: int,
                      seed: int = 0, splits: tuple[str, ...] = SPLITS) -> Path:
    """Write a tiny learnable ImageNet-style folder (for tests); returns ``root``.

    ``root/<split>/n<class:08d>/<split>_<class>_<i>.JPEG|.png``: ``per_class`` images per class and
    split, of varied sizes and aspect ratios (shorter side between ``size`` and ``2 * size``),
    alternately real JPEG (RGB or grayscale) and PNG (RGB or RGBA) files. Each class has its own
    mean colour plus noise, so the classes can be told apart after resizing and cropping.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    colours = rng.integers(30, 226, size=(n_classes, 3))
    for split in splits:
        for c in range(n_classes):
            folder = root / split / f"n{c:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                short = int(rng.integers(size, 2 * size + 1))
                long = int(rng.integers(short, 2 * short + 1))
                h, w = (short, long) if i % 2 else (long, short)
                pixels = colours[c] + rng.integers(-25, 26, size=(h, w, 3))
                img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
                stem = folder / f"{split}_{c}_{i}"
                if i % 4 == 0:
                    img.save(stem.with_suffix(".JPEG"), "JPEG", quality=90)
                elif i % 4 == 1:
                    img.save(stem.with_suffix(".png"), "PNG")
                elif i % 4 == 2:
                    img.convert("L").save(stem.with_suffix(".jpg"), "JPEG", quality=90)
                else:
                    img.convert("RGBA").save(stem.with_suffix(".png"), "PNG")
    return root


# --- torchvision's own layout ----------------------------------------------------------------
def write_torchvision_mnist(data_root: str | Path, name: str,
                            train: tuple[np.ndarray, np.ndarray],
                            test: tuple[np.ndarray, np.ndarray]) -> Path:
    """Write an MNIST-style torchvision set (``MNIST``, ``FashionMNIST``, ``KMNIST``) as
    torchvision keeps it after a download: the four extracted IDX files under
    ``<data_root>/torchvision/<name>/raw/``, which torchvision's own class then reads
    (``torchvision:<name>``). ``train``/``test``: (uint8 images (N, 28, 28), labels). Returns
    the ``raw`` folder."""
    paths = [Path(data_root) / "torchvision" / f for f in TORCHVISION[name].files]
    for path, array in zip(paths, (*train, *test), strict=True):  # train x, y, then test
        path.parent.mkdir(parents=True, exist_ok=True)
        write_idx(np.asarray(array, dtype=np.uint8), path)
    return paths[0].parent
