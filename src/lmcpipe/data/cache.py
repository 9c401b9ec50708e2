"""Decode-once, memory-mapped caches of datasets, shared by every job that reads them.

Why: each training job used to decode its dataset from the original files (Fashion-MNIST's
gzipped IDX files: about a second per job; CIFAR's pickles; ImageNet's JPEGs: an hour). The first
job instead writes the decoded arrays as ``.npy`` files and every later job memory-maps them,
which costs little more than the page cache reads.

``cached_splits`` caches a dataset's four split arrays (MNIST-style IDX files, CIFAR pickles)
under ``<data_root>/.cache``, on top of ``cached_arrays``. The rules every cache here follows
(``lmcpipe.data.imagefolder.cached_split`` uses the same key and lock):

- The key (``file_key``) hashes the source files' names, sizes and modification times, so an
  edited or replaced source is decoded again into a new entry rather than served stale.
- One job decodes while concurrent ones wait on a file lock (``locked``) and then map its files.
- Every file is written under a temporary name and renamed when complete
  (``atomic.write_atomic``), and the JSON side file is written last: its presence is what makes
  an entry complete, so a failed or killed decode never leaves an entry that looks finished.
- A cache directory that cannot be written (a read-only data root) is not an error: the data is
  decoded without a cache and stderr says so once per directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from lmcpipe import atomic
from lmcpipe.data.registry import DATASETS
from lmcpipe.data.tensors import train_stats

FORMAT = 1  # bump when the layout of cached entries changes
_warned: set[str] = set()


def file_key(paths: Iterable[str | os.PathLike], salt: str = "",
             base: str | os.PathLike | None = None) -> str:
    """16 hex digits of sha256 over ``salt`` and each file's name, size and mtime (ns).

    Names are resolved absolute paths, or relative to ``base`` when given (a folder whose files
    are listed inside it, as ImageNet's are: the key then survives moving the folder).
    """
    h = hashlib.sha256(salt.encode())
    for path in paths:
        path = Path(path)
        st = path.stat()
        name = path.relative_to(base) if base is not None else path.resolve()
        h.update(f"\0{name}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


@contextlib.contextmanager
def locked(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing): one decoder at a time.

    The lock goes with the open file, so a killed holder releases it; the file itself stays.
    """
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def warn_uncached(cache_dir: Path, error: BaseException) -> None:
    """Say once per directory (per process) that data is decoded without a cache."""
    if str(cache_dir) not in _warned:
        _warned.add(str(cache_dir))
        print(f"lmcpipe: cannot write the data cache in {cache_dir} ({error}); decoding without "
              "a cache", file=sys.stderr)


def cached_arrays(cache_dir: str | os.PathLike, stem: str,
                  decode: Callable[[], dict[str, np.ndarray]],
                  describe: Callable[[dict[str, np.ndarray]], dict] | None = None,
                  mmap: dict[str, bool] | None = None) -> tuple[dict[str, np.ndarray], dict | None]:
    """Named arrays from ``<cache_dir>/<stem>.<name>.npy``, decoded by ``decode()`` the first time.

    ``stem`` must identify the source (a ``file_key`` in it). ``describe(arrays)`` adds facts to
    the JSON side file ``<stem>.json`` (statistics, counts). ``mmap[name]`` False loads that
    array into memory instead of mapping it (labels: small, and converted anyway); others are
    mapped copy-on-write (``np.load(mmap_mode="c")``: shared page-cache pages, which
    ``torch.from_numpy`` takes as writable; a write would stay private to the process).

    Returns the arrays and the side file's contents; when ``cache_dir`` cannot be written, the
    freshly decoded arrays and None (see the module docstring).
    """
    cache_dir = Path(cache_dir)
    if not _complete(cache_dir, stem):  # a complete entry is never rewritten: map it unlocked
        with contextlib.ExitStack() as stack:
            try:
                cache_dir.mkdir(parents=True, exist_ok=True)
                stack.enter_context(locked(cache_dir / f"{stem}.lock"))
            except OSError as e:  # a read-only data root, permissions
                warn_uncached(cache_dir, e)
                return decode(), None
            if not _complete(cache_dir, stem):  # else another job decoded it while we waited
                arrays = decode()  # a decode that raises has written nothing
                try:
                    _write(cache_dir, stem, arrays, describe)
                except OSError as e:  # no space left, a quota
                    warn_uncached(cache_dir, e)
                    return arrays, None
    meta = json.loads((cache_dir / f"{stem}.json").read_text())
    mmap = mmap or {}
    arrays = {name: np.load(cache_dir / f"{stem}.{name}.npy",
                            mmap_mode="c" if mmap.get(name, True) else None)
              for name in meta["arrays"]}
    return arrays, meta


def _write(cache_dir: Path, stem: str, arrays: dict[str, np.ndarray],
           describe: Callable[[dict[str, np.ndarray]], dict] | None) -> None:
    """Each array atomically, then the side file, whose presence marks the entry complete."""
    meta = {"format": FORMAT, "arrays": {name: {"dtype": str(a.dtype), "shape": list(a.shape)}
                                         for name, a in arrays.items()}}
    if describe is not None:
        meta.update(describe(arrays))
    for name, array in arrays.items():
        atomic.write_atomic(cache_dir / f"{stem}.{name}.npy",
                            lambda tmp, a=array: _save_npy(tmp, a))
    atomic.save_text(json.dumps(meta, indent=1), cache_dir / f"{stem}.json")


def _complete(cache_dir: Path, stem: str) -> bool:
    """Whether the side file exists and names array files that all exist."""
    try:
        names = json.loads((cache_dir / f"{stem}.json").read_text())["arrays"]
    except (OSError, ValueError, KeyError):
        return False
    return all((cache_dir / f"{stem}.{name}.npy").is_file() for name in names)


def _save_npy(path: str, array: np.ndarray) -> None:
    with open(path, "wb") as f:  # a file object: np.save would append ".npy" to a bare name
        np.save(f, np.ascontiguousarray(array), allow_pickle=False)


def cache_dir(root: str | os.PathLike) -> Path:
    """Where decoded datasets are cached: under the data root, never next to the source files
    (Fashion-MNIST is often read from a read-only system folder)."""
    return Path(root) / ".cache"


def cached_splits(dataset: str, root: str | os.PathLike, sources: list[Path],
                  decode: Callable[[], dict[str, np.ndarray]],
                  cache: bool = True) -> dict[str, torch.Tensor]:
    """The four split arrays that ``decode()`` reads from ``sources``, through the cache.

    ``decode`` returns ``train_x``, ``train_y``, ``test_x``, ``test_y`` (images as stored in the
    dataset, uint8; labels of any integer dtype). The first call decodes them into
    ``<root>/.cache/<dataset>-<key>.<name>.npy`` with a side file ``<dataset>-<key>.json``
    (counts, the training pixels' statistics, the sources); later calls, from any process,
    memory-map the images and read the labels (see the module docstring). The key hashes the
    sources' resolved paths, sizes and mtimes. ``cache=False`` decodes and touches no cache.
    Returns tensors as the original readers did: images as decoded, labels int64.
    """
    salt = f"{dataset}\0v{FORMAT}"
    stem = f"{dataset}-{file_key(sources, salt=salt)}" if cache else ""
    return split_tensors(root, stem, decode, lambda a: _describe(dataset, sources, a), cache)


def split_tensors(root: str | os.PathLike, stem: str,
                  decode: Callable[[], dict[str, np.ndarray]],
                  describe: Callable[[dict[str, np.ndarray]], dict], cache: bool = True
                  ) -> dict[str, torch.Tensor]:
    """The four split arrays of ``decode()`` as tensors (labels int64), through the cache entry
    ``<root>/.cache/<stem>`` (images memory-mapped, labels read) when ``cache``; shared by
    ``cached_splits`` and the converted datasets (``lmcpipe.data.converted``), which key their
    entries differently."""
    if cache:
        arrays, _ = cached_arrays(cache_dir(root), stem, decode, describe=describe,
                                  mmap={"train_y": False, "test_y": False})
    else:
        arrays = decode()
    return {k: torch.from_numpy(a.astype(np.int64) if k.endswith("_y") else a)
            for k, a in arrays.items()}


def _describe(dataset: str, sources: list[Path], arrays: dict[str, np.ndarray]) -> dict:
    """The side file's facts: written for people and tools; ``load`` recomputes the statistics
    from the cached pixels, so that its result never depends on which job filled the cache."""
    info = DATASETS[dataset]
    mean, std = train_stats(info.format, torch.from_numpy(arrays["train_x"]), info.input_shape)
    return {"dataset": dataset, "sources": [str(Path(p).resolve()) for p in sources],
            "counts": {s: len(arrays[f"{s}_x"]) for s in ("train", "test")},
            "mean": mean.tolist(), "std": std.tolist()}
