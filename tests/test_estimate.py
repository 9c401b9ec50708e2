"""``lmcpipe estimate``: the dry-run parser, the counts, the roofline, the schedule, and the
projected wall time of a real Snakemake run against the measured one.

The parser and the counts read a real dry run of a small workflow; the projection is checked
against a real ``snakemake --cores 2`` run of a demo-shaped config (LeNet-300-100 on the tiny
Fashion-MNIST stand-in of ``tests.helpers``, short runs), calibrated on this machine into a
cache of the test's own.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from lmcpipe import dryrun, estimate, estimate_table, roofline, schedule, workload
from lmcpipe.cli import main as cli_main
from lmcpipe.errors import InputError
from tests.helpers import write_dataset

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

# demo-shaped: the demo's network, optimiser and batch; one init, two orders, one IMP level
# (the chain's retrain and the level's pair), pairs forked at k = 0; a tenth of the demo's steps
MINI = {
    "all": ["mini"],
    "experiments": {"mini": {
        "model": "lenet_300_100",
        "dataset": "fashion_mnist",
        "train": {"optimizer": "adam", "lr": 7e-3, "batch_size": 60, "steps": 100,
                  "eval_steps": [0], "eval_train_examples": 200, "checkpoint_every": 50},
        "prune": {"fraction": 0.8, "levels": 1, "rewind_steps": [0], "baseline_pairs": False},
        "instability": {"fork_steps": [0], "alphas": 5},
        "replicates": {"inits": [0], "orders": [0, 1]},
    }},
}
TARGET = "results/tables/mini/paths.csv"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    wd = tmp_path_factory.mktemp("estimate")
    write_dataset(wd / "data" / "fashion_mnist", n_train=2400, n_test=600)
    (wd / "config.yaml").write_text(yaml.safe_dump({"data_root": str(wd / "data"), **MINI}))
    return wd


def options(wd: Path, cores: int = 2, **kw) -> dryrun.SnakemakeOptions:
    return dryrun.SnakemakeOptions((TARGET,), str(REPO / "Snakefile"), str(wd),
                                   (str(wd / "config.yaml"),), cores=cores, **kw)


@pytest.fixture(scope="module")
def planned(workdir) -> tuple[list[dryrun.PlannedJob], str]:
    done = subprocess.run(options(workdir).command(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return dryrun.parse(done.stdout), done.stdout


def job_stats(output: str) -> dict[str, int]:
    lines = output.splitlines()
    counts = {}
    for line in lines[lines.index("Job stats:") + 3:]:
        name, _, count = line.partition(" ")
        if name == "total" or not count.strip().isdigit():
            break
        counts[name] = int(count)
    return counts


def test_parser_reads_every_job_of_a_real_dry_run(planned):
    jobs, text = planned
    counted: dict[str, int] = {}
    for j in jobs:
        counted[j.rule] = counted.get(j.rule, 0) + 1
    assert counted == job_stats(text)  # Snakemake's own count, rule by rule
    assert len({j.jobid for j in jobs}) == len(jobs)
    cohorts = [j for j in jobs if j.rule.startswith("cohort_")]
    assert cohorts and all(j.kind != j.rule and j.wildcards["exp"] == "mini" for j in cohorts)
    for j in cohorts:
        stage, flags = dryrun.stage_call(j.shell)
        assert stage == "cohort" and flags["seed"] == ["0"] and len(flags["members"]) == 1
        assert j.outputs and all(o.startswith("results/mini/") for o in j.outputs)


def test_edges_follow_outputs_to_inputs(planned):
    jobs, _ = planned
    needs = dryrun.needs(jobs)
    by_id = {j.jobid: j for j in jobs}
    for j in jobs:
        for n in needs[j.jobid]:
            assert set(by_id[n].outputs) & set(j.inputs)
    prune = [j for j in jobs if j.rule == "prune"]
    assert prune and all(any(by_id[n].rule.startswith("cohort_") for n in needs[p.jobid])
                         for p in prune)
    inits = [j.jobid for j in jobs if j.rule == "init"]
    assert inits and all(not needs[i] for i in inits)  # reads nothing another job makes
    length, path, _ = schedule.critical_path(
        {j.jobid: schedule.Task(1.0) for j in jobs}, needs)
    assert path[0] in inits and by_id[path[-1]].rule == "aggregate" and length == len(path)


def test_stage_call_reads_flags_up_to_the_redirection():
    stage, flags = dryrun.stage_call(
        "python -m lmcpipe cohort --hparams '{\"a\": 1}' --members '[]' --stack 4"
        " --threads 2 > 'logs/x y.log' 2>&1")
    assert stage == "cohort"
    assert flags == {"hparams": ['{"a": 1}'], "members": ["[]"], "stack": ["4"],
                     "threads": ["2"]}
    assert dryrun.stage_call("touch x") == ("", {})


def test_job_work_counts_member_steps_evaluations_and_chunks(planned, workdir):
    jobs, _ = planned
    sizes = {"fashion_mnist": (2400, 600)}
    works = [estimate.job_work(j, sizes, lambda hp, members: 3) for j in jobs]
    per_eval = 200 + 600  # eval_train_examples + the test set
    for w in works:
        stage, flags = dryrun.stage_call(w.job.shell)
        if stage == "cohort":
            members = len(yaml.safe_load(flags["members"][0]))
            start = int(flags["start-step"][0])
            assert w.runs == members and w.member_steps == members * (100 - start)
            evals = 2 if start == 0 else 1  # eval step 0, and the end
            assert w.eval_examples == members * evals * per_eval
            assert sorted(k for k, _ in w.chunks) == sorted(
                estimate.stack_chunks(members, 3))  # --stack 0: the default given
        elif stage == "interpolate-pairs":
            assert w.eval_examples == w.runs * 5 * per_eval and w.member_steps == 0
    assert estimate.stack_chunks(18, 16) == [16, 2]
    assert estimate.stack_chunks(5, 2, solo=1) == [1, 2, 2]
    assert estimate.stack_chunks(3, 0) == [1, 1, 1]


def test_workload_counts_lenet_flops_exactly(tmp_path, monkeypatch):
    """LeNet-300-100 at batch 60: forward 2 x (784x300 + 300x100 + 100x10) FLOPs per example;
    backward: the weight gradients (as many again) and the input gradients of layers 2 and 3
    (the images need none)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    workload.step_cost.cache_clear()
    forward = 2 * (784 * 300 + 300 * 100 + 100 * 10)
    step = workload.step_cost("lenet_300_100", "fashion_mnist", 60, "fp32")
    assert step.flops == 60 * (2 * forward + 2 * (300 * 100 + 100 * 10))
    assert step.params == 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10
    assert step.bytes > 7 * 4 * step.params  # the update, and every op's tensors
    assert workload.eval_cost("lenet_300_100", "fashion_mnist", 12_000, "fp32").flops == \
        12_000 * forward
    half = workload.step_cost("lenet_300_100", "fashion_mnist", 60, "bf16")
    assert half.flops == step.flops and half.bytes < step.bytes
    assert (tmp_path / "lmcpipe" / "workload.json").exists()  # the on-disk cache


def test_roofline_is_the_larger_of_compute_and_traffic(tmp_path):
    spec_file = tmp_path / "gpu.yaml"
    spec_file.write_text("toy:\n  name: Toy\n  bandwidth_gb_s: 1\n"
                         "  peak_tflops: {fp32: 1, bf16: 4}\n")
    spec = roofline.device_spec(str(spec_file))
    assert roofline.roofline_seconds(2e12, 1e9, spec, "fp32") == 2.0  # compute-bound
    assert roofline.bound(2e12, 1e9, spec, "fp32") == "compute"
    assert roofline.roofline_seconds(1e12, 5e9, spec, "fp32") == 5.0  # memory-bound
    assert roofline.roofline_seconds(8e12, 1e9, spec, "bf16") == 2.0
    assert roofline.roofline_seconds(8e12, 1e9, spec, "tf32") == 8.0  # absent: fp32's peak
    h100 = roofline.device_spec("H100")
    assert h100.peak("bf16") == 989.4e12 and h100.bandwidth == 3350e9
    assert set(roofline.shipped()) == {"h100", "a100", "h200"}
    with pytest.raises(InputError, match="--device-spec nowhere: neither a shipped device"):
        roofline.device_spec("nowhere")
    spec_file.write_text("toy:\n  name: Toy\n  peak_tflops: {fp32: 1}\n")
    with pytest.raises(InputError, match="needs bandwidth_gb_s"):
        roofline.device_spec(str(spec_file))


def test_schedule_plays_the_dag_out_on_cores_and_gpu_slots():
    # a -> (b, c) -> d; b is long
    tasks = {0: schedule.Task(1), 1: schedule.Task(5), 2: schedule.Task(2), 3: schedule.Task(1)}
    needs = {0: set(), 1: {0}, 2: {0}, 3: {1, 2}}
    assert schedule.critical_path(tasks, needs)[:2] == (7.0, (0, 1, 3))
    assert schedule.simulate(tasks, needs, cores=2).wall_s == 7.0
    assert schedule.simulate(tasks, needs, cores=1).wall_s == 9.0
    wide = {i: schedule.Task(1, threads=2) for i in range(3)}
    assert schedule.simulate(wide, {}, cores=4).wall_s == 2.0  # two at a time
    assert schedule.simulate(wide, {}, cores=1).wall_s == 3.0  # more threads than cores: all
    gpu = {i: schedule.Task(1, gpu=True) for i in range(4)}
    assert schedule.simulate(gpu, {}, cores=8, gpus=2).wall_s == 2.0
    assert schedule.simulate(gpu, {}, cores=8, gpus=4).wall_s == 1.0


def test_estimate_refuses_bad_flags_in_one_line(capsys, workdir):
    assert cli_main(["estimate", "--cores", "0", TARGET]) == 1
    assert capsys.readouterr().err.strip() == "lmcpipe estimate: --cores 0: give at least 1"
    assert cli_main(["estimate", "--gpus", "0", TARGET]) == 1
    assert capsys.readouterr().err.strip() == "lmcpipe estimate: --gpus 0: give at least 1"
    if not torch.cuda.is_available():
        assert cli_main(["estimate", "--gpus", "4", TARGET]) == 1
        assert "--gpus 4: torch sees no CUDA device here; give --device-spec" in \
            capsys.readouterr().err
    assert cli_main(["estimate", "--device-spec", "b200", TARGET]) == 1
    assert "--device-spec b200: neither a shipped device" in capsys.readouterr().err
    assert cli_main(["estimate", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
                     "--configfile", str(workdir / "config.yaml"), "results/no/such.pdf"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("lmcpipe estimate: the dry run (snakemake -n) of results/no/such.pdf "
                          "failed:") and "\n" not in err


def test_projected_wall_time_is_within_30_percent_of_a_real_run(workdir, tmp_path, monkeypatch):
    """On one core: the projected wall time (Snakemake's start and every job one after another,
    each calibrated here) against the run's measured time on a core of its own, i.e. the CPU
    time of all its processes. The calibrations count CPU time too (``lmcpipe.calibrate``), so
    the test suite's other worker on the same cores changes neither figure; the wall time is
    printed beside it. The default demo on 2 cores is measured by hand (README)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    result = estimate.estimate(options(workdir, cores=1), cores=1, log=lambda line: None)
    text = estimate_table.report(result, (TARGET,))
    projected = result.wall_here_s
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "snakemake", TARGET, "--cores", "1", "-s",
                           str(REPO / "Snakefile"), "-d", str(workdir), "--configfile",
                           str(workdir / "config.yaml")], capture_output=True, text=True)
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    measured = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    assert done.returncode == 0, done.stderr[-3000:]
    print(text, f"\nprojected {projected:.1f}s, measured {measured:.1f}s ({wall:.1f}s wall)")
    assert abs(projected - measured) <= 0.3 * measured, (projected, measured, text)
    # finished work is not planned again; --all (--forceall) plans it all
    assert dryrun.plan(options(workdir))[0] == []
    forced = dryrun.plan(options(workdir, forceall=True))[0]
    assert {j.rule for j in forced} >= {j.rule for j in result.jobs}
    empty = estimate.Estimate([], [], {}, result.here, "", 0.0, 1, 0)
    assert "nothing to do" in estimate_table.report(empty, (TARGET,))
