"""Diverged runs: a NaN/inf training loss stops the run with one line naming it and the step,
and nothing of it is written; runs that end at chance error are flagged in tables and figures."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest
import torch

from lmcpipe import aggregate, atomic, models
from lmcpipe.csvfiles import save_frame
from lmcpipe.errors import Diverged
from lmcpipe.figures import render
from lmcpipe.hparams import to_json
from lmcpipe.training import checkpoint, cohort, single
from tests.helpers import tiny_hparams

REPO = Path(__file__).resolve().parents[1]


def exploding(data_root, **overrides):
    """SGD at lr 1e12: the weights overflow within a few steps and the loss turns NaN/inf."""
    return tiny_hparams(data_root, optimizer="sgd", lr=1e12, **overrides)


def test_a_non_finite_loss_raises_with_its_step_and_writes_no_checkpoint(tmp_path, data_root,
                                                                         dataset):
    hp = exploding(data_root, steps=40, checkpoint_every=5, eval_steps=())
    model = models.build_initialised(hp.model, hp.dataset, 0)
    resume = tmp_path / "model.pt.resume"
    with pytest.raises(Diverged) as info:
        single.train(hp, model, dataset, order=0, copy=1, resume_path=resume)
    err = info.value
    assert 0 < err.step < 40 and not torch.isfinite(torch.tensor(err.loss))
    # the first bad step itself: training up to it stays finite
    probe = models.build_initialised(hp.model, hp.dataset, 0)
    single.train(hp, probe, dataset, order=0, copy=1, stop_step=err.step, record=False)
    with pytest.raises(Diverged):
        single.train(hp, probe, dataset, order=0, copy=1, start_step=err.step,
                    stop_step=err.step + 1, record=False)
    if resume.exists():  # only checkpoints from before the divergence, all finite
        state = torch.load(resume, weights_only=True)
        assert state["step"] <= err.step
        assert all(torch.isfinite(v).all() for v in state["model"].values())


@pytest.mark.parametrize("stack", [1, 2])
def test_a_diverging_cohort_job_fails_in_one_line_and_writes_no_model(tmp_path, data_root,
                                                                      stack):
    """What a rule runs: ``lmcpipe cohort`` exits 1 with one line naming the run and the step;
    no model.pt or metrics.csv of the cohort exists afterwards (nothing Snakemake could take for
    finished work)."""
    hp = exploding(data_root, checkpoint_every=5)
    start = tmp_path / "w0.pt"

    atomic.save_torch(checkpoint.model_record(models.build_initialised(hp.model, hp.dataset, 0),
                                         hp.model, 0), start)
    ms = [cohort.Member(order=o, copy=1, model_out=str(tmp_path / f"d{o}" / "model.pt"),
                        metrics_out=str(tmp_path / f"d{o}" / "metrics.csv"), start=str(start))
          for o in (0, 1)]
    spec = json.dumps([dataclasses.asdict(m) for m in ms])
    proc = subprocess.run(
        [sys.executable, "-m", "lmcpipe", "cohort", "--hparams", to_json(hp), "--seed", "0",
         "--start-step", "0", "--level", "0", "--members", spec, "--stack", str(stack)],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("lmcpipe cohort: run ") and str(tmp_path / "d0") in lines[0]
    assert "diverged" in lines[0] and " at step " in lines[0]
    for m in ms:
        assert not os.path.exists(m.model_out) and not os.path.exists(m.metrics_out)


def test_runs_at_chance_are_flagged_in_tables_and_figures(tmp_path):
    assert aggregate.chance_error(10) == pytest.approx(0.85)
    assert aggregate.chance_error(1000) == pytest.approx(0.9985)
    runs = pd.DataFrame({
        "experiment": "e", "variant": ["imp", "imp", "imp", "imp"], "seed": 0,
        "rewind_step": 0, "level": [0, 0, 1, 1], "density": [1.0, 1.0, 0.8, 0.8],
        "density_of": "all_weights", "order": [0, 1, 0, 1], "copy": 1, "step": 10,
        "train_loss": 0.1, "train_error": 0.1, "test_loss": 0.1,
        "test_error": [0.1, 0.12, 0.9, 0.11], "at_chance": [False, False, True, False]})
    from lmcpipe.hparams import Experiment, InterpHParams, PruneHParams

    exp = Experiment(name="e", train=tiny_hparams("x"), prune=PruneHParams(levels=1),
                     interp=InterpHParams(), inits=(0,), orders=(0, 1), fork_steps=(0,))
    summary = pd.DataFrame({"variant": ["imp", "imp"], "rewind_step": [0, 0], "level": [0, 1]})
    flagged = aggregate.with_flags(summary, runs, exp)
    assert flagged["n_at_chance"].tolist() == [0, 1]
    assert set(flagged["density_of"]) == {"all_weights"}

    save_frame(runs, tmp_path / "runs.csv")
    fig, ax = plt.subplots()
    ax.set_xlabel("weights remaining (%)")
    render.annotate(fig, tmp_path / "runs.csv")
    assert ax.get_xlabel() == "weights remaining (% of all conv/linear weights)"
    notes = [t.get_text() for t in fig.texts]
    assert notes == ["Note: 1 of 4 runs ended at chance error (at_chance in runs.csv); "
                     "they are included"]
    plt.close(fig)
    clean = runs.assign(at_chance=False, density_of="prunable_weights")
    save_frame(clean, tmp_path / "runs.csv")
    fig, ax = plt.subplots()
    ax.set_xlabel("weights remaining at level L+1 (%)")
    render.annotate(fig, tmp_path / "runs.csv")
    assert ax.get_xlabel() == "weights remaining at level L+1 (% of prunable weights)"
    assert not fig.texts
    plt.close(fig)
