from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lmcpipe import data
from tests.helpers import write_dataset

# Another job shares this machine's cores; single-threaded torch is also what the CLI uses.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    """A data root holding ``fashion_mnist/`` with the tiny dataset (shared: do not modify)."""
    root = tmp_path_factory.mktemp("shared") / "data"
    write_dataset(root / "fashion_mnist")
    return root


@pytest.fixture(scope="session")
def dataset(data_root) -> data.Data:
    return data.load("fashion_mnist", data_root)
