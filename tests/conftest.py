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


# Files that build whole workflows or kill and resume jobs, costliest first (seconds on 2 cores).
FIRST = ("test_analyses_workflow.py", "test_paper_a_smoke.py", "test_workflow.py",
         "test_slurm.py", "test_cohort.py")


def pytest_collection_modifyitems(config, items) -> None:
    """Run the costly files first. Under xdist (``-n 2 --dist loadfile``) a file runs whole on
    one worker, in collection order: started last, a 5-minute file keeps one worker busy while
    the other has run out of files; started first, the short files fill the other worker."""
    rank = {name: i for i, name in enumerate(FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(FIRST)))  # stable: files stay whole
