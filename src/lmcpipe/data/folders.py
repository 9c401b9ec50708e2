"""The listing of an image folder (``<split>/<class>/<image>``): which files, which classes.

Apart from ``imagefolder`` (which decodes, and caches through ``lmcpipe.data.cache``) because
the registry lists a user's folder to learn its facts (``lmcpipe.data.user``) and the cache
reads the registry: listing must not depend on decoding. Stdlib only.
"""

from __future__ import annotations

from pathlib import Path

from lmcpipe.data.base import DataError

EXTENSIONS = (".jpg", ".jpeg", ".png")  # compared case-insensitively (ImageNet uses .JPEG)


def list_images(directory: str | Path) -> tuple[list[Path], list[int], list[str]]:
    """Image files, their class indices and the sorted class names of a split folder."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory}: image folder missing (expected <class>/<image> "
                        "sub-folders)")
    classes = sorted(p.name for p in directory.iterdir()
                     if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{directory}: no class folders (expected <class>/<image>)")
    files, labels = [], []
    for index, name in enumerate(classes):
        images = sorted(p for p in (directory / name).iterdir()
                        if p.is_file() and p.suffix.lower() in EXTENSIONS)
        if not images:
            raise DataError(f"{directory / name}: class folder holds no "
                            f"{'/'.join(EXTENSIONS)} images")
        files += images
        labels += [index] * len(images)
    return files, labels, classes
