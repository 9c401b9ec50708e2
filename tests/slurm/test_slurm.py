"""The workflow on a real SLURM cluster through `--profile profiles/slurm` (issue 4).

The cluster is the single node of tests/slurm/cluster.sh (Debian's slurm-wlm 22.05 with slurmdbd,
so that sacct answers, and a stand-in GPU). The session fixture starts it when the packages are
installed and it is not up (CI starts it before the suite, see .ci/run); otherwise the tests skip
and say why, unless LMCPIPE_REQUIRE_SLURM=1 makes that a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from lmcpipe import paths
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


def test_jobs_are_submitted_as_one_batch_job_per_level(runs):
    jobids = SUBMITTED.findall(runs["output"])
    # per experiment: group k0/L0 (init, the dense cohort, its interpolation) and k0/L1
    # (prune with the random mask, the level-1 cohort, its interpolation); aggregate runs locally
    assert len(jobids) == 4, runs["output"][-3000:]
    accounted = sacct(jobids)
    assert set(accounted) == set(jobids)
    assert {a["state"] for a in accounted.values()} == {"COMPLETED"}
    gpu_jobs = [j for j, a in accounted.items() if "gres/gpu=1" in a["tres"]]
    assert len(gpu_jobs) == 2  # only the experiment that asks for a GPU gets one


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
        ({}, None, ["gpu=0", "gpu_model=,", "gres=,", "device=auto", "runtime=30"]),
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
