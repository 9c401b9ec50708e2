"""Shared builders for the tests: a tiny MNIST-shaped dataset in real IDX files, and hparams."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import torch

from lmcpipe.data import IDX_FILES
from lmcpipe.data.testing import write_idx
from lmcpipe.hparams import TrainHParams

N_TRAIN, N_TEST, SIDE, CLASSES = 240, 120, 28, 10
# Which of the four files are written gzipped (the others raw), to exercise both readers.
GZIPPED = {"train_x": True, "train_y": False, "test_x": False, "test_y": True}


def make_images(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Learnable images: a bright 7x7 block whose (jittered) position encodes the class."""
    labels = rng.permutation(np.arange(n) % CLASSES).astype(np.uint8)
    images = rng.integers(0, 160, size=(n, SIDE, SIDE), dtype=np.uint8)
    for i, c in enumerate(labels):
        r, col = divmod(int(c), 4)
        r0, c0 = 2 + 8 * r + rng.integers(-2, 3), 2 + 6 * col + rng.integers(-2, 3)
        block = images[i, max(r0, 0) : r0 + 7, max(c0, 0) : c0 + 7]
        block[:] = np.maximum(block, rng.integers(100, 200))
    return images, labels


def file_name(key: str) -> str:
    return IDX_FILES[key] + (".gz" if GZIPPED[key] else "")


def write_dataset(directory: Path, seed: int = 0, n_train: int = N_TRAIN,
                  n_test: int = N_TEST) -> dict[str, np.ndarray]:
    """Write the four IDX files into ``directory``; returns the arrays written."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    train_x, train_y = make_images(n_train, rng)
    test_x, test_y = make_images(n_test, rng)
    arrays = {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}
    for key, array in arrays.items():
        write_idx(array, directory / file_name(key))
    return arrays


def tiny_hparams(data_root: str | Path, **overrides) -> TrainHParams:
    """LeNet-300-100 on the tiny Fashion-MNIST stand-in: 30 Adam steps of batch 20."""
    hp = TrainHParams(
        model="lenet_300_100",
        dataset="fashion_mnist",
        data_root=str(data_root),
        optimizer="adam",
        lr=1e-3,
        batch_size=20,
        steps=30,
        eval_steps=(0, 10, 30),
        checkpoint_every=5,
    )
    return dataclasses.replace(hp, **overrides)


def state_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    """Bit-for-bit equality of two state dicts."""
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def cut_short(path: str | Path) -> None:
    """Keep a CSV's header and the first half of its rows, as a full disk or an interrupted
    copy leaves it."""
    lines = Path(path).read_text().splitlines(keepends=True)
    Path(path).write_text("".join(lines[: 1 + (len(lines) - 1) // 2]))


def change_one_value(path: str | Path) -> None:
    """Change the last digit of a CSV's middle row: the same rows, one wrong value."""
    lines = Path(path).read_text().splitlines(keepends=True)
    row = lines[len(lines) // 2]
    i = max(j for j, c in enumerate(row) if c.isdigit())
    lines[len(lines) // 2] = row[:i] + str((int(row[i]) + 1) % 10) + row[i + 1:]
    Path(path).write_text("".join(lines))


# A user's network module for the tests of networks lmcpipe does not ship (test_user_models,
# test_own_errors): one class or value per way of meeting, or breaking, the network contract.
USER_NETS = '''
import torch
from torch import nn


class Small(nn.Module):
    """A conv layer and a linear head that holds most of the weights."""

    def __init__(self, input_shape, num_classes, width=4):
        super().__init__()
        self.conv = nn.Conv2d(input_shape[0], width, 3, padding=1)
        self.head = nn.Linear(width * input_shape[1] * input_shape[2], num_classes)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).flatten(1))


class Declared(Small):
    output_layer = "head"
    excluded = ()  # prune the output layer too


class OwnChoice(Small):
    def prunable_names(self):
        return ["head.weight"]


class OnlyOutput(nn.Module):
    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.out = nn.Linear(input_shape[0] * input_shape[1] * input_shape[2], num_classes)

    def forward(self, x):
        return self.out(x.flatten(1))


class WrongShape(Small):
    def forward(self, x):
        return super().forward(x)[:, :3]


class BadOutputLayer(Small):
    output_layer = "fc"


class Buggy(Small):
    def __init__(self, input_shape, num_classes):
        super().__init__(input_shape, num_classes)
        len(3)  # a bug of the network's own, not a wrong model_args key


class Plain:
    """Takes the arguments, but is not a torch.nn.Module."""

    def __init__(self, input_shape, num_classes):
        self.num_classes = num_classes


def factory(input_shape, num_classes):
    return Small(input_shape, num_classes, width=2)


NUMBER = 3
'''


def write_user_package(folder: Path, name: str) -> Path:
    """``folder/name/`` as a package whose ``nets`` module is ``USER_NETS``."""
    (folder / name).mkdir(parents=True)
    (folder / name / "__init__.py").write_text("")
    (folder / name / "nets.py").write_text(USER_NETS)
    return folder / name
