"""The real Snakemake workflow on a tiny config: full run, caching, partial reruns, bad input.

One module-scoped run in a temporary working directory (about a minute on 2 cores); the
other tests ask Snakemake for dry runs against it and check which jobs it would start.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from lmcpipe import paths, plan
from lmcpipe.config import validate
from lmcpipe.figures.registry import PAPER_A_FIGURES
from tests.helpers import change_one_value, cut_short, write_dataset

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

TINY = {
    "all": ["tiny"],
    "experiments": {
        "tiny": {
            "model": "lenet_300_100",
            "dataset": "fashion_mnist",
            "train": {"optimizer": "adam", "lr": 1e-3, "batch_size": 20, "steps": 20,
                      "eval_steps": [0, 10, 20], "checkpoint_every": 0},
            "prune": {"fraction": 0.2, "levels": 2, "rewind_steps": [0],
                      "baseline_pairs": False, "baseline_levels": [2]},
            "instability": {"fork_steps": [0, 5], "alphas": 5},
            "replicates": {"inits": [0], "orders": [0, 1]},
        }
    },
}


def snakemake(workdir: Path, config: dict, *args: str, env: dict | None = None
              ) -> subprocess.CompletedProcess:
    """Run Snakemake from the repository's Snakefile in ``workdir`` with ``config``."""
    cfg = workdir / "config.yaml"
    cfg.write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "snakemake", *args, "-s", str(REPO / "Snakefile"),
           "-d", str(workdir), "--cores", "2", "--configfile", str(cfg)]
    return subprocess.run(cmd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=900)


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a (dry) run, as {rule: count}."""
    lines = output.splitlines()
    if "Job stats:" not in lines:
        return {}
    counts = {}
    for line in lines[lines.index("Job stats:") + 3 :]:
        name, _, count = line.partition(" ")
        if name == "total" or not count.strip().isdigit():
            break
        counts[name] = int(count)
    return counts


def with_changes(config: dict, **changes) -> dict:
    """A deep copy of ``config`` with ``section.key=value`` changes to the tiny experiment."""
    new = yaml.safe_load(yaml.safe_dump(config))
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        new["experiments"]["tiny"][section][key] = value
    return new


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    wd = tmp_path_factory.mktemp("workflow")
    write_dataset(wd / "data" / "fashion_mnist")
    config = {"data_root": str(wd / "data"), **TINY}
    planned = snakemake(wd, config, "-n")
    assert planned.returncode == 0, planned.stderr[-3000:]
    done = snakemake(wd, config)
    assert done.returncode == 0, done.stderr[-5000:]
    (wd / "planned.txt").write_text(planned.stdout + planned.stderr)
    return wd


def config_of(workdir: Path) -> dict:
    return {"data_root": str(workdir / "data"), **TINY}


def test_full_run_produces_figures_and_tidy_tables(workdir):
    for name in PAPER_A_FIGURES:
        pdf = workdir / paths.figure("tiny", name)
        assert pdf.read_bytes()[:4] == b"%PDF", name
    exp = validate(config_of(workdir))["tiny"]
    runs = pd.read_csv(workdir / paths.table("tiny", "runs"))
    assert len(runs) == len(plan.runs(exp))
    assert {"variant", "seed", "level", "density", "order", "copy", "test_error"} <= set(runs)
    assert runs.loc[runs["level"] == 2, "density"].round(4).unique().tolist() == [0.64]
    pairs = plan.pairs(exp)
    path = pd.read_csv(workdir / paths.table("tiny", "paths"))
    assert len(path) == len(pairs) * 5 * 2
    inst = pd.read_csv(workdir / paths.table("tiny", "instability"))
    assert len(inst) == len(pairs) * 2
    assert set(inst["variant"]) == {"imp"}  # baseline_pairs: false
    assert set(runs["variant"]) == {"imp", "randprune", "reinit"}
    # provenance: a record per trained copy (cohorts), per pair and per rewind point
    prov = pd.read_csv(workdir / paths.table("tiny", "provenance"))
    assert {"experiment", "variant", "seed", "rewind_step", "level", "order", "copy", "stage",
            "wall_s", "job_wall_s", "steps", "device", "commit", "host"} <= set(prov)
    recorded = [r for r in plan.runs(exp)
                if (workdir / paths.record_file(f"{r.dir(exp)}/{paths.MODEL}")).exists()]
    assert len(recorded) == len(plan.runs(exp))  # every run was trained with records
    assert prov["copy"].notna().sum() == len(recorded)
    assert prov["copy"].isna().sum() == len(pairs)
    assert set(prov["stage"]) <= {"train", "cohort", "interpolate"}
    assert (prov.loc[prov["copy"].notna(), "stage"] == "cohort").all()
    assert (prov.loc[prov["copy"].isna(), "stage"] == "interpolate").all()
    trained = prov[prov["copy"].notna()]
    assert (prov["wall_s"] > 0).all() and (trained["steps"] == 20 - trained["rewind_step"]).all()
    rewind = json.loads((workdir / paths.record_file(paths.rewind("tiny", 0, 5))).read_text())
    assert (rewind["stage"], rewind["steps"]) == ("train", 5) and rewind["device_name"]
    # every artifact is complete: no temporary or resume files left behind
    leftovers = [p for p in (workdir / "results").rglob("*")
                 if p.name.endswith((".tmp", ".resume", ".partial"))]
    assert leftovers == []


def test_dense_run_serves_as_copy_one_at_level_zero(workdir):
    """Level 0 at k = 0, order 0, copy 1 is the dense run: no retrain job was planned for it."""
    planned = (workdir / "planned.txt").read_text()
    assert "results/tiny/s0/k0/imp/L0/retrain" not in planned
    assert job_counts(planned)["cohort_dense_tiny"] == 1


def test_the_next_level_waits_for_the_chains_run_alone(tmp_path):
    """Level 3's mask needs the dense run, the chain's runs at levels 1 and 2 and their masks,
    none of the levels' other runs; on one core the chain's jobs (scheduler priority) run
    before a level's other runs that are ready beside them."""
    write_dataset(tmp_path / "data" / "fashion_mnist")
    config = with_changes({"data_root": str(tmp_path / "data"), **TINY}, prune__levels=3)
    mask = paths.mask("tiny", 0, 0, "imp", 3)
    planned = snakemake(tmp_path, config, mask, "-n")
    assert job_counts(planned.stdout) == {"init": 1, "cohort_dense_tiny": 1, "prune": 3,
                                          "cohort_chain_tiny": 2}, planned.stdout[-2000:]
    other = f"{paths.run('tiny', 0, 0, 'imp', 1, 1, 2, 0)}/{paths.MODEL}"  # level 1, not chain
    cmd = [sys.executable, "-m", "snakemake", other, mask, "-s", str(REPO / "Snakefile"),
           "-d", str(tmp_path), "--cores", "1", "--configfile", str(tmp_path / "config.yaml")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    started = [line.split()[1].rstrip(":") for line in (done.stdout + done.stderr).splitlines()
               if line.startswith(("localrule cohort_", "localrule prune:"))]
    assert started == ["cohort_dense_tiny", "prune", "cohort_chain_tiny", "prune",
                       "cohort_chain_tiny", "prune", "cohort_imp_level_tiny"], started


def test_second_run_has_nothing_to_do(workdir):
    again = snakemake(workdir, config_of(workdir), "-n")
    assert again.returncode == 0
    assert job_counts(again.stdout) == {}, again.stdout[-2000:]
    assert "Nothing to be done" in again.stdout + again.stderr


def test_changing_alphas_reruns_only_interpolation_and_reports(workdir):
    counts = job_counts(snakemake(workdir, with_changes(config_of(workdir), instability__alphas=7),
                                  "-n").stdout)
    assert set(counts) == {"interpolate_fork0_tiny", "interpolate_fork_tiny",
                           "interpolate_level_tiny", "interpolate_imp_level_tiny", "aggregate",
                           "figure", "report_page", "report_index", "all"}


def test_changing_prune_fraction_reruns_pruned_levels_only(workdir):
    counts = job_counts(snakemake(workdir, with_changes(config_of(workdir), prune__fraction=0.5),
                                  "-n").stdout)
    assert counts["prune"] == 2
    assert not {"init", "cohort_dense_tiny", "cohort_fork0_tiny", "cohort_fork_tiny",
                "rewind"} & set(counts)
    # each level's chain run; level 1's other runs (IMP alone: baseline_levels [2]) and level
    # 2's (IMP and both baselines)
    assert counts["cohort_chain_tiny"] == 2
    assert counts["cohort_imp_level_tiny"] == 1 and counts["cohort_level_tiny"] == 1


def test_adding_a_seed_or_a_level_computes_only_new_work(workdir):
    base = config_of(workdir)
    first = job_counts((workdir / "planned.txt").read_text())
    seeds = yaml.safe_load(yaml.safe_dump(base))
    seeds["experiments"]["tiny"]["replicates"]["inits"] = [0, 1]
    counts = job_counts(snakemake(workdir, seeds, "-n").stdout)
    per_seed = {k: v for k, v in first.items() if k not in ("aggregate", "figure", "all")}
    assert {k: v for k, v in counts.items() if k in per_seed} == per_seed
    counts = job_counts(snakemake(workdir, with_changes(base, prune__levels=3), "-n").stdout)
    assert counts["prune"] == 1
    assert counts["cohort_imp_level_tiny"] == 1  # level 3 is outside baseline_levels
    assert counts["cohort_chain_tiny"] == 1
    assert not {"init", "cohort_dense_tiny", "cohort_fork0_tiny", "cohort_fork_tiny",
                "rewind"} & set(counts)


def test_changing_the_baselines_reruns_only_the_level_cohorts(workdir):
    """A cohort's runs are a param of its job: dropping a baseline reruns the cohort that held it
    (level 2's, the one baseline level) and what reads it, not the chain's runs, level 1's
    IMP-only cohort, the masks, or the dense and fork cohorts."""
    counts = job_counts(snakemake(workdir, with_changes(config_of(workdir),
                                                       prune__baselines=["randprune"]),
                                  "-n").stdout)
    assert counts["cohort_level_tiny"] == 1
    assert not {"init", "rewind", "prune", "cohort_dense_tiny", "cohort_fork0_tiny",
                "cohort_fork_tiny", "cohort_chain_tiny", "cohort_imp_level_tiny"} & set(counts)


def test_changing_training_hyperparameters_reruns_training(workdir):
    counts = job_counts(snakemake(workdir, with_changes(config_of(workdir), train__lr=2e-3),
                                  "-n").stdout)
    first = job_counts((workdir / "planned.txt").read_text())
    assert counts == first


def test_changing_threads_reruns_no_table_or_figure(workdir):
    """``threads`` sets how fast jobs run, not what they compute: no table or figure reruns."""
    config = yaml.safe_load(yaml.safe_dump(config_of(workdir)))
    config["experiments"]["tiny"]["threads"] = 2
    planned = snakemake(workdir, config, "-n")
    assert planned.returncode == 0, planned.stderr[-3000:]
    counts = job_counts(planned.stdout)
    assert not {"aggregate", "figure"} & set(counts), counts


@pytest.mark.parametrize(
    ("section", "key", "value", "named"),
    [
        ("prune", "fraction", 1.0, "experiments.tiny.prune.fraction"),
        ("train", "lr", -0.1, "experiments.tiny.train.lr"),
        (None, "model", "resnet9000", "experiments.tiny.model"),
        ("prune", "rewind_steps", [0, 500], "experiments.tiny.prune.rewind_steps"),
    ],
)
def test_bad_config_is_refused_before_any_job(tmp_path, section, key, value, named):
    config = {"data_root": str(tmp_path / "data"), **yaml.safe_load(yaml.safe_dump(TINY))}
    target = config["experiments"]["tiny"]
    (target[section] if section else target)[key] = value
    result = snakemake(tmp_path, config)
    assert result.returncode != 0
    assert named in result.stderr, result.stderr[-2000:]
    assert not (tmp_path / "results").exists()


def test_missing_dataset_is_refused_with_where_to_put_it(tmp_path):
    config = {"data_root": str(tmp_path / "nodata"), **yaml.safe_load(yaml.safe_dump(TINY))}
    config["experiments"]["tiny"]["dataset"] = "mnist"
    result = snakemake(tmp_path, config, env={"LMCPIPE_OFFLINE": "1"})
    assert result.returncode != 0
    assert "experiments.tiny.dataset" in result.stderr
    assert "train-images-idx3-ubyte" in result.stderr and "nodata/mnist" in result.stderr
    assert not (tmp_path / "results").exists()


def test_a_partial_dataset_folder_is_named_while_planning(tmp_path):
    """data_root/fashion_mnist/ without its test labels, a complete copy in torchvision's layout
    beside it: the plan uses that copy, and Snakemake says so (the job log and the run record
    say it again: tests/test_data.py)."""
    root = tmp_path / "data"
    write_dataset(root / "fashion_mnist")
    (root / "fashion_mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    write_dataset(root / "FashionMNIST" / "raw", seed=3)
    planned = snakemake(tmp_path, {"data_root": str(root), **TINY}, "-n")
    assert planned.returncode == 0, planned.stderr[-3000:]
    assert (f"experiments.tiny.dataset: {root}/fashion_mnist/ lacks t10k-labels-idx1-ubyte[.gz]; "
            f"using {root}/FashionMNIST/raw") in planned.stdout + planned.stderr


def test_download_job_of_a_relative_data_root_downloads_there(tmp_path):
    """data_root "." (pathlib writes "./mnist/x" as "mnist/x"): the dry run plans the download
    of the absent dataset with that root, instead of failing to recover it from the outputs."""
    config = {"data_root": ".", **yaml.safe_load(yaml.safe_dump(TINY))}
    config["experiments"]["tiny"]["dataset"] = "mnist"
    result = snakemake(tmp_path, config, "-n", "-p", env={"LMCPIPE_OFFLINE": "1"})
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert job_counts(result.stdout)["download_mnist"] == 1
    assert "lmcpipe download --dataset mnist --root . >" in result.stdout


def test_workflow_is_lint_clean():
    result = subprocess.run([sys.executable, "-m", "snakemake", "--lint", "-s",
                             str(REPO / "Snakefile"), "-d", str(REPO)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]


def test_editing_stage_code_reruns_the_jobs_that_run_it(workdir, tmp_path):
    """A copy of the workflow whose lmcpipe differs by one edited module, against the results."""
    import shutil

    copy = tmp_path / "repo"
    shutil.copytree(REPO / "workflow", copy / "workflow")
    shutil.copytree(REPO / "src", copy / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "Snakefile", copy / "Snakefile")
    env = {"PYTHONPATH": str(copy / "src")}

    def planned() -> dict[str, int]:
        cfg = workdir / "config.yaml"
        cfg.write_text(yaml.safe_dump(config_of(workdir)))
        result = subprocess.run(
            [sys.executable, "-m", "snakemake", "-n", "-s", str(copy / "Snakefile"), "-d",
             str(workdir), "--cores", "2", "--configfile", str(cfg)],
            capture_output=True, text=True, env={**os.environ, **env}, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        return job_counts(result.stdout)

    assert planned() == {}
    with open(copy / "src" / "lmcpipe" / "report" / "measures.py", "a") as f:
        f.write("\n# an edit of the report code\n")
    assert set(planned()) == {"report_page", "report_index", "all"}
    with open(copy / "src" / "lmcpipe" / "figures" / "paper_a.py", "a") as f:
        f.write("\n# an edit of the figure code\n")
    assert set(planned()) == {"figure", "report_page", "report_index", "all"}
    with open(copy / "src" / "lmcpipe" / "optim.py", "a") as f:
        f.write("\n# an edit of the training code\n")
    counts = planned()
    assert {"init", "cohort_dense_tiny", "cohort_fork_tiny", "cohort_level_tiny", "rewind",
            "interpolate_level_tiny"} <= set(counts)


def test_killed_training_job_resumes_on_the_next_run(tmp_path):
    """SIGKILL the whole Snakemake process group mid-training; the rerun continues the job."""
    import signal
    import time

    write_dataset(tmp_path / "data" / "fashion_mnist")
    config = {"data_root": str(tmp_path / "data"), **yaml.safe_load(yaml.safe_dump(TINY))}
    config["experiments"]["tiny"]["train"].update(steps=600, checkpoint_every=20)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    target = "results/tiny/s0/dense/model.pt"
    cmd = [sys.executable, "-m", "snakemake", target, "-s", str(REPO / "Snakefile"), "-d",
           str(tmp_path), "--cores", "1", "--configfile", str(tmp_path / "config.yaml")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    resume = tmp_path / (target + ".resume")
    deadline = time.time() + 240
    while not resume.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert resume.exists(), "the training job never wrote a resume checkpoint"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / target).exists()
    # a SIGKILLed Snakemake leaves its lock behind: unlock as Snakemake's message says
    subprocess.run(cmd + ["--unlock"], capture_output=True, check=True, timeout=300)
    rerun = subprocess.run(cmd + ["--rerun-incomplete"], capture_output=True, text=True,
                           timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    log = (tmp_path / "logs/tiny/s0/k0/L0/dense_train.log").read_text()
    assert "resumed at step" in log
    assert (tmp_path / target).exists() and not resume.exists()


def test_damaged_checkpoint_is_named_and_rebuilt_once_deleted(workdir, tmp_path):
    """A truncated dense model.pt (in a copy of the built workdir, read with the same config: a
    new data_root would retrain everything): level 1's prune job fails with one line naming the
    file and the remedy; deleting the file and rerunning rebuilds it."""
    import shutil

    from lmcpipe import atomic

    copy = tmp_path / "wd"
    shutil.copytree(workdir, copy, symlinks=True)  # keeps mtimes: nothing to do in the copy
    model = f"{paths.dense('tiny', 0)}/{paths.MODEL}"
    target = paths.mask("tiny", 0, 0, "imp", 1)
    with open(copy / model, "r+b") as f:
        f.truncate((copy / model).stat().st_size // 2)
    failed = snakemake(copy, config_of(workdir), target)
    assert failed.returncode != 0
    log = (copy / "logs/tiny/s0/k0/imp/L1/prune.log").read_text().splitlines()
    assert len(log) == 1 and log[0].startswith(f"lmcpipe prune: {model} is damaged ("), log
    assert log[0].endswith("delete it and rerun snakemake, which rebuilds it")
    (copy / model).unlink()
    rebuilt = snakemake(copy, config_of(workdir), target)
    assert rebuilt.returncode == 0, rebuilt.stderr[-3000:]
    assert set(job_counts(rebuilt.stderr + rebuilt.stdout)) == {"cohort_dense_tiny", "prune"}
    assert atomic.load_torch(copy / model)["state_dict"]


DAMAGES = {"cut short": cut_short, "a wrong row": change_one_value}
REMEDY = "delete it and rerun snakemake, which rebuilds it"


def stage_refuses(argv: list[str], damaged: str, capsys) -> None:
    """``lmcpipe <argv>`` (in this process, for speed) fails with one line naming ``damaged``."""
    from lmcpipe import cli

    capsys.readouterr()
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"lmcpipe {argv[0]}: {damaged} is damaged ("), err
    assert err[0].endswith(REMEDY)


@pytest.mark.parametrize("damage", DAMAGES)
@pytest.mark.parametrize("reader", ["aggregate: metrics", "aggregate: path", "figure",
                                    "report", "report-index"])
def test_every_reader_refuses_a_damaged_table(workdir, tmp_path, monkeypatch, capsys, reader,
                                              damage):
    """Each stage that reads a CSV of the tiny run, given that file cut short or with one wrong
    value: one line naming it and the remedy, and nothing written."""
    import shutil

    from lmcpipe.hparams import to_json

    copy = tmp_path / "wd"
    shutil.copytree(workdir, copy, symlinks=True)
    monkeypatch.chdir(copy)
    exp = validate(config_of(workdir))["tiny"]
    out = tmp_path / "out"
    tables = paths.tables_dir("tiny")
    stage, _, what = reader.partition(": ")
    damaged, argv = {
        "aggregate": (f"{paths.dense('tiny', 0)}/{paths.METRICS}" if what == "metrics"
                      else plan.path_file(exp, plan.pairs(exp)[-1]),
                      ["--experiment", to_json(exp), "--out-dir", str(out)]),
        "figure": (paths.table("tiny", "runs"),
                   ["--name", "imp", "--tables", tables, "--out", str(out / "f.pdf")]),
        "report": (paths.table("tiny", "summary"),
                   ["--experiment", to_json(exp), "--tables", tables, "--out",
                    str(out / "p.html"), "--claims-out", str(out / "c.csv")]),
        "report-index": (paths.report_claims("tiny"),
                         ["--names", "tiny", "--claims", paths.report_claims("tiny"), "--out",
                          str(out / "index.html")]),
    }[stage]
    DAMAGES[damage](damaged)
    stage_refuses([stage, *argv], damaged, capsys)
    assert not out.exists() or not any(out.iterdir())


def test_a_damaged_metrics_file_stops_the_workflow_before_any_table(workdir, tmp_path):
    """Issue 21's case through Snakemake: the dense run's metrics.csv cut short after the run
    (aggregating it reported step 0 and test error 0.0). Its aggregate job now fails with one
    line in its log, its tables are gone, and no figure is redrawn from them."""
    import shutil

    copy = tmp_path / "wd"
    shutil.copytree(workdir, copy, symlinks=True)  # keeps mtimes: nothing to do in the copy
    metrics = f"{paths.dense('tiny', 0)}/{paths.METRICS}"
    figure = copy / paths.figure("tiny", "imp")
    drawn = figure.stat().st_mtime_ns
    cut_short(copy / metrics)
    failed = snakemake(copy, config_of(workdir), paths.figure("tiny", "imp"))
    assert failed.returncode != 0
    log = (copy / paths.fill(paths.LOG, exp="tiny", name="aggregate")).read_text().splitlines()
    assert log == [f"lmcpipe aggregate: {metrics} is damaged (3 rows where 6 were written; "
                   f"SHA-256 differs from metrics.check.json); {REMEDY}"]
    assert not (copy / paths.table("tiny", "runs")).exists()
    assert figure.stat().st_mtime_ns == drawn


def test_baselines_train_at_the_deepest_level_only(workdir):
    """``prune.baseline_levels: [2]``: level 1 is an IMP-only cohort (its own rule), level 2 keeps
    both baselines, and the tables hold baselines at level 2 alone."""
    planned = job_counts((workdir / "planned.txt").read_text())
    assert planned["cohort_imp_level_tiny"] == 1 and planned["cohort_level_tiny"] == 1
    assert planned["cohort_chain_tiny"] == 2
    runs = pd.read_csv(workdir / paths.table("tiny", "runs"))
    baselines = runs[runs["variant"] != "imp"]
    assert set(baselines["level"]) == {2} and set(baselines["variant"]) == {"randprune", "reinit"}
    assert set(runs.loc[runs["level"] == 1, "variant"]) == {"imp"}
    table2 = pd.read_csv(workdir / paths.table("tiny", "table2"))
    assert {"randprune", "reinit"} <= set(table2["variant"])
    level1 = workdir / paths.run("tiny", 0, 0, "randprune", 1, 0, 1, 0)
    assert not level1.exists()


def test_an_unpruned_experiment_targets_no_pruned_figures(workdir, tmp_path):
    """``prune.levels: 0`` builds the dense figures (Figs 2-4) only: an IMP figure of an
    experiment that prunes nothing would be an empty panel."""
    from lmcpipe.figures.registry import PRUNED_FIGURES

    config = with_changes(config_of(workdir), prune__levels=0, prune__baseline_levels=[])
    out = snakemake(tmp_path, config, "-n").stdout
    assert job_counts(out)["figure"] == len(PAPER_A_FIGURES) - len(PRUNED_FIGURES)
    assert "imp_tiny.pdf" not in out and "instability_tiny.pdf" in out


def test_grid_summary_reads_the_real_tables(workdir, capsys):
    """scripts/grid_summary.py (the recipe grid's check, docs/demos.md, "How the recipe was
    chosen") on the tiny run: one row per fork step with the barrier over its pairs, and a
    clear line for a missing grid."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("grid_summary",
                                                  REPO / "scripts" / "grid_summary.py")
    grid = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(grid)
    table = grid.summarise(["tiny"], workdir)
    inst = pd.read_csv(workdir / paths.table("tiny", "instability"))
    dense = inst[(inst["variant"] == "imp") & (inst["level"] == 0) & (inst["split"] == "test")]
    assert table["k"].tolist() == [0, 5] and table["n_pairs"].tolist() == [2, 2]
    assert table.loc[0, "barrier_mean"] == pytest.approx(
        100 * dense[dense["rewind_step"] == 0]["barrier"].mean())
    cfg = workdir / "grid.yaml"
    cfg.write_text(yaml.safe_dump(config_of(workdir)))
    assert grid.main([str(cfg), "--root", str(workdir)]) == 0
    assert "tiny" in capsys.readouterr().out
    assert grid.main([str(cfg), "--root", str(workdir / "nowhere")]) == 1
    assert "no tables yet for tiny" in capsys.readouterr().err
    # --levels: the pruned subnetworks, one row per (variant, k, level), as the summary says
    levels = grid.summarise_levels(["tiny"], workdir)
    summary = pd.read_csv(workdir / paths.table("tiny", "summary"))
    pruned = summary[summary["level"] >= 1]
    assert len(levels) == len(pruned) and set(levels["level"]) == {1, 2}
    imp2 = pruned[(pruned["variant"] == "imp") & (pruned["level"] == 2)].iloc[0]
    row = levels[(levels["variant"] == "imp") & (levels["level"] == 2)].iloc[0]
    assert row["barrier_mean"] == pytest.approx(100 * imp2["test_barrier_mean"])
    assert row["drop"] == pytest.approx(imp2["accuracy_drop"])
    assert grid.main([str(cfg), "--root", str(workdir), "--levels"]) == 0
    assert "randprune" in capsys.readouterr().out
    # --points: part of the grid, and a point the grid lacks is one line
    assert grid.main([str(cfg), "--targets", "--points", "tiny"]) == 0
    assert "tiny/summary.csv" in capsys.readouterr().out
    assert grid.main([str(cfg), "--targets", "--points", "tiny", "huge"]) == 1
    assert capsys.readouterr().err.strip().endswith("has no point huge")


def test_the_reproduction_report_judges_every_claim_of_the_network(workdir):
    """The tiny run's report: a page and a claims table per experiment, every claim about
    LeNet (or any network) judged, none "holds" on the paper's LeNet protocol, whose dataset is
    MNIST: the tiny experiment trains on Fashion-MNIST."""
    from lmcpipe.report import claims as report_claims

    table = pd.read_csv(workdir / paths.report_claims("tiny"), keep_default_na=False)
    applies = [c.id for c in report_claims.load() if c.applies_to("lenet_300_100", "experiment")]
    assert table["claim"].tolist() == applies
    assert set(table["verdict"]) <= set(report_claims.VERDICTS)
    lenet = table[table["claim"].str.endswith(".lenet")]
    assert not lenet.empty and (lenet["verdict"].isin(["not comparable", "not run"])).all()
    compared = lenet[lenet["verdict"] == "not comparable"]
    assert compared["reason"].str.contains("dataset fashion_mnist (paper: mnist)",
                                           regex=False).all()
    assert (workdir / paths.REPORT_INDEX).read_text().count('class="page"') == 1


def test_the_report_renders_in_chromium(workdir, tmp_path):
    """Headless Chromium opens the index and the tiny page from the filesystem: every claim row
    renders, every figure image loads, and a screenshot is kept in the test's directory."""
    from lmcpipe.report import claims as report_claims
    from tests.browser import BROKEN_IMAGES, chromium

    n_claims = len([c for c in report_claims.load()
                    if c.applies_to("lenet_300_100", "experiment")])
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto((workdir / paths.REPORT_INDEX).as_uri())
        assert page.locator("tr.page").count() == 1
        assert page.locator("#claims tr.claim").count() == len(report_claims.load())
        page.click("text=tiny")
        assert page.url.endswith(paths.report_page("tiny").rsplit("/", 1)[-1])
        rows = page.locator("#claims tr.claim")
        assert rows.count() == n_claims
        for i in range(n_claims):
            assert rows.nth(i).locator(".verdict").inner_text() in report_claims.VERDICTS
        images = page.evaluate("document.images.length")
        assert images >= len(PAPER_A_FIGURES)
        assert page.evaluate(BROKEN_IMAGES) == []
        assert page.locator("#stages tr").count() >= 3  # header, cohort, interpolate, ...
        page.screenshot(path=tmp_path / "report.png", full_page=True)
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_snakemakes_own_report_holds_figures_and_claims(workdir):
    """`snakemake --report`: one self-contained HTML file with the figures by paper and the
    claims tables."""
    out = workdir / "report.html"
    done = snakemake(workdir, config_of(workdir), "--report", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    html = out.read_text()
    assert out.stat().st_size > 100_000
    for needle in ("Paper A", "Reproduction", "tiny_claims.csv", "interp_k0_tiny.png"):
        assert needle in html, needle
