"""CSV artifacts that prove they are whole before anything reads them.

Snakemake's incomplete-file tracking covers a job that dies while writing; it cannot see a file
damaged after it was written (cut short by a full disk or a copy, edited by hand, replaced by
another run's file). A truncated ``metrics.csv`` once put the dense run at step 0 with test
error 0.0, and a truncated ``path.csv`` made an unstable pair look stable, with exit code 0.

So every CSV artifact is written with a check record beside it (``paths.check_file``:
``metrics.csv`` -> ``metrics.check.json``): its SHA-256, row count and columns. The record is
written before the CSV is renamed into place, so a CSV under its final name always has one.
``read`` refuses a file whose bytes differ from its record, or that has no record, with one line
(``DamagedTable``, a ``StageError``) naming the file and the remedy, as ``atomic.load_torch``
does for checkpoints. Why a checksum rather than only checking contents against the plan: it
needs no knowledge of the table, so every CSV of every stage is covered by the same ten lines,
and it catches any change (a wrong value in a whole row, too), at the cost of hashing a file
once per read. Where the plan says what a file must hold (a run's eval steps, a path's alphas),
the reader checks that too (``expect_rows``): a whole file written for another plan is refused.

Writing needs no pandas (``save_rows``), so training jobs do not pay its import.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

from lmcpipe import atomic, paths
from lmcpipe.errors import StageError


class DamagedTable(StageError):
    """A CSV artifact that is not what its writer wrote, or not what the plan asks for."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        super().__init__(f"{path} is damaged ({reason}); delete it and rerun snakemake, "
                         "which rebuilds it")
        self.path = Path(path)


def _digest(path: str | os.PathLike) -> tuple[str, int]:
    """(SHA-256 hex, data rows: lines after the header) of a file."""
    sha, lines = hashlib.sha256(), 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha.update(chunk)
            lines += chunk.count(b"\n")
    return sha.hexdigest(), max(lines - 1, 0)


def _write_checked(path: str | os.PathLike, columns: list[str], write) -> None:
    """``write(tmp)`` the CSV, record its check beside it, then rename the CSV into place."""

    def write_then_record(tmp: str) -> None:
        write(tmp)
        sha, rows = _digest(tmp)
        record = {"sha256": sha, "rows": rows, "columns": [str(c) for c in columns]}
        atomic.save_text(json.dumps(record) + "\n", paths.check_file(str(path)))

    atomic.write_atomic(path, write_then_record)


def save_rows(rows: list[dict], columns: list[str], path: str | os.PathLike) -> None:
    """Write dict rows as CSV with its check record (no pandas: a training job's import)."""

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)

    _write_checked(path, columns, write)


def save_frame(frame, path: str | os.PathLike) -> None:
    """Write a pandas DataFrame as CSV (no index) with its check record."""
    _write_checked(path, list(frame.columns), lambda tmp: frame.to_csv(tmp, index=False))


def verify(path: str | os.PathLike) -> dict:
    """The check record of ``path`` once its bytes match it; ``DamagedTable`` otherwise.

    A missing CSV keeps its FileNotFoundError (its message already names it)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"missing table {path}")
    check = paths.check_file(str(path))
    try:
        record = json.loads(Path(check).read_text())
        sha, rows = record["sha256"], int(record["rows"])
    except FileNotFoundError:
        raise DamagedTable(path, f"no check record {os.path.basename(check)} beside it") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DamagedTable(path, f"its check record {check} is unreadable: "
                                 f"{type(e).__name__}") from None
    found_sha, found_rows = _digest(path)
    if found_sha != sha:
        what = (f"{found_rows} rows where {rows} were written" if found_rows != rows
                else f"its {rows} rows differ from those written")
        raise DamagedTable(path, f"{what}; SHA-256 differs from {os.path.basename(check)}")
    return record


def read(path: str | os.PathLike, columns: Iterable[str] = (), **read_csv_kwargs):
    """``pandas.read_csv`` of a CSV artifact that ``verify`` found whole and that has
    ``columns``."""
    import pandas as pd  # here: training jobs import this module to write, never to read

    verify(path)
    frame = pd.read_csv(path, **read_csv_kwargs)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DamagedTable(path, f"no column {', '.join(missing)}")
    return frame


def expect_rows(frame, path: str | os.PathLike, keys: list[str], expected: set[tuple],
                what: str) -> None:
    """Refuse a table whose ``keys`` rows are not exactly ``expected`` (each once): e.g. a
    run's metrics must hold every planned eval step for both splits, and nothing else."""
    found = list(frame[keys].itertuples(index=False, name=None))
    seen = set(found)
    if len(found) == len(seen) == len(expected) and seen == expected:
        return
    if len(found) != len(seen):
        reason = "a repeated row"
    elif seen - expected:
        reason = f"an unplanned row {_show(min(seen - expected))}"
    else:
        reason = f"no row for {_show(min(expected - seen))}"
    raise DamagedTable(path, f"{reason}; the plan expects {what}")


def _show(key: tuple) -> str:
    return ", ".join(f"{k:g}" if isinstance(k, float) else str(k) for k in key)
