"""Progress lines and provenance records.

* ``Progress`` prints about 20 lines a run (one per 5 % of its steps, never two for a step), on
  the same grid after a resume, with the speed of the steps trained in this process, and draws
  no random numbers.
* A real ``lmcpipe train`` process prints them and writes a record beside its model (after it);
  a cohort's members each get one, and members restored from partial files keep the wall time
  recorded when they were trained.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lmcpipe import cli, paths, provenance
from lmcpipe.hparams import to_json
from lmcpipe.progress import Progress, duration
from lmcpipe.training import cohort
from tests.helpers import tiny_hparams

LINE = re.compile(r"^(?P<label>[^:]+): step (?P<step>\d+)/(?P<stop>\d+) \((?P<pct>\d+)%\), "
                  r"(?P<rate>[\d.]+) steps/s, ETA (?P<eta>\d+s|\d+m\d\ds|\d+h\d\dm), "
                  r"loss (?P<loss>-?[\d.]+|nan|inf)(?P<range> \(min [\d.-]+, max [\d.-]+\))?$")
ENVIRONMENT = {"lmcpipe", "commit", "torch", "cuda", "device", "device_name", "host", "python"}
TRAINED = ["stage", "wall_s", "job_wall_s", "start_step", "stop_step", "steps", "steps_per_s",
           "resumed_at"]


def ticks(progress: Progress, start: int, stop: int, loss: torch.Tensor) -> dict[int, str]:
    """Tick every step start+1 .. stop, as the training loop does; the lines printed, by step."""
    lines = {}
    for step in range(start + 1, stop + 1):
        line = progress.tick(step, loss)
        if line is not None:
            lines[step] = line
    return lines


# --- Progress ------------------------------------------------------------------------------
def test_a_run_of_1000_steps_prints_20_lines_every_50_steps(capsys):
    rng = torch.get_rng_state()
    lines = ticks(Progress(0, 1000, "train"), 0, 1000, torch.tensor(0.31274))
    assert list(lines) == list(range(50, 1001, 50))
    assert capsys.readouterr().out.splitlines() == list(lines.values())
    for step, line in lines.items():
        m = LINE.match(line)
        assert m, line
        assert (m["label"], int(m["step"]), int(m["stop"])) == ("train", step, 1000)
        assert int(m["pct"]) == step // 10 and m["loss"] == "0.3127" and not m["range"]
        assert float(m["rate"]) > 0
    assert LINE.match(lines[1000])["eta"] == "0s"
    assert torch.equal(torch.get_rng_state(), rng)  # no random numbers drawn


def test_a_resumed_run_prints_on_the_same_grid_with_the_speed_of_its_own_steps(capsys):
    progress = Progress(400, 1000, "train", origin=0)
    time.sleep(0.2)
    lines = ticks(progress, 400, 1000, torch.tensor(1.0))
    assert list(lines) == list(range(450, 1001, 50))  # no line at the resumed step itself
    first = LINE.match(lines[450])
    assert first["pct"] == "45"
    # 50 steps in at least 0.2 s: at most 250 steps/s (counting from step 0 would give 2250)
    assert float(first["rate"]) <= 250
    capsys.readouterr()


def test_a_run_from_k_and_a_short_run():
    """From k = 100 the grid is over the run's own 1000 steps; with fewer steps than 20 parts,
    one line per step at most, and always one at the last step."""
    lines = ticks(Progress(100, 1100), 100, 1100, torch.tensor(0.5))
    assert list(lines) == list(range(150, 1101, 50))
    assert lines[600].startswith("step 600/1100 (50%), ")  # no label, no prefix
    assert list(ticks(Progress(0, 7, "x"), 0, 7, torch.tensor(0.5))) == list(range(1, 8))
    assert len(ticks(Progress(0, 30, "x"), 0, 30, torch.tensor(0.5))) == 20


def test_stacked_losses_print_their_mean_and_range():
    line = Progress(0, 1, "stacked (3 members)").tick(1, torch.tensor([0.1, 0.2, 0.6]))
    m = LINE.match(line)
    assert m["label"] == "stacked (3 members)" and m["loss"] == "0.3000"
    assert m["range"] == " (min 0.1000, max 0.6000)"


def test_durations():
    assert [duration(s) for s in (0, 42.4, 552, 3600 + 5 * 60 + 59)] == ["0s", "42s", "9m12s",
                                                                         "1h05m"]


# --- records -------------------------------------------------------------------------------
def test_record_file_replaces_the_suffix():
    assert paths.record_file("results/x/s0/dense/model.pt") == "results/x/s0/dense/model.run.json"
    assert paths.record_file("results/x/s0/rewind/k100.pt") == "results/x/s0/rewind/k100.run.json"
    assert paths.record_file("d0/path.csv") == "d0/path.run.json"


def test_environment_names_the_code_and_the_machine():
    env = provenance.environment(torch.device("cpu"))
    assert set(env) == ENVIRONMENT
    assert env["device"] == "cpu" and env["torch"] == torch.__version__ and env["device_name"]
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?|unknown", env["commit"])
    assert provenance.environment("cpu") == env  # one environment per process and device


def check_trained(record: dict, stage: str, start: int, stop: int, steps: int,
                  earlier: bool = False) -> None:
    """A trained run's record; ``earlier``: its training happened in an earlier job (a partial
    file), so this job's ``job_wall_s`` need not exceed its ``wall_s``."""
    assert list(record)[:len(TRAINED)] == TRAINED
    assert set(record) >= ENVIRONMENT and record["device"] == "cpu"
    assert (record["stage"], record["start_step"], record["stop_step"], record["steps"]) == (
        stage, start, stop, steps)
    assert record["wall_s"] > 0 and record["job_wall_s"] > 0
    assert earlier or record["job_wall_s"] >= record["wall_s"]
    assert record["steps_per_s"] == pytest.approx(steps / record["wall_s"], rel=1e-2)
    assert record["finished"].endswith("+00:00")


def test_train_process_prints_progress_and_writes_a_record(data_root, tmp_path):
    hp = tiny_hparams(data_root, steps=60, eval_steps=(0, 60), checkpoint_every=0)
    start = tmp_path / "k0.pt"
    assert cli.main(["init", "--hparams", to_json(hp), "--seed", "0", "--out", str(start)]) == 0
    out = tmp_path / "run"
    command = [sys.executable, "-m", "lmcpipe", "train", "--hparams", to_json(hp), "--seed", "0",
               "--start", str(start), "--order", "0", "--model-out", f"{out}/model.pt",
               "--metrics-out", f"{out}/metrics.csv", "--device", "cpu"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    lines = [m for line in done.stdout.splitlines() if (m := LINE.match(line))]
    assert [int(m["step"]) for m in lines] == list(range(3, 61, 3))
    assert all(m["label"] == "train" and m["stop"] == "60" for m in lines)
    record = provenance.read_record(out / "model.pt")
    check_trained(record, "train", 0, 60, 60)
    assert record["resumed_at"] is None
    assert Path(paths.record_file(f"{out}/model.pt")).stat().st_mtime >= (
        out / "model.pt").stat().st_mtime
    # a rewind point (no metrics): its record is beside k5.pt
    rewind = tmp_path / "rewind" / "k5.pt"
    command[command.index("--model-out") + 1:] = [str(rewind), "--stop-step", "5", "--device",
                                                  "cpu"]
    subprocess.run(command, capture_output=True, timeout=120, check=True)
    check_trained(json.loads((tmp_path / "rewind" / "k5.run.json").read_text()), "train", 0, 5,
                  5)


def test_cohort_members_get_records_and_keep_their_partials_times(data_root, dataset,
                                                                  tmp_path):
    hp = tiny_hparams(data_root, steps=20, eval_steps=(0, 20), checkpoint_every=0)
    start = tmp_path / "k0.pt"
    assert cli.main(["init", "--hparams", to_json(hp), "--seed", "0", "--out", str(start)]) == 0

    def members(where: str) -> list[cohort.Member]:
        return [cohort.Member(order=o, copy=c, model_out=f"{tmp_path}/{where}/d{o}c{c}/model.pt",
                              metrics_out=f"{tmp_path}/{where}/d{o}c{c}/metrics.csv",
                              start=str(start)) for o in (0, 1) for c in (1, 2)]

    def stage(ms: list[cohort.Member], stack: int) -> None:
        spec = json.dumps([dataclasses.asdict(m) for m in ms])
        assert cli.main(["cohort", "--hparams", to_json(hp), "--seed", "0", "--start-step", "0",
                         "--level", "0", "--members", spec, "--stack", str(stack),
                         "--device", "cpu"]) == 0

    stacked = members("stacked")
    stage(stacked, 2)
    for m in stacked:
        record = provenance.read_record(m.model_out)
        check_trained(record, "cohort", 0, 20, 20)
        assert (record["stacked_with"], record["resumed_from_partial"]) == (2, False)
    # every member trained, the job killed before it wrote them: all wait in partial files
    kept = members("kept")
    stats: list[dict] = []
    cohort.train_cohort(hp, 0, 0, 0, kept, dataset, 1, stats)
    assert all(Path(paths.partial_file(m.model_out)).exists() for m in kept)
    stage(kept, 1)
    for m, before in zip(kept, stats, strict=True):
        record = provenance.read_record(m.model_out)
        check_trained(record, "cohort", 0, 20, 20, earlier=True)
        assert record["wall_s"] == round(before["wall_s"], 4)  # the time of its training
        assert (record["stacked_with"], record["resumed_from_partial"]) == (1, True)
