"""Provenance records: how long an artifact took, and which code and machine produced it.

Results of one experiment may come from several machines, checkouts and library versions (a
cluster's GPUs, a laptop's CPU, a rerun after an edit), and planning a full-size grid needs the
wall time of each kind of job. Snakemake keeps neither, so each trained run and each
interpolated pair gets a small JSON sidecar (``paths.record_file``): the stage, its wall time,
the steps trained, the folder its data was read from (``data_fields``: a partial dataset folder
under the data root silently falls back to another copy, so the record says which), the job's
GPU or CPU slot and the numerics in force (precision, TF32, determinism: ``note_job``) and the
environment (``environment``). ``lmcpipe.aggregate`` gathers them into
the ``provenance`` table.

A record is written after its artifact, so it never exists without one; a stage removes the old
records of what it is about to write (``discard_record``) before it starts, so a crash or a
divergence leaves no record behind. Records are never a job's input: editing or deleting one
reruns nothing. This module imports torch only inside ``environment``: the aggregate stage,
which reads records, does not load torch.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from lmcpipe import atomic, paths

SOURCE = Path(__file__).resolve().parent
GIT_TIMEOUT_S = 5


def _git(*args: str) -> str:
    """Output of ``git -C <lmcpipe source> args``; raises when git is missing, fails or hangs.

    ``--no-optional-locks``: ``git status`` would otherwise refresh the index under a lock,
    which can make a concurrent commit in the same checkout fail."""
    return subprocess.run(["git", "--no-optional-locks", "-C", str(SOURCE), *args],
                          capture_output=True, text=True, check=True,
                          timeout=GIT_TIMEOUT_S).stdout.strip()


def commit() -> str:
    """Commit of the checkout holding the lmcpipe source, ``-dirty`` when the checkout has
    changes; "unknown" when the source is not a tracked file of a git checkout (an installed
    copy) or git is missing or fails."""
    try:
        _git("ls-files", "--error-unmatch", "--", "__init__.py")
        head = _git("rev-parse", "HEAD")
        return head + ("-dirty" if _git("status", "--porcelain") else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def version() -> str:
    try:
        return metadata.version("lmcpipe")
    except metadata.PackageNotFoundError:
        import lmcpipe

        return getattr(lmcpipe, "__version__", "unknown")


def cpu_name() -> str:
    """The CPU model (/proc/cpuinfo's "model name"), else platform's guess, else "cpu"."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


@cache
def _environment(device: str) -> dict[str, Any]:
    import torch

    name = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") \
        else cpu_name()
    return {"lmcpipe": version(), "commit": commit(), "torch": torch.__version__,
            "cuda": torch.version.cuda, "device": device, "device_name": name,
            "host": socket.gethostname(), "python": platform.python_version()}


def environment(device: object) -> dict[str, Any]:
    """Code, library versions and machine of this process on ``device`` (a torch device or its
    string). Computed once per process and device: git and /proc are read only once."""
    return dict(_environment(str(device)))


_JOB: dict[str, Any] = {}  # what every record of this process carries (``note_job``)


def note_job(**fields: Any) -> None:
    """Fields that every record this process writes from now on carries: the job's slot and
    numerics (``lmcpipe.devices.pick_device``), which hold for the whole process."""
    _JOB.update(fields)


def finished() -> str:
    """Now, in UTC, as ISO 8601 (``2025-01-31T12:00:00+00:00``)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def training_fields(stats: dict, wall_s: float | None) -> dict[str, Any]:
    """A trained run's fields from what its training reported (``train.run_stats`` and
    cohort extras such as ``stacked_with``): ``steps_per_s`` is the steps trained here per
    second of ``wall_s``."""
    steps = stats.get("steps")
    rate = round(steps / wall_s, 3) if steps is not None and wall_s else None
    fields = {"start_step": stats.get("start_step"), "stop_step": stats.get("stop_step"),
              "steps": steps, "steps_per_s": rate, "resumed_at": stats.get("resumed_at")}
    return fields | {k: v for k, v in stats.items() if k not in fields and k != "wall_s"}


def data_fields(dataset: Any) -> dict[str, str]:
    """Which copy of the data a run trained (or a path was measured) on: ``data_source``, the
    folder read (a data root's folder, torchvision's layout under it, or a system copy such as
    Debian's), and ``data_note``, why it is not the data root's own folder when that folder
    holds only part of the dataset (empty otherwise). ``dataset``: a ``lmcpipe.data.Data``."""
    return {"data_source": dataset.source, "data_note": dataset.note}


def record(stage: str, device: object, job_start: float, wall_s: float | None,
           **fields: Any) -> dict[str, Any]:
    """One artifact's record: ``stage``, its own ``wall_s``, ``job_wall_s`` (seconds since
    ``job_start``, a ``time.perf_counter()`` taken when the stage's main began), ``fields``,
    the job's ``slot`` and ``numerics`` (``note_job``), the ``finished`` time and the
    ``environment``."""
    return {"stage": stage, "wall_s": _seconds(wall_s),
            "job_wall_s": _seconds(time.perf_counter() - job_start), **fields, **_JOB,
            "finished": finished(), **environment(device)}


def write_record(artifact: str | os.PathLike, rec: dict[str, Any]) -> None:
    """Write ``rec`` as the record of ``artifact``, atomically (call it after the artifact)."""
    atomic.save_text(json.dumps(rec, indent=1) + "\n", paths.record_file(str(artifact)))


def read_record(artifact: str | os.PathLike) -> dict[str, Any] | None:
    """The record of ``artifact``; None without one (runs trained before records existed) or
    when it is unreadable (a warning: a record is informational, it must not block tables)."""
    path = paths.record_file(str(artifact))
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        print(f"warning: ignoring unreadable record {path} ({type(e).__name__})",
              file=sys.stderr)
        return None


def discard_record(artifact: str | os.PathLike) -> None:
    """Remove the record of an artifact about to be rebuilt: until the new artifact is written,
    an old record would describe something that no longer exists."""
    path = paths.record_file(str(artifact))
    if os.path.exists(path):
        os.unlink(path)
