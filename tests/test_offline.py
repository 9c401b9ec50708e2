"""A missing dataset on a machine whose network does not answer: plans stay fast.

Every job that reads the dataset asks, in its input function, whether a download could work; an
unanswered connect waits out its 3 s timeout. The tests point that question
(``LMCPIPE_DOWNLOAD_HOST``) at real local listeners: one that drops connections as a firewall
does, one that answers and counts them.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.test_workflow import TINY, job_counts, snakemake

pytestmark = pytest.mark.slow


def cifar_config(data_root: Path, inits: int) -> dict:
    """The tiny workflow on CIFAR-10, which is not under ``data_root``."""
    config = {"data_root": str(data_root), **yaml.safe_load(yaml.safe_dump(TINY))}
    config["experiments"]["tiny"]["dataset"] = "cifar10"
    config["experiments"]["tiny"]["replicates"]["inits"] = list(range(inits))
    return config


@pytest.fixture
def dropping_address() -> Iterator[str]:
    """host:port of a listener whose one-slot accept queue is full: Linux then drops every
    further SYN, so a connect waits out its whole timeout, as behind a firewall."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        host, port = server.getsockname()
        with socket.create_connection((host, port)):
            try:
                socket.create_connection((host, port), timeout=0.5).close()
            except TimeoutError:
                yield f"{host}:{port}"
            else:
                pytest.skip("this system answers connections beyond a full accept queue")


def test_dry_run_does_not_wait_for_an_unreachable_network(tmp_path, dropping_address):
    took = time.monotonic()
    result = snakemake(tmp_path, cifar_config(tmp_path / "nodata", inits=4), "-n",
                       env={"LMCPIPE_DOWNLOAD_HOST": dropping_address, "LMCPIPE_OFFLINE": ""})
    took = time.monotonic() - took
    assert result.returncode == 0, result.stderr[-3000:]
    counts = job_counts(result.stdout)
    reading = sum(n for rule, n in counts.items() if rule.startswith(("cohort_", "interpolate_")))
    assert reading >= 30  # asking once per job, as before, would wait ≥ 90 s
    assert took < 45, f"dry run took {took:.0f} s"
    output = result.stdout + result.stderr
    assert output.count("cifar10 is not on disk") == 1, output[-3000:]
    assert counts["download_cifar10"] == 1


def test_a_run_asks_the_network_once(tmp_path):
    """``--touch`` builds the same DAG as a run (not a dry run) without running any stage, so
    the download job does not go to the internet."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        host, port = server.getsockname()
        result = snakemake(tmp_path, cifar_config(tmp_path / "nodata", inits=1), "--touch",
                           env={"LMCPIPE_DOWNLOAD_HOST": f"{host}:{port}",
                                "LMCPIPE_OFFLINE": ""})
        assert result.returncode == 0, result.stderr[-3000:]
        server.setblocking(False)
        asked = 0
        while True:  # connections queue (and stay) in the backlog until accepted
            try:
                server.accept()[0].close()
            except BlockingIOError:
                break
            asked += 1
    assert "download_cifar10" in result.stdout + result.stderr
    assert asked == 1
