"""Paper A's networks at smoke scale: the whole DAG of every figure target, on CPU, for real.

Tiny CIFAR-10 pickles and a tiny ImageFolder (real JPEG/PNG files) feed ResNet-20, VGG-16,
ResNet-50 and Inception-v3 through every stage (rewind points, IMP, both baselines with pairs,
the restarted-schedule control, interpolation with BatchNorm statistics recomputed, tables) in one
Snakemake run. ResNet-20's figures are figure jobs of that run; the other networks' figures are
drawn in this process from the tables the run wrote (the same ``render`` the figure stage calls:
30 more figure jobs would each pay a process start and the plotting imports, for nothing the
figure rule has not shown already). A few iterations each: the plumbing, not the science.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import yaml

from lmcpipe import paths
from lmcpipe.data.testing import write_cifar, write_imagefolder
from lmcpipe.figures.registry import PAPER_A_FIGURES
from lmcpipe.figures.render import render
from tests.helpers import write_dataset
from tests.test_workflow import REPO, job_counts, snakemake

pytestmark = pytest.mark.slow


def smoke(model: str, dataset: str, full: bool = False, **train) -> dict:
    """A few iterations of one init and one data order. ``full`` adds a second rewind step, a
    fork at k = 2 with the restarted-schedule control, and baseline pairs; the other networks
    run the k = 0 part of that DAG (their models, data formats and BatchNorm recompute through
    every stage), as the k > 0 and control jobs run the same code whatever the network.
    """
    return {
        "model": model,
        "dataset": dataset,
        "train": {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4,
                  "batch_size": 8, "steps": 4, "milestones": [3], "warmup_steps": 1,
                  "eval_steps": [0, 4], "checkpoint_every": 0, **train},
        "prune": {"fraction": 0.2, "levels": 1, "rewind_steps": [0, 2] if full else [0],
                  "baseline_pairs": full},
        "instability": {"fork_steps": [0, 2] if full else [0], "alphas": 3, "control": full,
                        "bn_mode": "recompute", "bn_batches": 2},
        "replicates": {"inits": [0], "orders": [0]},
    }


EXPERIMENTS = {
    "resnet20": smoke("resnet20", "cifar10", full=True),
    # fp32 + channels_last: bf16 autocast is emulated (~10x slower) on CPUs without native bf16,
    # which made this one network 40 % of the test's time; bf16 training is covered in
    # test_models (every network) and test_cifar_training
    "vgg16": smoke("vgg16", "cifar10", channels_last=True),
    "resnet50": smoke("resnet50", "imagenet", image_size=64, eval_train_examples=16),
    "inceptionv3": smoke("inceptionv3", "imagenet", image_size=80, eval_train_examples=16,
                         schedule="linear", final_lr=0.001),
}




def demo_rewind_at_smoke_scale() -> dict:
    """The shipped ``demo_rewind`` (docs/demos.md) as it is, its network, optimiser, step
    decay, IMP level, rewinding and baseline pairs, cut to a few iterations of one init and
    one data order: the opt-in demo's DAG in the suite, its science in the demo itself."""
    exp = yaml.safe_load((REPO / "config.yaml").read_text())["experiments"]["demo_rewind"]
    exp["train"].update(steps=6, milestones=[3, 4], eval_train_examples=16, checkpoint_every=0)
    exp["prune"]["rewind_steps"] = exp["instability"]["fork_steps"] = [0, 2]
    exp["instability"]["alphas"] = 3
    exp["replicates"] = {"inits": [0], "orders": [0]}
    return exp


DEMO = "demo_rewind"
FIGURE_JOBS = "resnet20"  # the experiment whose figures are Snakemake jobs
TARGETS = [paths.figure(FIGURE_JOBS, name) for name in PAPER_A_FIGURES] + [
    paths.table(exp, t) for exp in [*EXPERIMENTS, DEMO] for t in paths.TABLES]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    wd = tmp_path_factory.mktemp("paper_a")
    rng = np.random.default_rng(0)
    write_cifar(wd / "data" / "cifar10" / "cifar-10-batches-py",
                rng.integers(0, 256, (48, 3, 32, 32), dtype=np.uint8),
                rng.integers(0, 10, 48), 10, (32, 16))
    write_imagefolder(wd / "data" / "imagenet", n_classes=3, per_class=4, size=96)
    write_dataset(wd / "data" / "fashion_mnist")
    config = {"data_root": str(wd / "data"), "all": list(EXPERIMENTS),
              "experiments": {**EXPERIMENTS, DEMO: demo_rewind_at_smoke_scale()}}
    result = snakemake(wd, config, *TARGETS)
    assert result.returncode == 0, result.stderr[-6000:]
    (wd / "log.txt").write_text(result.stdout + result.stderr)
    return wd, config


def test_every_paper_a_figure_of_resnet20_is_built_by_its_job(workdir):
    wd, _ = workdir
    for name in PAPER_A_FIGURES:
        pdf = wd / paths.figure(FIGURE_JOBS, name)
        assert pdf.read_bytes()[:4] == b"%PDF", pdf


@pytest.mark.parametrize("exp", [e for e in EXPERIMENTS if e != FIGURE_JOBS])
def test_every_paper_a_figure_of_the_other_networks_renders_from_their_tables(workdir, exp):
    wd, _ = workdir
    threshold = 0.02  # the default instability.threshold, which these experiments keep
    for name in PAPER_A_FIGURES:
        fig = render(name, wd / paths.tables_dir(exp), threshold)
        assert fig.axes, (exp, name)
        plt.close(fig)


def test_tables_hold_every_variant_and_the_control(workdir):
    wd, _ = workdir
    for exp in EXPERIMENTS:
        full = EXPERIMENTS[exp]["prune"]["baseline_pairs"]
        inst = pd.read_csv(wd / paths.table(exp, "instability"))
        paired = {"imp", "randprune", "reinit", "restart"} if full else {"imp"}
        assert set(inst["variant"]) == paired
        assert set(inst["bn_mode"]) == {"recompute"}
        control = {2} if full else set()  # the restarted-schedule control forks at k = 2
        assert set(inst.loc[inst["variant"] == "restart", "rewind_step"]) == control
        runs = pd.read_csv(wd / paths.table(exp, "runs"))
        restart = {"restart"} if full else set()
        assert set(runs["variant"]) == {"imp", "randprune", "reinit"} | restart
        assert set(runs.loc[runs["level"] == 1, "rewind_step"]) == ({0, 2} if full else {0})
        assert runs["test_error"].between(0, 1).all()
        table2 = pd.read_csv(wd / paths.table(exp, "table2"))
        assert len(table2) == 4


def test_demo_rewind_runs_at_smoke_scale_with_its_baselines_and_rewinding(workdir):
    """Every paper A figure of the opt-in rewinding demo renders from its tables, which hold
    IMP, random pruning and reinit at its one level, each at k = 0 and rewound, with pairs."""
    wd, _ = workdir
    inst = pd.read_csv(wd / paths.table(DEMO, "instability"))
    assert set(inst["variant"]) == {"imp", "randprune", "reinit"}
    pruned = inst[inst["level"] == 1]
    assert {(v, k) for v, k in zip(pruned["variant"], pruned["rewind_step"], strict=True)} == {
        (v, k) for v in ("imp", "randprune", "reinit") for k in (0, 2)}
    runs = pd.read_csv(wd / paths.table(DEMO, "runs"))
    assert runs["density"].min() == pytest.approx(0.2, abs=0.01)
    for name in PAPER_A_FIGURES:
        fig = render(name, wd / paths.tables_dir(DEMO), 0.02)
        assert fig.axes, name
        plt.close(fig)


def test_rerun_has_nothing_to_do(workdir):
    wd, config = workdir
    again = snakemake(wd, yaml.safe_load(yaml.safe_dump(config)), *TARGETS, "-n")
    assert again.returncode == 0 and job_counts(again.stdout) == {}
