"""ImageNet-style image folders (``<split>/<class>/<image>``) decoded once into a uint8 array.

Every image is decoded with PIL, converted to RGB, resized so that its shorter side is ``size``
(bilinear, PIL's antialiased filter) and center-cropped to ``size`` x ``size``. Classes are the
sub-folders in sorted order; images within a class are taken in sorted file-name order. Decoding
runs on a thread pool (PIL releases the GIL); training augments the result in batches
(``lmcpipe.augment``), never per image.

Why an on-disk cache (``cached_split``): ImageNet's 1.28 M training images at 224 px are 193 GB
of uint8, more than a GPU node's memory, and decoding them takes about an hour of CPU. The first
job that needs a split decodes it into ``<folder>/.cache/<split>-<size>px-<key>.npy`` (N, 3, H, W)
uint8 (written under a temporary name, renamed when complete, under a file lock so concurrent
jobs decode it once) with a JSON side file of labels, class names and channel statistics; every
job then memory-maps it, and a training step reads only its batch's rows from the page cache.
The key hashes the file list with sizes and modification times, so an edited folder is decoded
again.

Expected layout under a data root: ``<root>/imagenet/{train,val}/<class>/<image>`` (``locate``);
a user's folder (``imagefolder:<path>``, ``lmcpipe.data.userfolder``) is read by the same
functions. Listing a split's files and classes is ``lmcpipe.data.folders.list_images``.

A format module of ``lmcpipe.data.formats``: the path functions run at every Snakemake start, so
PIL, numpy, torch and the cache are imported inside the functions that decode.
``lmcpipe.data.testing.write_imagefolder`` writes a tiny folder for tests.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from lmcpipe import atomic
from lmcpipe.data.base import DataError, one_line
from lmcpipe.data.folders import list_images

if TYPE_CHECKING:
    import numpy as np
    import torch

FOLDER = "imagenet"
SPLITS = ("train", "val")


def locate(root: str | Path) -> Path | None:
    """``<root>/imagenet`` when it has both a ``train`` and a ``val`` folder."""
    directory = Path(root) / FOLDER
    return directory if all((directory / s).is_dir() for s in SPLITS) else None


def load_image(path: str | Path, size: int) -> np.ndarray:
    """One image as uint8 (size, size, 3): shorter side resized to ``size``, center crop."""
    import numpy as np
    from PIL import Image

    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            w, h = img.size
            if w <= h:
                new = (size, max(size, round(h * size / w)))
            else:
                new = (max(size, round(w * size / h)), size)
            if new != (w, h):
                img = img.resize(new, Image.Resampling.BILINEAR)
            left, top = (new[0] - size) // 2, (new[1] - size) // 2
            img = img.crop((left, top, left + size, top + size))
            array = np.asarray(img, dtype=np.uint8)
    except Exception as e:  # PIL raises OSError, ValueError, SyntaxError, DecompressionBomb...
        raise DataError(f"{path}: cannot decode image ({type(e).__name__}: {one_line(e)}); "
                        "replace or remove the file") from e
    return array


def read_imagefolder(directory: str | Path, size: int, classes: list[str] | None = None,
                     workers: int | None = None) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """All images of a split folder as (uint8 (N, 3, size, size), int64 labels (N,), class names).

    ``classes``: when given (e.g. the train split's names while reading val), the folder must have
    exactly these classes, so that labels mean the same thing in both splits.
    ``workers``: decoding threads (default: up to 8, bounded by the CPU count).
    """
    import numpy as np
    import torch

    directory = Path(directory)
    files, labels, names = list_images(directory)
    _check_classes(directory, names, classes)
    out = np.empty((len(files), 3, size, size), dtype=np.uint8)
    decode_into(out, files, size, workers)
    return torch.from_numpy(out), torch.tensor(labels, dtype=torch.int64), names


def decode_into(out: np.ndarray, files: list[Path], size: int, workers: int | None = None) -> None:
    """Decode ``files`` into the rows of ``out`` (N, 3, size, size), on a thread pool."""

    def fill(i: int) -> None:
        out[i] = load_image(files[i], size).transpose(2, 0, 1)

    workers = workers or min(8, os.cpu_count() or 1)
    if workers <= 1:
        for i in range(len(files)):
            fill(i)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(fill, range(len(files))))  # re-raises the first DataError


def cached_split(directory: str | Path, size: int, classes: list[str] | None = None,
                 workers: int | None = None, cache_dir: str | Path | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, list[str], dict]:
    """A split as a memory-mapped uint8 tensor (N, 3, size, size), labels, class names and the
    cache's metadata (``mean``/``std``: per-channel statistics of the pixels / 255).

    Decodes the folder into the cache on first use (see the module docstring); later calls, from
    any process, map the finished file. The tensor is read-only in effect: it is mapped
    copy-on-write, so nothing written to it reaches the disk.
    """
    import numpy as np
    import torch

    from lmcpipe.augment import channel_stats
    from lmcpipe.data.cache import file_key, locked

    directory = Path(directory)
    files, labels, names = list_images(directory)
    _check_classes(directory, names, classes)
    cache = Path(cache_dir) if cache_dir else directory.parent / ".cache"
    cache.mkdir(parents=True, exist_ok=True)
    # the image list (relative paths, sizes, mtimes) and the resolution
    stem = f"{directory.name}-{size}px-{file_key(files, str(size), base=directory)}"
    array_path, meta_path = cache / f"{stem}.npy", cache / f"{stem}.json"
    with locked(cache / f"{stem}.lock"):  # one decoder; the others wait, then map
        if not meta_path.exists():
            stats = {}

            def decode(tmp: str) -> None:
                out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8,
                                                shape=(len(files), 3, size, size))
                decode_into(out, files, size, workers)
                out.flush()
                mean, std = channel_stats(torch.from_numpy(out))
                stats.update(mean=mean.tolist(), std=std.tolist())

            atomic.write_atomic(array_path, decode)
            meta = {"folder": str(directory), "size": size, "classes": names, "labels": labels,
                    **stats}
            # the side file last: its presence means the cache is complete
            atomic.save_text(json.dumps(meta), meta_path)
    meta = json.loads(meta_path.read_text())
    images = torch.from_numpy(np.load(array_path, mmap_mode="c"))
    return images, torch.tensor(meta["labels"], dtype=torch.int64), meta["classes"], meta


def _check_classes(directory: Path, names: list[str], classes: list[str] | None) -> None:
    if classes is not None and list(classes) != names:
        extra, lacking = sorted(set(names) - set(classes)), sorted(set(classes) - set(names))
        raise DataError(f"{directory}: class folders differ from the expected classes "
                        f"(extra: {extra[:5]}, missing: {lacking[:5]})")


# --- the format interface (see lmcpipe.data.formats) -----------------------------------------
def files(dataset: str, root: str | Path) -> list[Path] | None:
    directory = locate(root)
    return None if directory is None else [directory / s for s in SPLITS]


def note(dataset: str, root: str | Path) -> str:
    """Always "": ImageNet is looked for in one folder only, so no copy is passed over."""
    return ""


def missing_message(dataset: str, root: str | Path) -> str:
    return (f"dataset '{dataset}' not found: put its train/ and val/ folders "
            f"(<class>/<image>) in {Path(root) / FOLDER}")


def download_targets(dataset: str, root: str | Path) -> list[Path]:
    """None: torchvision cannot download ImageNet (it is fetched by hand, under its terms)."""
    return []


def move_download(dataset: str, root: str | Path, tmp: str | Path) -> None:
    raise DataError(missing_message(dataset, root))  # never called: there are no targets


def read_splits(dataset: str, root: str | Path, size: int,
                cache: bool = True) -> dict[str, torch.Tensor]:
    """Both splits at ``size`` px, memory-mapped from the folder's cache, with the per-channel
    statistics computed when it was filled. Always cached: ``cache`` is ignored (a decode of
    ImageNet per job would take an hour)."""
    import torch

    directory = locate(root)
    if directory is None:
        raise DataError(missing_message(dataset, root))
    train_x, train_y, classes, meta = cached_split(directory / "train", size)
    test_x, test_y, _, _ = cached_split(directory / "val", size, classes)
    return {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y,
            "mean": torch.tensor(meta["mean"]), "std": torch.tensor(meta["std"])}
