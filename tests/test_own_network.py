"""A network and a dataset of the user's through the real workflow: the worked example's network
(``examples/own_network``) and an image folder of real PNG/JPEG files, each trained, pruned,
interpolated, drawn and reported by one real Snakemake run; then an edit of the user's model
file, which must rerun exactly the jobs that run it."""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from lmcpipe import paths
from lmcpipe.data.testing import write_imagefolder
from tests.helpers import write_dataset

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

TRAIN = {"optimizer": "adam", "lr": 1e-3, "batch_size": 20, "steps": 20,
         "eval_steps": [0, 10, 20], "checkpoint_every": 0}
PRUNE = {"fraction": 0.5, "levels": 1, "rewind_steps": [0], "baselines": ["randprune", "reinit"],
         "baseline_pairs": True, "baseline_levels": [1]}
SPEC = 'smallnets.nets:SmallCNN{"width":4}'
TARGETS = [paths.figure(exp, fig) for exp in ("mine", "folder") for fig in ("instability", "imp")]
TARGETS += [paths.REPORT_PAGE.format(exp=exp) for exp in ("mine", "folder")]


def config(root: Path, folder: Path) -> dict:
    return {"data_root": str(root), "all": ["mine", "folder"], "experiments": {
        "mine": {"model": "smallnets.nets:SmallCNN", "model_args": {"width": 4},
                 "dataset": "fashion_mnist", "train": TRAIN, "prune": PRUNE,
                 "instability": {"fork_steps": [0, 5], "alphas": 5},
                 "replicates": {"inits": [0], "orders": [0, 1]}},
        "folder": {"model": "lenet_300_100",
                   "dataset": {"imagefolder": str(folder), "augment": "cifar"},
                   "train": TRAIN, "prune": PRUNE,
                   "instability": {"fork_steps": [0], "alphas": 5},
                   "replicates": {"inits": [0], "orders": [0, 1]}},
    }}


def snakemake(workdir: Path, package: Path, *args: str) -> subprocess.CompletedProcess:
    """Snakemake on the repository's Snakefile in ``workdir``, the user's package on
    PYTHONPATH (as a user who has not installed it runs it)."""
    cmd = [sys.executable, "-m", "snakemake", *args, "-s", str(REPO / "Snakefile"), "-d",
           str(workdir), "--cores", "2", "--configfile", str(workdir / "config.yaml")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(package), str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, Path]:
    """One real run of both experiments; the user's package is a copy (a test edits it)."""
    wd = tmp_path_factory.mktemp("own")
    package = wd / "own_network"
    shutil.copytree(REPO / "examples" / "own_network", package,
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    write_dataset(wd / "data" / "fashion_mnist")
    folder = write_imagefolder(wd / "scans", n_classes=3, per_class=14, size=12,
                               splits=("train", "test"))
    (wd / "config.yaml").write_text(yaml.safe_dump(config(wd / "data", folder)))
    done = snakemake(wd, package, *TARGETS)
    assert done.returncode == 0, done.stderr[-5000:]
    return wd, package


def test_the_example_network_and_an_image_folder_run_end_to_end(run):
    wd, _ = run
    for target in TARGETS:
        assert (wd / target).stat().st_size > 0, target
    runs = pd.read_csv(wd / paths.tables_dir("mine") / "runs.csv")
    assert len(runs) and runs["test_error"].between(0, 1).all()
    # the image folder's runs record the folder they read (provenance's data_source)
    provenance = pd.read_csv(wd / paths.tables_dir("folder") / "provenance.csv")
    trained = provenance[provenance["stage"] == "cohort"]
    assert len(trained) and set(trained["data_source"]) == {str((wd / "scans").resolve())}
    # the image folder was decoded once into its cache, with the training split's statistics
    cache = list((wd / "scans" / ".cache").glob("*.json"))
    assert cache and all("mean" in p.read_text() for p in cache)


def claims_of(wd: Path, exp: str) -> list[dict[str, str]]:
    with open(wd / paths.REPORT_CLAIMS.format(exp=exp)) as f:
        return list(csv.DictReader(f))


def test_the_report_judges_general_claims_and_not_the_papers_networks(run):
    """Claims about the papers' own networks are "not comparable" (or "not run") for the
    user's network; the general claims of papers B and C are judged as on any network."""
    wd, _ = run
    rows = claims_of(wd, "mine")
    about_networks = [r for r in rows if "a claim about the paper's" in r["reason"]]
    assert about_networks, rows
    assert all(r["verdict"] in ("not comparable", "not run") for r in about_networks)
    assert not any(r["verdict"] == "holds" and "a claim about the paper's" in r["reason"]
                   for r in rows)
    general = [r for r in rows if "a general claim" in r["reason"]]
    assert general and {r["verdict"] for r in general} <= {"holds", "does not hold"}
    page = (wd / paths.REPORT_PAGE.format(exp="mine")).read_text()
    assert "smallnets.nets:SmallCNN" in page


def planned_jobs(output: str) -> list[dict[str, str]]:
    """The jobs of a dry run: rule, wildcards and reason of each job Snakemake prints (a job's
    lines follow its time stamp, indented inside a group job)."""
    jobs = []
    for block in re.split(r"^\s*\[\w{3} \w{3} .*\d{4}\]\s*$", output, flags=re.M):
        rule = re.search(r"^\s*(?:local)?rule (\w+):", block, re.M)
        if rule:
            found = {"rule": rule.group(1)}
            for key in ("wildcards", "reason"):
                line = re.search(rf"^\s+{key}: (.*)$", block, re.M)
                found[key] = line.group(1) if line else ""
            jobs.append(found)
    return jobs


def test_editing_the_user_s_model_file_reruns_exactly_the_jobs_that_run_it(run):
    wd, package = run
    assert planned_jobs(snakemake(wd, package, "-n", *TARGETS).stdout) == []
    nets = package / "smallnets" / "nets.py"
    original = nets.read_text()
    try:
        nets.write_text(original + "\n# an edit of the user's network\n")
        planned = snakemake(wd, package, "-n", *TARGETS)
        assert planned.returncode == 0, planned.stderr[-3000:]
        jobs = planned_jobs(planned.stdout)
    finally:
        nets.write_text(original)
    # the jobs whose own code changed are the network's: init has no input, so that is its
    # reason; training and interpolation may say instead that their inputs changed
    changed = {j["rule"] for j in jobs if "params have changed" in j["reason"].lower()}
    runs_network = {"init", "rewind"} | {j["rule"] for j in jobs
                                         if re.match(r"(cohort|interpolate)_\w+_mine$", j["rule"])}
    assert "init" in changed and changed <= runs_network, jobs
    # every planned job is of the edited network's experiment; the image-folder experiment on
    # lmcpipe's own network is untouched, and what only reads tables reruns because its inputs
    # changed, not its code
    assert all("exp=mine" in j["wildcards"] for j in jobs if "exp=" in j["wildcards"]), jobs
    assert {"cohort_dense_mine", "interpolate_fork0_mine", "aggregate", "figure",
            "report_page"} <= {j["rule"] for j in jobs}
    assert not any(j["rule"] in ("prune", "aggregate", "figure", "report_page")
                   and "params have changed" in j["reason"].lower() for j in jobs)
    assert planned_jobs(snakemake(wd, package, "-n", *TARGETS).stdout) == []
