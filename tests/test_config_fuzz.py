"""Hostile configs are refused in one line naming their key, or are valid and plan (issue 21).

A short, derandomized hypothesis run of tests/config_fuzz.py's strategies (the long campaign is
scripts/fuzz_config.py), the crashes an earlier campaign found as fixed examples, and the
Snakemake front end on a refused config.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings

from lmcpipe import config, paths, plan
from lmcpipe.config import ConfigError, planned_runs, validate_with_sweeps
from tests.config_fuzz import configs, valid_config
from tests.config_judge import Outcome, judge, names_its_key

ROOT = Path(__file__).resolve().parents[1]
# a few seconds, the same examples on every run: a failure here is reproducible in CI
BOUNDED = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                   suppress_health_check=list(HealthCheck))


@BOUNDED
@given(configs)
def test_fuzzed_configs_are_refused_in_one_line_or_plan(cfg):
    outcome = judge(cfg)
    assert outcome.kind in ("refused", "planned"), f"{outcome.line}\nconfig: {cfg!r}"


@settings(BOUNDED, max_examples=60)
@given(valid_config())
def test_planned_runs_counts_what_the_plan_trains(cfg):
    """The count the run limits are checked against is the plan's own, for every valid config."""
    try:
        experiments, _ = validate_with_sweeps(cfg)
    except ConfigError:
        return
    for exp in experiments.values():
        probes = sum(len(plan.probes(exp, kind)) for kind in paths.PROBES)
        assert planned_runs(exp) == len(plan.runs(exp)) + probes


def experiment(**keys) -> dict:
    """A valid LeNet experiment with ``keys`` set (a section's keys merged into it)."""
    exp = {"model": "lenet_300_100", "dataset": "mnist",
           "train": {"optimizer": "sgd", "lr": 0.1, "batch_size": 60, "steps": 100}}
    for key, value in keys.items():
        exp[key] = {**exp.get(key, {}), **value} if isinstance(value, dict) else value
    return exp


def one(**keys) -> dict:
    """A config of one experiment, x."""
    return {"experiments": {"x": experiment(**keys)}}


# What an earlier campaign crashed on (a traceback, a multi-line message, a plan that hung or
# ran out of memory, probes sharing a directory), with the key each is now refused at.
FOUND = [
    (one(threads=1e308), "experiments.x.threads", "is not of type 'integer'"),
    (one(train={"batch_size": 10.0}), "experiments.x.train.batch_size", "not of type 'integer'"),
    (one(train={"checkpoint_every": -0.0}), "experiments.x.train.checkpoint_every",
     "is not allowed: A point in training"),
    (one(prune={"levels": 2.0}), "experiments.x.prune.levels", "not of type 'integer'"),
    (one(sweep={0: [1], "lr": [0.1]}), "experiments.x.sweep", "key 0 is not a string"),
    ({**one(), 1: 2}, "<top level>", "key 1 is not a string"),
    (one(train={"steps": "3ep\n"}), "experiments.x.train.steps", "'3ep\\n' is not allowed"),
    (one(train={"steps": "9" * 5000 + "it"}), "experiments.x.train.steps", "is not allowed"),
    ({"experiments": {"a\n": experiment()}}, "experiments", "'a\\n' is not allowed"),
    ({**one(), "all": ["a\nb"]}, "all.0", "'a\\nb' is not allowed"),
    ({**one(), "cluster": {"gpu_model": "a100\n"}}, "cluster.gpu_model", "is not allowed"),
    ({**one(), "data_root": "data\n"}, "data_root", "without control characters"),
    (one(train={"lr": math.nan}), "experiments.x.train.lr", "nan is not a finite number"),
    (one(prune={"levels": 1, "fraction": math.nan}), "experiments.x.prune.fraction", "finite"),
    (one(prune={"levels": 1}, analyses={"perturb_scales": [math.inf]}),
     "experiments.x.analyses.perturb_scales.0", "inf is not a finite number"),
    (one(prune={"levels": 1}, analyses={"perturb_scales": [0.1, 0.1000000001]}),
     "experiments.x.analyses.perturb_scales", "are one probe, c0.1"),
    (one(prune={"levels": 10**7}), "experiments.x.prune.levels", "maximum of 100"),
    (one(prune={"levels": 1}, analyses={"oneshot_steps": 10**9}),
     "experiments.x.analyses.oneshot_steps", "maximum of 100"),
    (one(replicates={"inits": [2**63]}), "experiments.x.replicates.inits.0",
     "beyond the 64-bit integer range"),
    (one(train={"steps": "100000000000ep"}), "experiments.x.train.steps",
     "100,000,000,000,000 iterations is more than the 1,000,000,000 lmcpipe trains"),
    (one(sweep={"batch_size": list(range(1, 60)), "lr": [i / 100 for i in range(1, 60)]}),
     "experiments.x.sweep", "3,481 combinations, more than the 1000"),
    (one(sweep={"batch_size": [10**5000]}), "experiments.x.sweep.batch_size.0", "16610-bit"),
    (one(sweep={"lr": [0.1, "0.1"]}), "experiments.x.sweep.lr.1", "is not of type 'number'"),
    ({**one(), "all": ["x", "x"]}, "all", "has non-unique elements"),
    (one(train={"batch_size": 10**6}), "experiments.x.train.batch_size",
     "more than the 60000 training examples of mnist"),
    (one(replicates={"inits": list(range(100)), "orders": list(range(100))},
         prune={"levels": 10}), "experiments.x", "training runs, more than the 100,000"),
    ({"experiments": {"x": experiment(), "instability_x": experiment()}},
     "experiments.instability_x", "figure imp_instability_x.pdf would be both imp of "
     "instability_x and imp_instability of x"),
    (one(sweep={"warmup_steps": [0, "1000000000000ep"]}), "experiments.x.sweep.warmup_steps",
     "iterations is more than the 1,000,000,000 lmcpipe trains (sweep member x_wu1000000000000ep)"),
]


@pytest.mark.parametrize(("cfg", "key", "says"), FOUND)
def test_what_fuzzing_found_is_refused_in_one_line(cfg, key, says):
    outcome = judge(cfg)
    assert outcome.kind == "refused", outcome.line
    assert outcome.line.startswith(f"config key {key}: "), outcome.line
    assert says in outcome.line


def test_a_yaml_alias_inside_its_anchor_is_refused():
    cfg = yaml.safe_load("experiments: {x: {model: lenet_300_100, dataset: mnist, "
                         "train: &t {optimizer: sgd, lr: 0.1, batch_size: 8, steps: 10, "
                         "milestones: [*t]}}}")
    with pytest.raises(ConfigError, match=r"^config key experiments\.x\.train\.milestones\.0: "
                                          r"contains itself"):
        validate_with_sweeps(cfg)


def test_the_judge_tells_a_named_key_from_a_bad_line():
    """The fuzz test can fail: a message naming no key, or on two lines, is not a refusal."""
    cfg = one()
    assert names_its_key("config key experiments.x.train.lr: bad", cfg)
    assert names_its_key("config key <top level>: bad", cfg)
    assert not names_its_key("config key experiments.y.train: bad", cfg)
    assert not names_its_key("config key experiments.x.train.lr: bad\nmore", cfg)
    assert not names_its_key("experiments.x.train.lr is bad", cfg)
    # 3 inits x (the dense pairs of 3 orders + 2 levels x (IMP and 2 baselines) x 3 pairs) x 2
    assert judge(one(prune={"levels": 2})) == Outcome("planned", "1 experiments, 126 runs", 126)


def test_shipped_limits_leave_room():
    """The limits are far above what the shipped configs plan (config.yaml: 39588 runs)."""
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    experiments, _ = validate_with_sweeps(cfg)
    runs = [planned_runs(e) for e in experiments.values()]
    assert max(runs) * 10 < config.MAX_RUNS and sum(runs) * 10 < config.MAX_RUNS_IN_ALL
    assert max(e.train.steps for e in experiments.values()) * 1000 < config.MAX_STEPS


def test_snakemake_stops_a_refused_config_before_any_job(tmp_path):
    """The real front end: the ConfigError's line, no traceback, no job (a scratch directory,
    so config.yaml is not merged in)."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("experiments:\n  x:\n    model: lenet_300_100\n    dataset: mnist\n"
                   "    train: {optimizer: sgd, lr: .nan, batch_size: 8, steps: 10}\n")
    done = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--snakefile", str(ROOT / "Snakefile"),
         "--directory", str(tmp_path), "--configfile", str(bad), "--cores", "1"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "config key experiments.x.train.lr: nan is not a finite number\n" in out, out
    assert "Traceback" not in out and "jobid" not in out, out
