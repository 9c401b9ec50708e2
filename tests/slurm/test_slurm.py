"""The workflow on a real SLURM cluster through `--profile profiles/slurm` (issue 4).

The cluster is the single node of tests/slurm/cluster.sh (Debian's slurm-wlm 22.05 with slurmdbd,
so that sacct answers, and a stand-in GPU). The session fixture starts it when the packages are
installed and it is not up (CI starts it before the suite, see .ci/run); otherwise the tests skip
and say why, unless LMCPIPE_REQUIRE_SLURM=1 makes that a failure.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from lmcpipe import costs, models, paths
from lmcpipe import data as lmcpipe_data
from lmcpipe.hparams import TrainHParams, conform
from lmcpipe.training.single import train
from tests.helpers import write_dataset
from tests.test_workflow import TINY, job_counts

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"
PROFILE = REPO / "profiles" / "slurm"
SUBMITTED = re.compile(r"has been submitted with SLURM jobid (\d+)")

pytestmark = pytest.mark.slow


def tiny_experiments() -> dict:
    """TINY cut to what still runs every cluster rule but rewind (one pruning level, one data
    order), once on the CPU and once asking for a GPU (the node's GPU is a stand-in: the jobs
    get it scheduled, find no CUDA device and fall back to the CPU)."""
    cpu = yaml.safe_load(yaml.safe_dump(TINY["experiments"]["tiny"]))
    cpu["prune"]["levels"] = 1
    cpu["prune"]["baseline_levels"] = []  # TINY's [2] is beyond one level: every level
    cpu["instability"]["fork_steps"] = [0]
    cpu["replicates"]["orders"] = [0]
    gpu = {**yaml.safe_load(yaml.safe_dump(cpu)), "resources": {"gpu": True}}
    return {"tiny": cpu, "tiny_gpu": gpu}


def tables(*experiments: str) -> list[str]:
    return [paths.table(e, t) for e in experiments for t in ("runs", "paths", "instability")]


def snakemake(workdir: Path, config: dict, *args: str, timeout: int = 600
              ) -> subprocess.CompletedProcess:
    """Snakemake from the repository's Snakefile in ``workdir`` (targets first in ``args``)."""
    cfg = workdir / "config.yaml"
    cfg.write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "snakemake", *args, "-s", str(REPO / "Snakefile"),
           "-d", str(workdir), "--configfile", str(cfg)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def cluster_script(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(CLUSTER), *args], capture_output=True, text=True,
                          timeout=timeout)


def unavailable(reason: str):
    if os.environ.get("LMCPIPE_REQUIRE_SLURM") == "1":
        pytest.fail(f"LMCPIPE_REQUIRE_SLURM=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def cluster():
    """The test cluster, up; started (and stopped afterwards) here when it is not running."""
    if shutil.which("slurmctld") is None or shutil.which("sbatch") is None:
        unavailable("SLURM is not installed (bash tests/slurm/cluster.sh install, as root)")
    if cluster_script("status").returncode == 0:
        yield
        return
    if os.geteuid() != 0:
        unavailable("the test cluster is not up and starting it needs root "
                    "(bash tests/slurm/cluster.sh start)")
    t0 = time.monotonic()
    started = cluster_script("start")
    if started.returncode != 0:
        unavailable(f"tests/slurm/cluster.sh start failed: {started.stderr.strip()[-800:]}")
    print(f"SLURM test cluster started in {time.monotonic() - t0:.1f} s")
    yield
    cluster_script("stop")


def sacct(jobids: list[str]) -> dict[str, dict[str, str]]:
    out = subprocess.run(["sacct", "-n", "-X", "-P", "-j", ",".join(jobids),
                          "-o", "JobID,State,AllocTRES"],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    rows = (line.split("|") for line in out.splitlines() if line.strip())
    return {jobid: {"state": state, "tres": tres} for jobid, state, tres in rows}


@pytest.fixture(scope="module")
def runs(cluster, tmp_path_factory) -> dict:
    """The tables of both experiments built on the cluster, and the CPU one's built locally."""
    data = tmp_path_factory.mktemp("slurm_data") / "data"
    write_dataset(data / "fashion_mnist")
    config = {"data_root": str(data), "all": ["tiny"], "experiments": tiny_experiments()}
    # the local reference run of the CPU experiment overlaps with the cluster run's waits
    local_wd = tmp_path_factory.mktemp("local")
    local_cfg = local_wd / "config.yaml"
    local_cfg.write_text(yaml.safe_dump(
        {**config, "experiments": {"tiny": config["experiments"]["tiny"]}}))
    local = subprocess.Popen(
        [sys.executable, "-m", "snakemake", *tables("tiny"), "-s", str(REPO / "Snakefile"),
         "-d", str(local_wd), "--configfile", str(local_cfg), "--cores", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wd = tmp_path_factory.mktemp("slurm")
    t0 = time.monotonic()
    # --cores 1: each batch job (job group) asks for one CPU, so that the two experiments' groups
    # share the two-CPU node; the profile's 20 s before the first status check is for real
    # queues, 2 s suits this idle one.
    result = snakemake(wd, config, *tables("tiny", "tiny_gpu"), "--profile", str(PROFILE),
                       "--cores", "1", "--slurm-init-seconds-before-status-checks", "2")
    wall = time.monotonic() - t0
    output = result.stdout + result.stderr
    local_output, _ = local.communicate(timeout=600)
    assert result.returncode == 0, output[-5000:]
    assert local.returncode == 0, local_output[-3000:]
    print(f"SLURM run: {len(SUBMITTED.findall(output))} sbatch submissions, {wall:.0f} s")
    return {"wd": wd, "local": local_wd, "config": config, "output": output}


def test_jobs_are_submitted_as_one_batch_job_per_group(runs):
    jobids = SUBMITTED.findall(runs["output"])
    # per experiment, the chain's steps: k0/L0_chain (init, the dense run, level 1's prune with
    # the random mask) and k0/L1_chain (the chain's level-1 run); the other runs: k0/L0 (the
    # other copies forked at 0, their interpolation) and k0/L1 (level 1's other runs, its
    # interpolation); aggregate runs locally
    assert len(jobids) == 8, runs["output"][-3000:]
    accounted = sacct(jobids)
    assert set(accounted) == set(jobids)
    assert {a["state"] for a in accounted.values()} == {"COMPLETED"}
    gpu_jobs = [j for j, a in accounted.items() if "gres/gpu=1" in a["tres"]]
    assert len(gpu_jobs) == 4  # only the experiment that asks for a GPU gets one, in each group


def test_cluster_results_match_a_local_run(runs):
    wd, local = runs["wd"], runs["local"]
    cluster = pd.read_csv(wd / paths.table("tiny", "runs"))
    pd.testing.assert_frame_equal(cluster, pd.read_csv(local / paths.table("tiny", "runs")))
    models = sorted(p.relative_to(local) for p in (local / "results" / "tiny").rglob("model.pt"))
    assert len(models) == len(cluster)
    for model in models:
        a = torch.load(wd / model, weights_only=True)["state_dict"]
        b = torch.load(local / model, weights_only=True)["state_dict"]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), model
    # the GPU experiment ran on the CPU (no CUDA device behind the stand-in GPU): same numbers
    gpu = pd.read_csv(wd / paths.table("tiny_gpu", "runs"))
    pd.testing.assert_frame_equal(gpu.drop(columns="experiment"),
                                  cluster.drop(columns="experiment"))


def test_rerun_submits_nothing(runs):
    again = snakemake(runs["wd"], runs["config"], *tables("tiny", "tiny_gpu"),
                      "--profile", str(PROFILE), "--cores", "1")
    output = again.stdout + again.stderr
    assert again.returncode == 0, output[-3000:]
    assert SUBMITTED.findall(output) == []
    assert job_counts(again.stdout) == {}
    assert "Nothing to be done" in output


# --- without a cluster ------------------------------------------------------------------------
def planned_resources(workdir: Path, config: dict, target: str, *args: str) -> dict[str, str]:
    """{rule: its `resources:` line} of a dry run through the SLURM profile."""
    result = snakemake(workdir, config, target, "--profile", str(PROFILE), "-n", *args)
    assert result.returncode == 0, result.stderr[-3000:]
    found, rule = {}, None
    for line in result.stdout.splitlines():
        line = line.strip()
        if line.startswith(("rule ", "localrule ")):
            rule = line.split()[-1].rstrip(":")
        elif line.startswith("resources:") and rule:
            found[rule] = line
    return found


@pytest.mark.parametrize(
    ("resources", "cluster", "expected"),
    [
        ({}, None, ["gpu=0", "gpu_model=,", "gres=,", "device=auto"]),
        ({"gpu": True, "runtime_min": 7, "mem_mb": 3000}, None,
         ["gpu=1", "gpu_model=,", "gres=,", "device=auto", "runtime=7", "mem_mb=3000"]),
        ({"require_gpu": True}, "{gpu_flag: gpus, gpu_model: h100}",
         ["gpu=1", "gpu_model=h100", "gres=,", "device=cuda"]),
        ({"gpu": True}, "{gpu_flag: gres, gpu_model: a100}",
         ["gpu=0", "gpu_model=,", "gres=gpu:a100:1", "device=auto"]),
    ],
)
def test_experiment_resources_become_job_resources(tmp_path, resources, cluster, expected):
    """An experiment's `resources:` and the profile's `cluster:` site facts, as every job of a
    job group (training, interpolation and the small jobs between them) declares them."""
    write_dataset(tmp_path / "data" / "fashion_mnist")
    exp = {**tiny_experiments()["tiny"], "resources": resources}
    config = {"data_root": str(tmp_path / "data"), "experiments": {"tiny": exp}}
    args = ["--config", f"cluster={cluster}"] if cluster else []
    planned = planned_resources(tmp_path, config, paths.path("tiny", 0, 0, "imp", 1, 0), *args)
    assert {"init", "cohort_dense_tiny", "prune", "cohort_level_tiny",
            "interpolate_level_tiny"} <= set(planned)
    for rule, line in planned.items():
        for item in expected:
            assert item in line + ",", (rule, line)


def test_required_gpu_fails_with_a_clear_message_without_one(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    write_dataset(tmp_path / "data" / "fashion_mnist")
    exp = {**tiny_experiments()["tiny"], "resources": {"require_gpu": True}}
    config = {"data_root": str(tmp_path / "data"), "experiments": {"tiny": exp}}
    result = snakemake(tmp_path, config, "results/tiny/s0/dense/model.pt", "--cores", "1")
    assert result.returncode != 0
    log = (tmp_path / "logs/tiny/s0/k0/L0/dense_train.log").read_text()
    assert "--device cuda: torch sees no CUDA device" in log, log[-2000:]


# --- runtimes and memory from the work (lmcpipe.costs) ----------------------------------------
def planned_jobs(output: str) -> list[dict]:
    """Every job of a dry run's output: rule, group (None outside one), resources and the
    shell command's arguments."""
    jobs, group = [], None
    for line in output.splitlines():
        found = re.search(r"Group job (\S+) \(jobs", line)
        if found:
            group = found.group(1)
            continue
        text = line.strip()
        if text.startswith(("rule ", "localrule ")):
            grouped = line.startswith("    ") and group is not None
            jobs.append({"rule": text.split()[-1].rstrip(":"), "group": group if grouped else None,
                         "resources": {}, "args": []})
        elif text.startswith("resources:") and jobs:
            jobs[-1]["resources"] = dict(item.split("=", 1)
                                         for item in text.removeprefix("resources: ").split(", "))
        elif text.startswith("Shell command:") and jobs:
            jobs[-1]["args"] = shlex.split(text.removeprefix("Shell command:").split(">")[0])
    return jobs


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def cohort_estimate(job: dict, device: str) -> float:
    """The runtime estimate of a cohort job from its own command line: its members, start step
    and hyperparameters (lmcpipe.costs, the shipped table)."""
    hp = conform(json.loads(flag(job["args"], "--hparams")), TrainHParams)
    work = costs.training_work(hp, len(json.loads(flag(job["args"], "--members"))),
                               int(flag(job["args"], "--start-step")))
    return costs.Costs().minutes(hp, device, work)


def group_runtimes(jobs: list[dict]) -> dict[str, int]:
    """What each batch job asks for: the sum of its jobs' runtimes (Snakemake's group
    resources: its jobs run one after another on the group's GPU)."""
    out: dict[str, int] = {}
    for job in jobs:
        if job["group"]:
            out[job["group"]] = out.get(job["group"], 0) + int(job["resources"]["runtime"])
    return out


def test_paper_scale_cohorts_ask_for_a_gpu_and_at_least_their_estimate(tmp_path):
    """The shipped imp_resnet20.pdf through the shipped profile (CIFAR-10 need not be on disk:
    the dry run plans its download). Before issue 22 every cohort job asked for gpu=0,
    runtime=30, mem_mb=2000."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    result = snakemake(tmp_path, config, "results/figures/imp_resnet20.pdf", "--profile",
                       str(PROFILE), "-n")
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = planned_jobs(result.stdout)
    cohorts = [j for j in jobs if j["rule"].startswith("cohort_")]
    assert len(cohorts) >= 300, len(cohorts)
    for job in cohorts:
        res = job["resources"]
        assert (res["gpu"], res["device"]) == ("1", "auto"), job["rule"]
        # the profile names no GPU model: the cost table's slow "unknown" GPU
        assert int(res["runtime"]) >= cohort_estimate(job, "unknown"), (job["rule"], res)
        assert int(res["mem_mb"]) >= 4000, (job["rule"], res)  # CUDA's host side alone
    level = [j for j in cohorts if j["rule"] == "cohort_level_resnet20"]
    assert level and all(int(j["resources"]["runtime"]) > 60 for j in level)
    assert max(group_runtimes(jobs).values()) <= 2880  # the profile's max_runtime_min


def test_job_groups_share_the_sites_walltime_cap(tmp_path):
    """Every kind of compute job (probes, successive paths, curvature, the control) of a GPU
    experiment, under a 7-minute cap: no batch job asks for more, and the groups whose jobs
    add up to more ask for exactly the cap (so the plan knows which jobs share a group)."""
    write_dataset(tmp_path / "data" / "fashion_mnist")
    exp = yaml.safe_load(yaml.safe_dump(TINY["experiments"]["tiny"]))
    exp["resources"] = {"gpu": True}
    exp["instability"]["control"] = True
    exp["prune"]["rewind_steps"] = [0, 5]
    exp["analyses"] = {"successive": True, "curvature": True, "curvature_examples": 20,
                       "perturb_scales": [1.0], "oneshot_steps": 1}
    config = {"data_root": str(tmp_path / "data"), "all": ["tiny"],
              "experiments": {"tiny": exp}}
    result = snakemake(tmp_path, config, "--profile", str(PROFILE), "-n", "--config",
                       "cluster={gpu_flag: gpus, gpu_model: h100, max_runtime_min: 7}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "missing from its group's runtime plan" not in result.stdout + result.stderr
    jobs = planned_jobs(result.stdout)
    rules = {j["rule"] for j in jobs if j["group"]}
    for kind in ("perturb_start_tiny", "oneshot_mask_tiny", "cohort_perturb_tiny",
                 "cohort_oneshot_tiny", "successive", "curvature", "cohort_restart_tiny",
                 "rewind", "prune", "init"):
        assert kind in rules, (kind, sorted(rules))
    asked = group_runtimes(jobs)
    assert max(asked.values()) <= 7, asked
    assert 7 in asked.values(), asked  # groups over the cap ask for all of it


# --- longer than the site allows: killed at the limit, resubmitted, resumed --------------------
TRAIN_SECONDS = 110  # more than a 1-minute limit allows (SLURM kills at 60-95 s), on this machine


def long_steps(data: Path) -> int:
    """Steps of the run below that take about TRAIN_SECONDS on this machine as loaded now
    (timed here on one thread, as the job trains): the test needs a run the limit interrupts,
    and no more attempts than that."""
    hp = TrainHParams(model="lenet_300_100", dataset="fashion_mnist", data_root=str(data),
                      optimizer="adam", lr=1e-3, batch_size=20, steps=10**9)
    dataset = lmcpipe_data.load("fashion_mnist", data)
    model = models.build_initialised("lenet_300_100", "fashion_mnist", 0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            train(hp, model, dataset, order=0, copy=1, stop_step=200, record=False)
            began = time.perf_counter()
            train(hp, model, dataset, order=0, copy=1, start_step=200, stop_step=2200,
                  record=False)
    finally:
        torch.set_num_threads(threads)
    rate = 2000 / (time.perf_counter() - began)
    print(f"timed here: {rate:.0f} steps per second")
    return max(20, round(rate * TRAIN_SECONDS / 1000)) * 1000


def long_config(data: Path, steps: int) -> dict:
    """One LeNet run (the dense run alone: no pairs, no pruning), checkpointed every 5 %."""
    return {"data_root": str(data), "all": ["long"], "experiments": {"long": {
        "model": "lenet_300_100", "dataset": "fashion_mnist",
        "train": {"optimizer": "adam", "lr": 1e-3, "batch_size": 20, "steps": steps,
                  "eval_steps": [0, steps], "checkpoint_every": steps // 20},
        "prune": {"levels": 0}, "instability": {"fork_steps": [], "alphas": 5},
        "replicates": {"inits": [0], "orders": [0]}}}}


def run_long(where: Path, data: Path, steps: int) -> dict:
    """The long run through the SLURM profile with a 1-minute cap, and the same config run
    locally at the same time (uninterrupted): both work directories and the sacct rows
    (JobID, State, Timelimit, Elapsed) of every submission."""
    config = long_config(data, steps)
    local_wd, wd = where / "local", where / "slurm"
    local_wd.mkdir(parents=True)
    wd.mkdir()
    (local_wd / "config.yaml").write_text(yaml.safe_dump(config))
    local = subprocess.Popen(
        [sys.executable, "-m", "snakemake", LONG_TARGET, "-s", str(REPO / "Snakefile"), "-d",
         str(local_wd), "--configfile", str(local_wd / "config.yaml"), "--cores", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    t0 = time.monotonic()
    # --retries 8: a loaded machine trains slower and needs more 1-minute attempts
    result = snakemake(wd, config, LONG_TARGET, "--profile", str(PROFILE), "--cores", "1",
                       "--retries", "8", "--slurm-init-seconds-before-status-checks", "2",
                       "--config", "cluster={gpu_flag: gpus, gpu_model: '', max_runtime_min: 1}",
                       timeout=1200)
    wall = time.monotonic() - t0
    output = result.stdout + result.stderr
    local_output, _ = local.communicate(timeout=900)
    assert result.returncode == 0, output[-5000:]
    assert local.returncode == 0, local_output[-3000:]
    jobids = SUBMITTED.findall(output)
    out = subprocess.run(["sacct", "-n", "-X", "-P", "-j", ",".join(jobids), "-o",
                          "JobID,State,Timelimit,Elapsed"], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    rows = [line.split("|") for line in out.splitlines() if line.strip()]
    print(f"{steps} steps; {len(jobids)} submissions in {wall:.0f} s: {rows}")
    assert [r[0] for r in rows] == jobids
    return {"wd": wd, "local": local_wd, "rows": rows}


LONG_TARGET = "results/long/s0/dense/model.pt"


def test_a_run_longer_than_the_walltime_is_killed_resubmitted_and_resumed_bit_identical(
        cluster, tmp_path):
    """max_runtime_min: 1 in the profile's cluster settings: the batch job asks for 1 minute,
    SLURM kills it there (TIMEOUT; slurmctld enforces limits every 30 s, so at 60-90 s), the
    profile's retries resubmit it, and the training resumes from its last checkpoint until it
    is done, with the bits of an uninterrupted local run. The run's length is timed on this
    machine first; where the machine then ran faster and the limit never struck, the run is
    repeated at twice the length (at most twice)."""
    data = tmp_path / "data"
    write_dataset(data / "fashion_mnist")
    steps = long_steps(data)
    for attempt in range(3):
        run = run_long(tmp_path / f"run{attempt}", data, steps)
        if any(r[1] == "TIMEOUT" for r in run["rows"]):
            break
        steps *= 2
    else:
        pytest.fail(f"the limit never struck, up to {steps // 2} steps: {run['rows']}")
    rows, wd = run["rows"], run["wd"]
    assert {r[2] for r in rows} == {"00:01:00"}  # the cap, on every attempt
    assert rows[0][1] == "TIMEOUT" and rows[-1][1] == "COMPLETED", rows
    assert {r[1] for r in rows[:-1]} == {"TIMEOUT"}, rows
    log = (wd / "logs/long/s0/k0/L0/dense_train.log").read_text()
    assert re.search(r"resumed at step [1-9]\d* from ", log), log[-2000:]
    record = json.loads((wd / "results/long/s0/dense/model.run.json").read_text())
    assert record["resumed_at"] and record["resumed_at"] % (steps // 20) == 0, record
    a = torch.load(wd / LONG_TARGET, weights_only=True)["state_dict"]
    b = torch.load(run["local"] / LONG_TARGET, weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
