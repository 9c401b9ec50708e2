"""Datasets held as tensors, read from their real on-disk formats.

MNIST-style datasets come as four IDX files (optionally gzipped). They are found under the
configured data root, in torchvision's layout, or where Debian's ``dataset-fashion-mnist`` installs
them; torchvision downloads them only when they are absent and the network answers.

Decoded MNIST-style and CIFAR splits are kept in a cache under ``<data_root>/.cache``
(``lmcpipe.datacache``), so only the first job decodes the original files.
"""

from __future__ import annotations

import argparse
import gzip
import math
import os
import shutil
import socket
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from lmcpipe import datacache

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
    """Train and test splits as image tensors (N, C, H, W) and int64 labels.

    MNIST-style and CIFAR images are held normalised in float32 on ``device``. ImageNet images stay
    uint8 in a memory-mapped file on the host (``imagefolder.cached_split``): ``prepare`` moves
    each batch to ``device`` and normalises it there. ``device`` is where models run.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    mean: torch.Tensor | None = None  # per-channel statistics of the training pixels / 255
    std: torch.Tensor | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def fill(self) -> torch.Tensor | None:
        """Per-channel value of a black pixel after normalisation (CIFAR's zero padding)."""
        return None if self.mean is None else -self.mean / self.std

    @property
    def host_resident(self) -> bool:
        """Whether the images stay on the host (uint8, memory-mapped) whatever ``device`` is."""
        return self.train_x.dtype == torch.uint8

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """A batch on ``device`` as normalised float32: uint8 images are moved and normalised,
        floats pass through."""
        if x.dtype != torch.uint8:
            return x
        x = x.to(self.device, non_blocking=True)
        view = (1, -1) + (1,) * (x.dim() - 2)
        return (x.float() / 255.0 - self.mean.view(view)) / self.std.view(view)

    def to(self, device: str | torch.device) -> Data:
        self.device = torch.device(device)
        names = ["mean", "std"]
        if not self.host_resident:
            names += ["train_x", "train_y", "test_x", "test_y"]
        for name in names:
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value.to(self.device))
        return self


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
    # a bytearray keeps the array writable, so torch.from_numpy can share its memory
    data = np.frombuffer(bytearray(raw), dtype=dtypes[dtype_code], offset=4 + 4 * ndim)
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


def download_address(dataset: str) -> tuple[str, int]:
    """The (host, port) whose answer says whether ``dataset`` could be downloaded.

    ``LMCPIPE_DOWNLOAD_HOST=host[:port]`` replaces it for every dataset, so a test can point it at
    an address that drops packets and see what an offline machine does; torchvision still
    downloads from its own mirrors.
    """
    override = os.environ.get("LMCPIPE_DOWNLOAD_HOST")
    if override:
        host, colon, port = override.rpartition(":")
        return (host, int(port)) if colon else (override, 443)
    info = DATASETS[dataset]
    return info.download_host, info.download_port


def missing_message(dataset: str, root: str | Path) -> str:
    fmt = DATASETS[dataset].format
    if fmt == "cifar":
        from lmcpipe import cifar

        return cifar.missing_message(dataset, root) + " (and the network does not answer)"
    if fmt == "imagefolder":
        return (f"dataset '{dataset}' not found: put its train/ and val/ folders "
                f"(<class>/<image>) in {Path(root) / 'imagenet'}")
    where = ", ".join(str(d) for d in candidate_dirs(dataset, root))
    files = ", ".join(s + "[.gz]" for s in IDX_FILES.values())
    return (
        f"dataset '{dataset}' not found and cannot be downloaded: put {files} in one of: {where}"
    )


def find(dataset: str, root: str | Path) -> list[Path] | None:
    """The files (or folders) a dataset is read from, or None when it is not on disk."""
    fmt = DATASETS[dataset].format
    if fmt == "cifar":
        from lmcpipe import cifar

        directory = cifar.locate_cifar(dataset, root)
        layout = cifar.CIFAR[dataset]
        return None if directory is None else [
            directory / name for name in layout.train_files + layout.test_files]
    if fmt == "imagefolder":
        from lmcpipe import imagefolder

        directory = imagefolder.locate(root)
        return None if directory is None else [directory / s for s in imagefolder.SPLITS]
    files = locate(dataset, root)
    return None if files is None else list(files.values())


def download_targets(dataset: str, root: str | Path) -> list[Path]:
    """Where ``download`` puts a dataset's files; empty when it cannot be downloaded."""
    info = DATASETS[dataset]
    if info.format == "cifar":
        from lmcpipe import cifar

        layout = cifar.CIFAR[dataset]
        folder = Path(root) / dataset / layout.folder
        return [folder / name for name in layout.train_files + layout.test_files]
    if info.format == "idx":
        return [Path(root) / dataset / f"{stem}.gz" for stem in IDX_FILES.values()]
    return []


def download(dataset: str, root: str | Path) -> list[Path]:
    """Fetch a dataset with torchvision and move its files to ``download_targets``.

    torchvision downloads into a temporary directory first, so a failed or killed download never
    leaves files that ``find`` would take for a complete dataset.
    """
    import torchvision.datasets as tvd

    info = DATASETS[dataset]
    targets = download_targets(dataset, root)
    if not targets:
        raise DataError(missing_message(dataset, root))
    target = Path(root) / dataset
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target) as tmp:
        try:
            for train in (True, False):
                getattr(tvd, info.torchvision_name)(tmp, train=train, download=True)
        except Exception as e:  # torchvision raises several kinds on network failure
            raise DataError(f"{missing_message(dataset, root)} (download failed: {e})") from e
        if info.format == "cifar":
            shutil.move(Path(tmp) / targets[0].parent.name, targets[0].parent)
        else:
            for path in targets:
                shutil.move(Path(tmp) / info.torchvision_name / "raw" / path.name, path)
    if find(dataset, root) is None:
        raise DataError(missing_message(dataset, root))
    return targets


def _decode_idx(files: dict[str, Path]) -> dict[str, np.ndarray]:
    arrays = {key: read_idx(path) for key, path in files.items()}
    for split in ("train", "test"):
        n_x, n_y = len(arrays[f"{split}_x"]), len(arrays[f"{split}_y"])
        if n_x != n_y:
            raise DataError(f"{files[split + '_y']}: {n_y} labels for {n_x} {split} images")
    return arrays


def _read_idx_splits(dataset: str, root: str | Path, cache: bool = True
                     ) -> dict[str, torch.Tensor]:
    files = locate(dataset, root)
    if files is None:
        raise DataError(missing_message(dataset, root))
    return datacache.cached_splits(dataset, root, list(files.values()),
                                   lambda: _decode_idx(files), cache)


def _read_splits(dataset: str, root: str | Path, size: int,
                 cache: bool = True) -> dict[str, torch.Tensor]:
    """uint8 images (N, ...) and int64 labels of both splits, in the dataset's own format."""
    info = DATASETS[dataset]
    if info.format == "cifar":
        from lmcpipe import cifar

        return cifar.load_cifar(dataset, root, cache)
    if info.format == "imagefolder":
        from lmcpipe import imagefolder

        directory = imagefolder.locate(root)
        if directory is None:
            raise DataError(missing_message(dataset, root))
        train_x, train_y, classes, meta = imagefolder.cached_split(directory / "train", size)
        test_x, test_y, _, _ = imagefolder.cached_split(directory / "val", size, classes)
        return {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y,
                "mean": torch.tensor(meta["mean"]), "std": torch.tensor(meta["std"])}
    return _read_idx_splits(dataset, root, cache)


def train_stats(fmt: str, train_x: torch.Tensor,
                shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of the training pixels / 255: scalar for one-channel IDX data (as before),
    per channel (``augment.channel_stats``) otherwise."""
    if fmt == "idx":
        train = train_x.float() / 255.0
        return train.mean().reshape(1), train.std().reshape(1)
    from lmcpipe.augment import channel_stats

    return channel_stats(train_x.reshape(-1, *shape))


def load(dataset: str, root: str | Path, device: str | torch.device = "cpu",
         image_size: int = 0, cache: bool = True) -> Data:
    """Read a dataset into tensors on ``device``, normalised by the training pixels' statistics.

    MNIST-style and CIFAR data are held normalised in float32; ImageNet stays uint8 in a
    memory-mapped cache on the host (a float copy would not fit in memory, nor often the uint8
    one) and ``Data.prepare`` moves and normalises each batch. ``image_size`` sets
    the resolution ImageFolder images are stored and trained at (0: the dataset's nominal size).
    ``cache=False`` decodes MNIST-style and CIFAR data from the source files without reading or
    writing the decode cache (``datacache.cached_splits``; ImageNet is always cached).
    """
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset '{dataset}' (known: {', '.join(DATASETS)})")
    info = DATASETS[dataset]
    shape = info.input_shape
    if image_size:
        if info.format != "imagefolder":
            raise DataError(f"image_size applies to image folders, not to '{dataset}'")
        shape = (shape[0], image_size, image_size)
    raw = _read_splits(dataset, root, shape[-1], cache)
    for name in ("train", "test"):
        x = raw[f"{name}_x"]
        if tuple(x.shape[-2:]) != shape[-2:] or x.numel() // len(x) != math.prod(shape):
            raise DataError(f"{dataset} {name} images have shape {tuple(x.shape[1:])}, "
                            f"expected {shape}")
    if "mean" in raw:  # computed once, with the image cache
        mean, std = raw["mean"], raw["std"]
    else:  # recomputed from the (cached) pixels: bit for bit what decoding them would give
        mean, std = train_stats(info.format, raw["train_x"], shape)
    out = Data(raw["train_x"].reshape(-1, *shape), raw["train_y"],
               raw["test_x"].reshape(-1, *shape), raw["test_y"], mean=mean, std=std)
    if info.format != "imagefolder":
        out.train_x, out.test_x = out.prepare(out.train_x), out.prepare(out.test_x)
    return out.to(device)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    p.add_argument("--root", required=True)


def main(args: argparse.Namespace) -> None:
    """Stage: download a dataset that is not on disk (only run when the network answers)."""
    files = download(args.dataset, args.root)
    print("downloaded " + ", ".join(str(f) for f in files))
