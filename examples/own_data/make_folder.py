"""Write a folder of images to train on: Fashion-MNIST as PNG files, one folder per class.

Stands in for a folder of one's own (scans, photos, microscope images): lmcpipe reads any folder
laid out as ``<root>/train/<class>/<image>`` and ``<root>/test/<class>/<image>`` (or ``val/``).

    .venv/bin/python examples/own_data/make_folder.py data/fashion_folder --per-class 600 100

takes the first ``per-class`` images of each class from each split of the Fashion-MNIST that
lmcpipe finds under ``--data-root`` (or Debian's dataset-fashion-mnist) and writes them as
8-bit grayscale PNGs. Deterministic: the same arguments write the same files.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from lmcpipe.data import locate, read_idx

CLASSES = ("t-shirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
           "bag", "ankle_boot")


def write_split(images: np.ndarray, labels: np.ndarray, folder: Path, per_class: int) -> int:
    written = 0
    for index, name in enumerate(CLASSES):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in np.flatnonzero(labels == index)[:per_class]:
            Image.fromarray(images[i]).save(folder / name / f"{i:05d}.png")
            written += 1
    return written


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root", type=Path, help="the image folder to write")
    p.add_argument("--per-class", type=int, nargs=2, default=(600, 100),
                   metavar=("TRAIN", "TEST"), help="images per class in each split")
    p.add_argument("--data-root", default="data", help="where lmcpipe looks for Fashion-MNIST")
    args = p.parse_args()
    files = locate("fashion_mnist", args.data_root)
    if files is None:
        raise SystemExit("make_folder: Fashion-MNIST not found (apt-get install "
                         "dataset-fashion-mnist, or put its IDX files in data/fashion_mnist/)")
    for split, per_class in zip(("train", "test"), args.per_class, strict=True):
        n = write_split(read_idx(files[f"{split}_x"]), read_idx(files[f"{split}_y"]),
                        args.root / split, per_class)
        print(f"{args.root / split}: {n} images in {len(CLASSES)} class folders")


if __name__ == "__main__":
    main()
