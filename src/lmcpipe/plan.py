"""Which runs and pairs an experiment consists of.

Snakemake's input functions and the aggregate stage both enumerate an experiment through here,
so the tables always describe exactly the artifacts the workflow built.
"""

from __future__ import annotations

from dataclasses import dataclass

from lmcpipe import paths
from lmcpipe.hparams import Experiment


@dataclass(frozen=True, order=True)
class Pair:
    """Two copies trained from the same (W_k, mask) with data orders (order, 1) and (order, 2)."""

    seed: int
    k: int
    variant: str
    level: int
    order: int

    def copy(self, c: int) -> Run:
        return Run(self.seed, self.k, self.variant, self.level, self.order, c)


@dataclass(frozen=True, order=True)
class Run:
    seed: int
    k: int
    variant: str
    level: int
    order: int
    copy: int

    def dir(self, exp: Experiment) -> str:
        return paths.run(exp.name, self.seed, self.k, self.variant, self.level, self.order,
                         self.copy, exp.chain_order)

    def mask(self, exp: Experiment) -> str | None:
        return paths.mask(exp.name, self.seed, self.k, self.variant, self.level)


def pairs(exp: Experiment) -> list[Pair]:
    """Dense pairs at every fork step and IMP rewind step; IMP (and baseline) pairs per level."""
    out: set[Pair] = set()
    for s in exp.inits:
        for k in set(exp.fork_steps) | set(exp.prune.rewind_steps):
            out |= {Pair(s, k, "imp", 0, d) for d in exp.orders}
        if exp.control:  # at k = 0 restarting is the same computation as T - k: skipped
            out |= {Pair(s, k, "restart", 0, d) for k in exp.fork_steps if k for d in exp.orders}
        for k in exp.prune.rewind_steps:
            for n in range(1, exp.prune.levels + 1):
                out |= {Pair(s, k, "imp", n, d) for d in exp.orders}
                if exp.prune.baseline_pairs and exp.prune.has_baselines(n):
                    out |= {Pair(s, k, v, n, d) for v in exp.prune.baselines for d in exp.orders}
    return sorted(out)


def runs(exp: Experiment) -> list[Run]:
    """Every trained copy: both copies of each pair, and copy 1 of unpaired baselines."""
    out = {p.copy(c) for p in pairs(exp) for c in (1, 2)}
    if not exp.prune.baseline_pairs:
        for s in exp.inits:
            for k in exp.prune.rewind_steps:
                for n in range(1, exp.prune.levels + 1):
                    if exp.prune.has_baselines(n):
                        out |= {Run(s, k, v, n, d, 1) for v in exp.prune.baselines
                                for d in exp.orders}
    return sorted(out)


# --- cohorts: the runs one training job trains together ------------------------------------
# A cohort is the runs of one (init seed, k, level) that follow the same schedule. The chain's
# own run (copy 1 of the chain's data order: the dense run at level 0, the IMP retrain run at
# level n >= 1) trains in a cohort of its own, because the chain's next step (level n + 1's
# mask) needs it and nothing else of its level: a chain of N levels then waits for N single
# runs, not for N whole levels. The kinds: "dense" is the dense run alone; "fork0" the other
# copies of the pairs forked at k = 0; "fork" the pairs forked at k > 0; "chain" a pruning level
# n >= 1's retrain run alone; "level" the rest of a pruning level where the baselines train (IMP
# copies of every order, the baselines); "imp_level" the rest of a level without baselines
# (``prune.baseline_levels``); "restart" the Fig 4 control at k > 0. Which runs a cohort holds
# depends only on the experiment and the kind, so each (experiment, kind) is one Snakemake rule
# whose outputs are patterns in {seed}, {k} and {level}.
COHORT_KINDS = ("dense", "fork0", "fork", "chain", "level", "imp_level", "restart")
LEVEL_KINDS = ("chain", "level", "imp_level")  # the kinds with a {level} wildcard
CHAIN_KINDS = ("dense", "chain")  # a chain's own run, alone: what its next level waits for


def _pair_steps(exp: Experiment) -> set[int]:
    return set(exp.fork_steps) | set(exp.prune.rewind_steps)


def cohort_shape(exp: Experiment, kind: str) -> list[tuple[str, int, int]]:
    """(variant, order, copy) of every run of a cohort of this kind."""
    chain = ("imp", exp.chain_order, 1)
    both = [(d, c) for d in exp.orders for c in (1, 2)]
    imp = [("imp", d, c) for d, c in both if ("imp", d, c) != chain]
    if kind in ("dense", "chain"):  # the dense run is always trained
        return [chain]
    if kind == "fork0":
        return imp if 0 in _pair_steps(exp) else []
    if kind == "fork":  # every copy of the IMP pairs: k > 0 has no chain run at level 0
        return [("imp", d, c) for d, c in both]
    if kind == "imp_level":
        return imp
    if kind == "restart":
        return [("restart", d, c) for d, c in both]
    if kind == "level":
        base = both if exp.prune.baseline_pairs else [(d, 1) for d in exp.orders]
        return imp + [(v, d, c) for v in exp.prune.baselines for d, c in base]
    raise ValueError(f"unknown cohort kind '{kind}'")


def cohort_pairs_shape(exp: Experiment, kind: str) -> list[tuple[str, int]]:
    """(variant, order) of every pair whose path a cohort's interpolation job measures: the
    pairs whose copy 2 it trains (copy 1 of the chain's pair is the chain's own run)."""
    shape = {(v, d) for v, d, c in cohort_shape(exp, kind) if c == 2}
    return sorted(shape, key=lambda vd: (vd[0] != "imp", vd))


def cohort_kinds(exp: Experiment) -> list[str]:
    """The kinds of cohort an experiment has."""
    kinds = ["dense"]
    kinds += ["fork0"] if 0 in _pair_steps(exp) else []
    kinds += ["fork"] if _pair_steps(exp) - {0} else []
    kinds += [kind for kind in LEVEL_KINDS if kind_levels(exp, kind)]
    kinds += ["restart"] if exp.control and set(exp.fork_steps) - {0} else []
    return kinds


def kind_levels(exp: Experiment, kind: str) -> list[int]:
    """The pruning levels that have a cohort of a level kind: "chain" at every level, "level"
    where the baselines train (every level without baselines at all), "imp_level" at the
    others."""
    levels = range(1, exp.prune.levels + 1)
    if kind == "chain":
        return list(levels)
    plain = [n for n in levels if exp.prune.baselines and not exp.prune.has_baselines(n)]
    return plain if kind == "imp_level" else [n for n in levels if n not in plain]


def cohort_kind(exp: Experiment, run: Run) -> str:
    """The kind of the cohort a run trains in."""
    if run.variant == "restart":
        return "restart"
    chain = (run.variant, run.order, run.copy) == ("imp", exp.chain_order, 1)
    if run.level:
        if chain:
            return "chain"
        return "level" if run.level in kind_levels(exp, "level") else "imp_level"
    if run.k:
        return "fork"
    return "dense" if chain else "fork0"


def cohort(exp: Experiment, seed: int, k: int, level: int, kind: str) -> list[Run]:
    """The runs of one cohort, in the order they are trained and stacked."""
    return [Run(seed, k, v, level, d, c) for v, d, c in cohort_shape(exp, kind)]


def cohorts(exp: Experiment) -> list[tuple[int, int, int, str]]:
    """(seed, k, level, kind) of every cohort of an experiment."""
    kinds = cohort_kinds(exp)
    out = []
    for s in exp.inits:
        out.append((s, 0, 0, "dense"))
        out += [(s, 0, 0, "fork0")] if "fork0" in kinds else []
        out += [(s, k, 0, "fork") for k in sorted(_pair_steps(exp) - {0})]
        if "restart" in kinds:
            out += [(s, k, 0, "restart") for k in sorted(set(exp.fork_steps) - {0})]
        for k in exp.prune.rewind_steps:
            for n in range(1, exp.prune.levels + 1):
                out += [(s, k, n, kind) for kind in LEVEL_KINDS if n in kind_levels(exp, kind)]
    return out


def start_step(run: Run) -> int:
    """Schedule position of a run's start: k, or 0 for the restarted-schedule control."""
    return 0 if run.variant == "restart" else run.k


def path_file(exp: Experiment, pair: Pair) -> str:
    return paths.path(exp.name, pair.seed, pair.k, pair.variant, pair.level, pair.order)


def chains(exp: Experiment) -> list[tuple[int, int]]:
    """(init seed, rewind step k) of every IMP chain: what papers B and C analyse."""
    return [(s, k) for s in exp.inits for k in exp.prune.rewind_steps]


def chain_models(exp: Experiment, seed: int, k: int) -> list[str]:
    """θ_0 … θ_N of a chain: the dense network, then each level's IMP retrain run."""
    return [paths.chain_model(exp.name, seed, k, lvl, exp.chain_order)
            for lvl in range(exp.prune.levels + 1)]


def chain_masks(exp: Experiment, seed: int, k: int) -> list[str]:
    """m_1 … m_N of a chain."""
    return [paths.mask(exp.name, seed, k, "imp", lvl) for lvl in range(1, exp.prune.levels + 1)]


@dataclass(frozen=True, order=True)
class Probe:
    """One paper C probe run from level ``level`` of the chain (seed, k)."""

    seed: int
    k: int
    kind: str
    level: int
    arm: str
    scale: float = 0.0
    method: str = ""
    steps: int = 0

    def dir(self, exp: Experiment) -> str:
        return paths.probe(exp.name, self.seed, self.k, self.kind, self.level, self.arm)


def probes(exp: Experiment, kind: str) -> list[Probe]:
    """The perturbation or one-shot probe runs an experiment's ``analyses`` ask for."""
    a, n = exp.analyses, exp.prune.levels
    out = []
    for s, k in chains(exp):
        if kind == "perturb":
            out += [Probe(s, k, kind, lvl, paths.perturb_arm(c), scale=c)
                    for lvl in a.levels(a.perturb_levels, n) for c in a.perturb_scales]
        else:
            out += [Probe(s, k, kind, lvl, paths.oneshot_arm(m, j), method=m, steps=j)
                    for lvl in a.levels(a.oneshot_levels, n) for m in a.oneshot_methods
                    for j in range(1, a.oneshot_steps + 1)]
    return out


def chain_metrics(exp: Experiment, seed: int, k: int, lvl: int) -> str:
    return paths.chain_run(exp.name, seed, k, lvl, exp.chain_order) + "/" + paths.METRICS


def analysis_inputs(exp: Experiment, table: str) -> list[str]:
    """The per-chain files an experiment-level papers B/C table is assembled from."""
    out: list[str] = []
    if table in paths.PROBES:
        for p in probes(exp, table):
            here = p.dir(exp)
            out += [f"{here}/{name}" for name in (paths.PATH_FILE, paths.METRICS,
                                                  paths.PROBE_SETUP[table])]
        for s, k in chains(exp):
            out += chain_masks(exp, s, k)
            out += [chain_metrics(exp, s, k, lvl) for lvl in range(exp.prune.levels + 1)]
        return out
    for s, k in chains(exp):
        if table == "successive":
            out += [paths.successive(exp.name, s, k, lvl) for lvl in range(exp.prune.levels)]
            out += chain_masks(exp, s, k)
        elif table == "curvature":
            out += [paths.curvature(exp.name, s, k, lvl) for lvl in range(exp.prune.levels + 1)]
        else:
            out.append(paths.rounds_table(exp.name, s, k, table))
    return out
