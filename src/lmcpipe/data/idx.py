"""MNIST-style datasets (MNIST, Fashion-MNIST): four IDX files, optionally gzipped.

They are found under the configured data root, in torchvision's layout, or where Debian's
``dataset-fashion-mnist`` installs them (``candidate_dirs``). Decoded splits are kept in the data
root's cache (``lmcpipe.data.cache``), so only the first job reads the IDX files.

A format module of ``lmcpipe.data.formats``: ``files``, ``missing_message``, ``download_targets``
and ``move_download`` only look at paths, and the Snakemake rules call them at every start, so
this module imports numpy and the cache (torch) only inside the functions that decode.
"""

from __future__ import annotations

import gzip
import shutil
import struct
from pathlib import Path
from typing import TYPE_CHECKING

from lmcpipe.data.registry import DATASETS, DataError, partial_folders

if TYPE_CHECKING:
    import numpy as np
    import torch

IDX_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (gzipped or not) into an array of its declared shape."""
    import numpy as np

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


def _partial(dataset: str, root: str | Path, until: Path | None = None) -> list[str]:
    """Candidate folders before ``until`` holding some but not all four files, and what each
    lacks (``registry.partial_folders``)."""
    def lacking(directory: Path) -> list[str]:
        return [f"{stem}[.gz]" for stem in IDX_FILES.values() if not _find_file(directory, stem)]

    return partial_folders(candidate_dirs(dataset, root), lacking, len(IDX_FILES), until)


def note(dataset: str, root: str | Path) -> str:
    """Why the files ``locate`` finds are not in a folder searched earlier that holds part of the
    dataset ("data/fashion_mnist/ lacks t10k-labels-idx1-ubyte[.gz]; using
    /usr/share/datasets/fashion-mnist"); "" when no such folder was passed over."""
    located = locate(dataset, root)
    if located is None:
        return ""
    used = located["train_x"].parent
    partial = _partial(dataset, root, used)
    return f"{'; '.join(partial)}; using {used}" if partial else ""


# --- the format interface (see lmcpipe.data.formats) -----------------------------------------
def files(dataset: str, root: str | Path) -> list[Path] | None:
    located = locate(dataset, root)
    return None if located is None else list(located.values())


def missing_message(dataset: str, root: str | Path) -> str:
    where = ", ".join(str(d) for d in candidate_dirs(dataset, root))
    names = ", ".join(s + "[.gz]" for s in IDX_FILES.values())
    partial = "; ".join(_partial(dataset, root))
    return (
        f"dataset '{dataset}' not found and cannot be downloaded: put {names} in one of: {where}"
        + (f" ({partial})" if partial else "")
    )


def download_targets(dataset: str, root: str | Path) -> list[Path]:
    return [Path(root) / dataset / f"{stem}.gz" for stem in IDX_FILES.values()]


def move_download(dataset: str, root: str | Path, tmp: str | Path) -> None:
    """Move the files torchvision downloaded into ``tmp`` to ``download_targets``."""
    raw = Path(tmp) / DATASETS[dataset].torchvision_name / "raw"
    for path in download_targets(dataset, root):
        shutil.move(raw / path.name, path)


def _decode(located: dict[str, Path]) -> dict[str, np.ndarray]:
    arrays = {key: read_idx(path) for key, path in located.items()}
    for split in ("train", "test"):
        n_x, n_y = len(arrays[f"{split}_x"]), len(arrays[f"{split}_y"])
        if n_x != n_y:
            raise DataError(f"{located[split + '_y']}: {n_y} labels for {n_x} {split} images")
    return arrays


def read_splits(dataset: str, root: str | Path, size: int,
                cache: bool = True) -> dict[str, torch.Tensor]:
    """uint8 images (N, 28, 28) and int64 labels of both splits, through the decode cache
    (``cache=False``: read the IDX files and touch no cache). ``size``: IDX images have one."""
    from lmcpipe.data.cache import cached_splits

    located = locate(dataset, root)
    if located is None:
        raise DataError(missing_message(dataset, root))
    return cached_splits(dataset, root, list(located.values()), lambda: _decode(located), cache)
