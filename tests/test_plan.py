"""Cohorts (lmcpipe.plan) of every shipped experiment: each run trains in exactly one cohort,
and the chain's own run trains alone, so that the chain's next level waits for it alone."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml

from lmcpipe import paths, plan
from lmcpipe.config import validate_with_sweeps

SHIPPED = Path(__file__).resolve().parents[1] / "config.yaml"
EXPERIMENTS, _ = validate_with_sweeps(yaml.safe_load(SHIPPED.read_text()))


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_every_run_trains_in_exactly_one_cohort_of_its_kind(name):
    exp = EXPERIMENTS[name]
    held = Counter()
    for seed, k, level, kind in plan.cohorts(exp):
        runs = plan.cohort(exp, seed, k, level, kind)
        assert runs, (seed, k, level, kind)
        for r in runs:
            held[r] += 1
            assert plan.cohort_kind(exp, r) == kind, r
    assert set(plan.runs(exp)) <= set(held)
    assert [r for r, n in held.items() if n > 1] == []


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_the_chains_runs_train_alone(name):
    """θ_0 (the dense run) and each level's θ_L, the file the next level's prune reads, are
    the only run of their cohort."""
    exp = EXPERIMENTS[name]
    made_by = {}
    for seed, k, level, kind in plan.cohorts(exp):
        runs = plan.cohort(exp, seed, k, level, kind)
        for r in runs:
            made_by[f"{r.dir(exp)}/{paths.MODEL}"] = (kind, len(runs))
    for seed, k in plan.chains(exp):
        models = plan.chain_models(exp, seed, k)
        assert [made_by[m] for m in models] == (
            [("dense", 1)] + [("chain", 1)] * exp.prune.levels)


def test_lenet_cohorts_hold_the_rest_of_each_level():
    """Paper A's LeNet: 3 orders, both baselines as pairs. A level's 18 runs are the chain's
    run and 17 others; level 0 at k = 0 is the dense run and the 5 other copies forked at 0."""
    exp = EXPERIMENTS["lenet"]
    sizes = {kind: len(plan.cohort_shape(exp, kind)) for kind in plan.cohort_kinds(exp)}
    assert sizes == {"dense": 1, "fork0": 5, "fork": 6, "chain": 1, "level": 17}
    chain = ("imp", exp.chain_order, 1)
    assert chain not in plan.cohort_shape(exp, "level")
    assert chain not in plan.cohort_shape(exp, "fork0")
    # each pair is measured by the job of the cohort that trains its copy 2
    assert ("imp", exp.chain_order) in plan.cohort_pairs_shape(exp, "level")
    assert plan.cohort_pairs_shape(exp, "chain") == []
