"""CSV artifacts that check themselves (``lmcpipe.csvfiles``, ``lmcpipe.run_tables``).

Real files written by the project's writers, then damaged as a disk, a copy or a hand would:
cut short, one value changed, the check record lost; and whole files that do not hold what the
plan asks for. The stage-level tests (each reader of a real run refusing a damaged file) are in
test_workflow.py and test_analyses_workflow.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from lmcpipe import csvfiles, paths
from lmcpipe.config import validate
from lmcpipe.csvfiles import DamagedTable
from lmcpipe.run_tables import metric_steps, read_metrics, read_path
from tests.helpers import change_one_value, cut_short

EXP = validate({"experiments": {"x": {
    "model": "lenet_300_100", "dataset": "fashion_mnist",
    "train": {"optimizer": "adam", "lr": 1e-3, "batch_size": 60, "steps": 300,
              "eval_steps": [0, 100, 200]},
    "instability": {"alphas": 5}}}})["x"]
REMEDY = "delete it and rerun snakemake, which rebuilds it"


def metric_rows(steps=(0, 100, 200, 300)) -> list[dict]:
    return [{"step": s, "split": split, "loss": 2.0 / (s + 1), "error": 0.9 - s / 1000}
            for s in steps for split in ("train", "test")]


def path_frame(alphas: int = 5) -> pd.DataFrame:
    rows = [{"alpha": i / (alphas - 1), "split": split, "loss": 0.5, "error": 0.17 + 0.01 * i}
            for i in range(alphas) for split in ("train", "test")]
    return pd.DataFrame(rows, columns=["alpha", "split", "loss", "error"])


def refused(path: Path, reason: str, read) -> str:
    with pytest.raises(DamagedTable) as caught:
        read()
    message = str(caught.value)
    assert message.startswith(f"{path} is damaged (") and reason in message, message
    assert message.endswith(REMEDY) and "\n" not in message
    return message


def test_writers_record_checksum_rows_and_columns(tmp_path):
    f = tmp_path / "metrics.csv"
    csvfiles.save_rows(metric_rows(), ["step", "split", "loss", "error"], f)
    record = json.loads(Path(paths.check_file(str(f))).read_text())
    assert record["rows"] == 8 and record["columns"] == ["step", "split", "loss", "error"]
    assert len(record["sha256"]) == 64
    g = tmp_path / "path.csv"
    csvfiles.save_frame(path_frame(), g)
    assert json.loads(Path(paths.check_file(str(g))).read_text())["rows"] == 10
    assert csvfiles.read(g).equals(pd.read_csv(g))
    assert read_metrics(EXP, str(f), 0)["step"].tolist() == [0, 0, 100, 100, 200, 200, 300, 300]


def test_a_file_cut_short_is_refused(tmp_path):
    f = tmp_path / "metrics.csv"
    csvfiles.save_rows(metric_rows(), ["step", "split", "loss", "error"], f)
    cut_short(f)
    refused(f, "4 rows where 8 were written", lambda: read_metrics(EXP, str(f), 0))
    refused(f, "metrics.check.json", lambda: csvfiles.read(f))


def test_a_file_with_a_wrong_row_is_refused(tmp_path):
    f = tmp_path / "path.csv"
    csvfiles.save_frame(path_frame(), f)
    change_one_value(f)
    refused(f, "its 10 rows differ from those written; SHA-256 differs from path.check.json",
            lambda: read_path(EXP, str(f)))


def test_a_file_without_or_with_a_broken_check_record_is_refused(tmp_path):
    f = tmp_path / "runs.csv"
    csvfiles.save_frame(path_frame(), f)
    check = Path(paths.check_file(str(f)))
    check.write_text("{not json")
    refused(f, "check record", lambda: csvfiles.read(f))
    check.unlink()
    refused(f, "no check record runs.check.json beside it", lambda: csvfiles.read(f))
    with pytest.raises(FileNotFoundError, match="missing table"):
        csvfiles.read(tmp_path / "absent.csv")


def test_a_whole_file_that_is_not_what_the_plan_asks_for_is_refused(tmp_path):
    """Whole and checksummed, but written for another plan: the final step, an alpha or a
    column missing, a step repeated or unplanned."""
    f = tmp_path / "metrics.csv"
    columns = ["step", "split", "loss", "error"]
    csvfiles.save_rows(metric_rows((0, 100, 200)), columns, f)
    refused(f, "no row for 300, test; the plan expects steps 0, 100, 200, 300 x train, test",
            lambda: read_metrics(EXP, str(f), 0))
    csvfiles.save_rows(metric_rows((0, 100, 200, 300, 300)), columns, f)
    refused(f, "a repeated row", lambda: read_metrics(EXP, str(f), 0))
    csvfiles.save_rows(metric_rows((0, 100, 150, 200, 300)), columns, f)
    refused(f, "an unplanned row 150", lambda: read_metrics(EXP, str(f), 0))
    # a run forked at k = 100 evaluates from step 100 on
    assert metric_steps(EXP, 100) == [100, 200, 300]
    csvfiles.save_rows(metric_rows((100, 200, 300)), columns, f)
    assert len(read_metrics(EXP, str(f), 100)) == 6
    csvfiles.save_frame(pd.DataFrame(metric_rows()).drop(columns="error"), f)
    refused(f, "no column error", lambda: read_metrics(EXP, str(f), 0))

    g = tmp_path / "path.csv"
    csvfiles.save_frame(path_frame(4), g)
    refused(g, "an unplanned row 0.333333, test; the plan expects 5 alphas evenly spaced",
            lambda: read_path(EXP, str(g)))
    off = path_frame()
    off.loc[2, "alpha"] = 0.3
    csvfiles.save_frame(off, g)
    refused(g, "an unplanned row 0.3, train", lambda: read_path(EXP, str(g)))


def test_float32_alphas_written_as_text_are_the_planned_points(tmp_path):
    """interpolate writes torch.linspace's float32 alphas: 1/29 is 0.03448275849223137."""
    import torch

    exp = validate({"experiments": {"x": {
        "model": "lenet_300_100", "dataset": "fashion_mnist",
        "train": {"optimizer": "adam", "lr": 1e-3, "batch_size": 60, "steps": 30},
        "instability": {"alphas": 30}}}})["x"]
    rows = [{"alpha": a, "split": s, "loss": 0.1, "error": 0.1}
            for a in torch.linspace(0, 1, 30).tolist() for s in ("train", "test")]
    g = tmp_path / "path.csv"
    csvfiles.save_frame(pd.DataFrame(rows), g)
    assert len(read_path(exp, str(g))) == 60
