"""Damaged checkpoints: ``atomic.load_torch`` names the file and the remedy, the CLI says it in
one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lmcpipe import atomic


def checkpoint(path: Path) -> Path:
    """A model record as the stages write it (weights and metadata), via ``save_torch``."""
    record = {"state_dict": {"fc.weight": torch.randn(300, 100), "fc.bias": torch.zeros(300)},
              "step": 20, "model": "lenet_300_100", "prunable": ["fc.weight"], "frozen": []}
    atomic.save_torch(record, path)
    return path


@pytest.mark.parametrize("damage", [
    lambda raw: raw[: len(raw) // 2],  # a copy or a write cut short
    lambda raw: raw[:-10],  # the zip's central directory lost
    lambda raw: raw[:10],
    lambda raw: b"",
    lambda raw: b"<html>404</html>" * 10,  # overwritten by something else
], ids=["half", "no-central-directory", "10-bytes", "empty", "overwritten"])
def test_damaged_checkpoint_names_the_file_and_the_remedy(tmp_path, damage):
    path = checkpoint(tmp_path / "model.pt")
    assert atomic.load_torch(path)["step"] == 20
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(atomic.DamagedArtifact) as err:
        atomic.load_torch(path)
    message = str(err.value)
    assert message.startswith(f"{path} is damaged (")
    assert "delete it and rerun snakemake" in message
    assert "\n" not in message
    assert err.value.path == path


def test_missing_checkpoint_keeps_its_own_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        atomic.load_torch(tmp_path / "absent.pt")


def test_stage_reports_a_damaged_input_in_one_line(tmp_path):
    path = checkpoint(tmp_path / "model.pt")
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)
    done = subprocess.run([sys.executable, "-m", "lmcpipe", "prune", "--model", str(path),
                           "--fraction", "0.2", "--level", "1", "--out", "mask.pt"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert done.stderr.startswith(f"lmcpipe prune: {path} is damaged ("), done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert not (tmp_path / "mask.pt").exists()


def test_equal_objects_are_saved_as_equal_bytes(tmp_path):
    """Run fingerprints hash a start point's bytes: a W_0 rebuilt by a retried job (a SLURM job
    group reruns all its jobs) must keep its bytes, or every resume file of its runs would be
    ignored as stale (tests/slurm: killed, resubmitted and resumed)."""
    state = {"state_dict": {"w": torch.arange(6.0).reshape(2, 3)}, "step": 0}
    atomic.save_torch(state, tmp_path / "a.pt")
    atomic.save_torch(state, tmp_path / "b.pt")
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    assert torch.equal(atomic.load_torch(tmp_path / "a.pt")["state_dict"]["w"],
                       state["state_dict"]["w"])
