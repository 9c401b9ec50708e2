"""Datasets held as tensors, read from their real on-disk formats.

MNIST-style datasets come as four IDX files (optionally gzipped). They are found under the
configured data root, in torchvision's layout, or where Debian's ``dataset-fashion-mnist`` installs
them; torchvision downloads them only when they are absent and the network answers.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import socket
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

IDX_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a dataset, known without reading it."""

    name: str
    format: str  # "idx", "cifar" or "imagefolder"
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


class DataError(RuntimeError):
    """A dataset is missing or malformed; the message says where files are expected."""


@dataclass
class Data:
    """Train and test splits as normalised float tensors (N, C, H, W) and int64 labels."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    fill: torch.Tensor | None = None  # per-channel value of a black pixel after normalisation


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (gzipped or not) into an array of its declared shape."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: cannot be read ({e})") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    dtype_code, ndim = raw[2], raw[3]
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if dtype_code not in dtypes:
        raise DataError(f"{path}: unknown IDX element type 0x{dtype_code:02x}")
    if len(raw) < 4 + 4 * ndim:
        raise DataError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=dtypes[dtype_code], offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise DataError(f"{path}: header says {shape} but holds {data.size} values")
    return data.reshape(shape)


def write_idx(array: np.ndarray, path: str | Path) -> None:
    """Write a uint8 array as an IDX file (gzipped when the name ends in .gz)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + array.tobytes())


def candidate_dirs(dataset: str, root: str | Path) -> list[Path]:
    info = DATASETS[dataset]
    root = Path(root)
    return [
        root / dataset,
        root / dataset / "raw",
        root / info.torchvision_name / "raw",
        *(Path(d) for d in info.system_dirs),
    ]


def _find_file(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def locate(dataset: str, root: str | Path) -> dict[str, Path] | None:
    """The four IDX files of ``dataset``, from the first directory that has them all."""
    for directory in candidate_dirs(dataset, root):
        files = {key: _find_file(directory, stem) for key, stem in IDX_FILES.items()}
        if all(files.values()):
            return files  # type: ignore[return-value]
    return None


def network_answers(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    """Whether a download could work; LMCPIPE_OFFLINE=1 says no without asking the network."""
    if os.environ.get("LMCPIPE_OFFLINE"):
        return False
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def missing_message(dataset: str, root: str | Path) -> str:
    where = ", ".join(str(d) for d in candidate_dirs(dataset, root))
    files = ", ".join(s + "[.gz]" for s in IDX_FILES.values())
    return (
        f"dataset '{dataset}' not found and cannot be downloaded: put {files} in one of: {where}"
    )


def download(dataset: str, root: str | Path) -> dict[str, Path]:
    """Fetch the gzipped IDX files with torchvision and move them to ``root/<dataset>/``.

    torchvision downloads into a temporary directory first, so a failed or killed download never
    leaves files that ``locate`` would take for a complete dataset.
    """
    import torchvision.datasets as tvd

    info = DATASETS[dataset]
    target = Path(root) / dataset
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target) as tmp:
        try:
            for train in (True, False):
                getattr(tvd, info.torchvision_name)(tmp, train=train, download=True)
        except Exception as e:  # torchvision raises several kinds on network failure
            raise DataError(f"{missing_message(dataset, root)} (download failed: {e})") from e
        for stem in IDX_FILES.values():
            shutil.move(Path(tmp) / info.torchvision_name / "raw" / f"{stem}.gz",
                        target / f"{stem}.gz")
    files = locate(dataset, root)
    if files is None:
        raise DataError(missing_message(dataset, root))
    return files


def load(dataset: str, root: str | Path, device: str | torch.device = "cpu") -> Data:
    """Read a dataset into normalised tensors (per-dataset mean/std of the training pixels)."""
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset '{dataset}' (known: {', '.join(DATASETS)})")
    files = locate(dataset, root)
    if files is None:
        raise DataError(missing_message(dataset, root))
    arrays = {key: read_idx(path) for key, path in files.items()}
    shape = DATASETS[dataset].input_shape
    for split in ("train", "test"):
        n_x, n_y = len(arrays[f"{split}_x"]), len(arrays[f"{split}_y"])
        if n_x != n_y:
            raise DataError(f"{files[split + '_y']}: {n_y} labels for {n_x} {split} images")
    train_x = torch.from_numpy(arrays["train_x"].astype(np.float32) / 255.0)
    test_x = torch.from_numpy(arrays["test_x"].astype(np.float32) / 255.0)
    mean, std = train_x.mean(), train_x.std()
    for name, x in (("train", train_x), ("test", test_x)):
        if tuple(x.shape[1:]) != shape[1:]:
            raise DataError(f"{dataset} {name} images have shape {tuple(x.shape[1:])}, "
                            f"expected {shape[1:]}")
    return Data(
        train_x=((train_x - mean) / std).reshape(-1, *shape).to(device),
        train_y=torch.from_numpy(arrays["train_y"].astype(np.int64)).to(device),
        test_x=((test_x - mean) / std).reshape(-1, *shape).to(device),
        test_y=torch.from_numpy(arrays["test_y"].astype(np.int64)).to(device),
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    p.add_argument("--root", required=True)


def main(args: argparse.Namespace) -> None:
    """Stage: download a dataset that is not on disk (only run when the network answers)."""
    files = download(args.dataset, args.root)
    print("downloaded " + ", ".join(str(f) for f in files.values()))
