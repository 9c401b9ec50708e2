"""Papers B and C at smoke scale: every analysis target through the real Snakemake workflow.

A tiny LeNet experiment with every analysis switched on, and a tiny paper-B sweep (batch size x
warmup), run once per module; the tests read the tables the run wrote and ask Snakemake for dry
runs to check caching.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from lmcpipe import atomic, paths
from lmcpipe.figures import registry
from tests.helpers import write_dataset
from tests.test_workflow import DAMAGES, job_counts, snakemake, stage_refuses, with_changes

pytestmark = pytest.mark.slow

TRAIN = {"optimizer": "adam", "lr": 1e-3, "batch_size": 20, "steps": 20, "eval_steps": [0, 20],
         "checkpoint_every": 0}
ANALYSES = {"successive": True, "rounds": True, "curvature": True, "curvature_examples": 60,
            "lanczos_iters": 8, "trace_samples": 3, "perturb_scales": [0, 1],
            "perturb_levels": [1], "oneshot_steps": 2, "oneshot_levels": [0]}
CONFIG = {
    "all": ["tiny"],
    "experiments": {
        "tiny": {
            "model": "lenet_300_100", "dataset": "fashion_mnist", "train": TRAIN,
            "prune": {"fraction": 0.5, "levels": 2, "rewind_steps": [0, 5],
                      "baselines": ["reinit"], "baseline_pairs": False},
            "instability": {"fork_steps": [0], "alphas": 4},
            "replicates": {"inits": [0], "orders": [0]},
            "analyses": ANALYSES,
        },
        "sweep": {
            "model": "lenet_300_100", "dataset": "fashion_mnist",
            # warmup "1ep" is 1 500 / 750 iterations at batch 40 / 80 (Fashion-MNIST's nominal
            # 60 000 examples), longer than the 20 steps trained: it is the conversion per member
            # that is under test here (2 epochs of training took 3/4 of this module's time)
            "train": TRAIN,
            "prune": {"fraction": 0.5, "levels": 1, "rewind_steps": [0],
                      "baselines": ["reinit"], "baseline_pairs": False},
            "instability": {"fork_steps": [0], "alphas": 3},
            "replicates": {"inits": [0], "orders": [0]},
            "sweep": {"batch_size": [40, 80], "warmup_steps": [0, "1ep"]},
        },
    },
}
ANALYSIS_FIGURES = [paths.figure("tiny", f) for f in registry.ANALYSIS_FIGURES]
SWEEP_FIGURES = [paths.SWEEP_FIGURE.format(figure=f, sweep="sweep") for f in registry.SWEEP_FIGURES]
TARGETS = ANALYSIS_FIGURES + SWEEP_FIGURES


def config_of(wd: Path) -> dict:
    return {"data_root": str(wd / "data"), **CONFIG}


@pytest.fixture(scope="module")
def wd(tmp_path_factory) -> Path:
    wd = tmp_path_factory.mktemp("analyses")
    write_dataset(wd / "data" / "fashion_mnist")
    done = snakemake(wd, config_of(wd), *TARGETS)
    assert done.returncode == 0, done.stderr[-5000:]
    return wd


def table(wd: Path, exp: str, name: str) -> pd.DataFrame:
    return pd.read_csv(wd / paths.table(exp, name))


def test_every_papers_b_and_c_target_is_built(wd):
    for target in TARGETS:
        assert (wd / target).read_bytes()[:4] == b"%PDF", target


def test_successive_table_is_the_path_between_chain_levels(wd):
    succ = table(wd, "tiny", "successive")
    assert len(succ) == 2 * 2 * 2  # rewind steps x levels L = 0, 1 x splits
    assert set(succ["level"]) == {0, 1} and (succ["barrier"] >= -1e-12).all()
    assert succ["density_next"].lt(succ["density"]).all()
    metrics = pd.read_csv(wd / "results/tiny/s0/k5/imp/L1/retrain/metrics.csv")
    l1 = metrics[(metrics.step == metrics.step.max()) & (metrics.split == "test")]
    row = succ[(succ.level == 0) & (succ.rewind_step == 5) & (succ.split == "test")]
    assert row["error_next"].item() == pytest.approx(l1["error"].item())  # θ_1 endpoint


def test_round_tables_and_curvature_cover_every_level(wd):
    angles = table(wd, "tiny", "angles")
    assert set(angles["row"]) == {-1, 0, 1, 2} and set(angles["col"]) == {0, 1, 2}
    diag = angles[angles.row == angles.col]
    assert (diag["angle"].abs() < 1e-6).all()
    thresholds = table(wd, "tiny", "thresholds")
    assert (thresholds["threshold"] < thresholds["min_kept"]).all()
    curv = table(wd, "tiny", "curvature")
    assert len(curv) == 2 * 3 and curv["top_eigenvalue"].gt(0).all()
    assert curv["trace"].notna().all() and curv["quad_magnitude"].notna().all()
    # pruning the smallest weights costs less curvature than a random removal of as many
    assert (curv["quad_magnitude"] < curv["quad_random"]).mean() >= 0.5


def test_perturbation_at_scale_zero_reproduces_the_chain(wd):
    perturb = table(wd, "tiny", "perturb")
    assert set(perturb["scale"]) == {0, 1} and set(perturb["level"]) == {1}
    zero = perturb[perturb.scale == 0]
    assert (zero["barrier"] == 0).all() and (zero["error"] == zero["error_ref"]).all()
    one = perturb[perturb.scale == 1]
    assert one["noise_norm"].tolist() == pytest.approx(one["distance"].tolist())
    start = atomic.load_torch(wd / "results/tiny/s0/k5/perturb/L1/c1/start.pt")
    mask = atomic.load_torch(wd / paths.mask("tiny", 0, 5, "imp", 2))["masks"]
    for n, m in mask.items():  # the noise stays inside m_(L+1)
        assert torch.all(start["state_dict"][n][~m] == 0)


def test_oneshot_magnitude_one_step_is_the_chain_level(wd):
    oneshot = table(wd, "tiny", "oneshot")
    assert set(oneshot["method"]) == {"magnitude", "random"} and set(oneshot["steps"]) == {1, 2}
    mag1 = oneshot[(oneshot.method == "magnitude") & (oneshot.steps == 1)]
    assert (mag1["error"] == mag1["imp_error"]).all()  # same mask, start and data order
    rand = oneshot[oneshot.method == "random"]
    assert rand["density"].tolist() == pytest.approx(
        oneshot[oneshot.method == "magnitude"]["density"].tolist(), abs=1e-5)


def test_sweep_tables_hold_every_member(wd):
    runs = pd.read_csv(wd / paths.SWEEP_TABLE.format(sweep="sweep", table="sweep_runs"))
    members = {"sweep_bs40_wu0", "sweep_bs40_wu1ep", "sweep_bs80_wu0", "sweep_bs80_wu1ep"}
    assert set(runs["experiment"]) == members
    assert set(runs["batch_size"]) == {40, 80}
    assert (runs["swept"] == "batch_size|warmup_steps").all()
    # "1ep" is one epoch (of Fashion-MNIST's nominal 60 000) at each member's batch size
    assert set(runs["warmup_steps"]) == {0, 60_000 // 40, 60_000 // 80}
    assert set(runs["warmup_steps_setting"].astype(str)) == {"0", "1ep"}  # as written
    assert set(runs["variant"]) == {"imp", "reinit"}


@pytest.mark.parametrize("damage", DAMAGES)
@pytest.mark.parametrize("reader", ["successive", "angles", "curvature", "perturb",
                                    "perturb: dense metrics", "oneshot", "sweep"])
def test_every_analysis_reader_refuses_a_damaged_table(wd, tmp_path, monkeypatch, capsys,
                                                       reader, damage):
    """The per-chain files of papers B/C (a successive path, a round table, a curvature row, a
    probe's path, the chain metrics a probe reads) and a sweep member's table, each cut short or
    with one wrong value: its reader stops with one line naming it, and writes nothing. The file
    is damaged in place and restored, bytes and time, so the module's other tests see no change."""
    import json
    import os

    from lmcpipe import plan
    from lmcpipe.config import validate_with_sweeps
    from lmcpipe.hparams import to_json

    monkeypatch.chdir(wd)
    experiments, sweeps = validate_with_sweeps(yaml.safe_load(yaml.safe_dump(config_of(wd))))
    exp = experiments["tiny"]
    table, _, what = reader.partition(": ")
    probe = plan.probes(exp, table)[0] if table in paths.PROBES else None
    damaged = {
        "successive": paths.successive("tiny", 0, 5, 1),
        "angles": paths.rounds_table("tiny", 0, 5, "angles"),
        "curvature": paths.curvature("tiny", 0, 0, 1),
        "perturb": (plan.chain_metrics(exp, 0, 0, 0) if what
                    else f"{probe.dir(exp) if probe else ''}/{paths.PATH_FILE}"),
        "oneshot": f"{probe.dir(exp) if probe else ''}/{paths.PATH_FILE}",
        "sweep": paths.table("sweep_bs80_wu1ep", "instability"),
    }[table]
    out = tmp_path / "out"
    argv = (["sweep-table", "--name", "sweep", "--members", json.dumps(sweeps["sweep"]),
             "--out-dir", str(out)] if table == "sweep" else
            ["aggregate-analysis", "--experiment", to_json(exp), "--table", table, "--out",
             str(out / "t.csv")])
    clean, times = (wd / damaged).read_bytes(), os.stat(wd / damaged)
    try:
        DAMAGES[damage](wd / damaged)
        stage_refuses(argv, damaged, capsys)
    finally:
        (wd / damaged).write_bytes(clean)
        os.utime(wd / damaged, ns=(times.st_atime_ns, times.st_mtime_ns))
    assert not out.exists()


def test_rerun_has_nothing_to_do_and_analysis_changes_rerun_only_the_analysis(wd):
    again = snakemake(wd, config_of(wd), *TARGETS, "-n")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
    changed = with_changes(config_of(wd), analyses__lanczos_iters=9)
    planned = snakemake(wd, changed, *TARGETS, "-n")
    assert planned.returncode == 0, planned.stderr[-3000:]
    counts = job_counts(planned.stdout)
    assert set(counts) == {"curvature", "aggregate_analysis", "figure_analysis"}, counts
    assert counts["curvature"] == 2 * 3


def test_changing_threads_reruns_no_table(wd):
    """``threads`` of every experiment (the sweep's members too) changes no table."""
    changed = {**config_of(wd), "experiments": {
        name: {**exp, "threads": 2} for name, exp in CONFIG["experiments"].items()}}
    planned = snakemake(wd, changed, *TARGETS, "-n")
    assert planned.returncode == 0, planned.stderr[-3000:]
    counts = job_counts(planned.stdout)
    assert not {"aggregate", "aggregate_analysis", "sweep_table", "figure", "figure_analysis",
                "sweep_figure"} & set(counts), counts


def test_repellent_sweep_feeds_earlier_optima_to_the_imp_runs(tmp_path):
    config = {"data_root": str(tmp_path / "data"), "all": ["rep"], "experiments": {"rep": {
        **CONFIG["experiments"]["sweep"], "prune": {"fraction": 0.5, "levels": 2,
                                                    "rewind_steps": [0], "baselines": []},
        "sweep": {"repel_lambda": [0, 2]}}}}
    write_dataset(tmp_path / "data" / "fashion_mnist")
    planned = snakemake(tmp_path, config, "-n", "-p",
                        "results/rep_rl2/s0/k0/imp/L2/retrain/model.pt")
    assert planned.returncode == 0, planned.stderr[-3000:]
    out = planned.stdout
    assert '"references": ["results/rep_rl2/s0/dense/model.pt",' \
           ' "results/rep_rl2/s0/k0/imp/L1/retrain/model.pt"]' in out
    plain = snakemake(tmp_path, config, "-n", "-p",
                      "results/rep_rl0/s0/k0/imp/L2/retrain/model.pt")
    assert '"references": ["' not in plain.stdout
