"""The judge of a fuzzed config (issue 21): refused in one line naming its key, or valid and
planned, or a crash (an exception other than ConfigError, a ConfigError not naming a key of
the config, a plan that raises, contradicts itself or takes too long).

"Planned" means everything the Snakefile asks of lmcpipe while it parses (rules per cohort
kind, probe arms, download rules, figure targets) and builds the DAG (each cohort's runs and
members, pairs, chains, analysis inputs, hyperparameter JSON) works. Used by
``tests/test_config_fuzz.py`` and ``scripts/fuzz_config.py``.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import signal
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from lmcpipe import data, paths, plan
from lmcpipe.config import ConfigError, dotted, validate_with_sweeps
from lmcpipe.figures.registry import FIGURES
from lmcpipe.hparams import experiment_from_json, to_json


@dataclasses.dataclass
class Outcome:
    """``refused`` (one line naming a key), ``planned`` (valid; runs planned) or ``crash``."""

    kind: str
    line: str
    runs: int = 0


def _resolves(node: Any, key: str) -> bool:
    """Whether a dotted key (as ``lmcpipe.config.dotted`` writes one: names may hold dots,
    odd keys are quoted) is a place in ``node``."""
    if not key:
        return True
    items = node.items() if isinstance(node, dict) else enumerate(node) \
        if isinstance(node, list) else []
    for k, value in items:
        text = dotted([k])
        if key == text or key.startswith(text + ".") and _resolves(value, key[len(text) + 1:]):
            return True
    return False


def names_its_key(line: str, *configs_: Any) -> bool:
    """One line, ``config key <dotted.key>: ...``, the key a place in one of ``configs_``."""
    if "\n" in line or not line.startswith("config key "):
        return False
    rest = line.removeprefix("config key ")
    keys = [rest[: m.start()] for m in re.finditer(": ", rest)]  # the key ends at one of them
    return any(key == "<top level>" or any(_resolves(c, key) for c in configs_) for key in keys)


def plan_everything(experiments: dict, sweeps: dict, cfg: dict) -> int:
    """What the Snakefile asks of lmcpipe for these experiments while it parses (rules per
    cohort kind, probe arms, download rules, ``rule all``'s targets) and builds the DAG (every
    cohort's runs and members, pairs, chains, analysis inputs, hyperparameter JSON). Returns
    the number of trained runs; raises AssertionError where the plan contradicts itself."""
    total = 0
    for exp in experiments.values():
        assert experiment_from_json(to_json(exp)) == exp, "experiment JSON does not round-trip"
        for hp in (exp.train, exp.interp, exp.analyses, dataclasses.replace(exp, threads=1)):
            to_json(hp)
        for kind in plan.cohort_kinds(exp):
            plan.cohort_shape(exp, kind)
            plan.cohort_pairs_shape(exp, kind)
            if kind in plan.LEVEL_KINDS:
                plan.kind_levels(exp, kind)
        cohort_runs = []
        for seed, k, level, kind in plan.cohorts(exp):
            runs = plan.cohort(exp, seed, k, level, kind)
            plan.start_step(runs[0])
            cohort_runs += runs
            for r in runs:
                r.mask(exp)
                paths.rewind(exp.name, r.seed, r.k)
        runs = plan.runs(exp)
        dirs = {r.dir(exp) for r in runs}
        assert len(dirs) == len(runs), "two runs share a directory"
        assert set(runs) <= set(cohort_runs), "a run no cohort trains"
        assert len(set(cohort_runs)) == len(cohort_runs), "a run two cohorts train"
        for p in plan.pairs(exp):
            plan.path_file(exp, p)
        for s, k in plan.chains(exp):
            plan.chain_models(exp, s, k)
            plan.chain_masks(exp, s, k)
        probes = []
        for kind in paths.PROBES:
            found = plan.probes(exp, kind)
            assert len({p.dir(exp) for p in found}) == len(found), "two probes share a directory"
            assert all(re.fullmatch(paths.ARM, p.arm) for p in found), "an arm no rule matches"
            probes += found
        for table, switch in paths.ANALYSIS_TABLES.items():
            if getattr(exp.analyses, switch):
                plan.analysis_inputs(exp, table)
        data.download_targets(exp.train.dataset, exp.train.data_root)
        if data.find(exp.train.dataset, exp.train.data_root) is not None:
            data.note(exp.train.dataset, exp.train.data_root)
        total += len(runs) + len(probes)
    for members in sweeps.values():
        for member, values in members.items():
            for key in values:
                getattr(experiments[member].train, key)
    assert all(n in experiments or n in sweeps for n in cfg["all"]), "rule all: unknown name"
    names = [*experiments, *sweeps]  # every figure a target can name is a file of its own
    figures = {paths.figure(n, f) for n in names for f in FIGURES}
    assert len(figures) == len(names) * len(FIGURES), "two figures share a file"
    return total


def _last_line(error: BaseException) -> str:
    frame = traceback.extract_tb(error.__traceback__)[-1]
    text = f"{type(error).__name__}: {error}".splitlines()[0] if str(error) else \
        type(error).__name__
    return f"{text[:300]} (at {frame.filename.rsplit('/', 1)[-1]}:{frame.lineno})"


class Hang(Exception):
    """Validating or planning one config took longer than the judge allows."""


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Raise Hang in the main thread after ``seconds`` (a plan that explodes is a crash too)."""

    def expire(signum, frame):
        raise Hang(f"no answer within {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def judge(cfg: Any, seconds: float = 30) -> Outcome:
    """Validate a copy of ``cfg`` and plan it (each within ``seconds``); what became of it."""
    original, work = copy.deepcopy(cfg), copy.deepcopy(cfg)
    try:
        with _time_limit(seconds):
            experiments, sweeps = validate_with_sweeps(work)
    except ConfigError as e:
        line = str(e)
        if names_its_key(line, original, work):
            return Outcome("refused", line)
        return Outcome("crash", f"ConfigError not naming its key: {line[:300]!r}")
    except Exception as e:  # what the fuzzer looks for (MemoryError, RecursionError too)
        return Outcome("crash", _last_line(e))
    try:
        with _time_limit(seconds):
            runs = plan_everything(experiments, sweeps, work)
    except Exception as e:
        return Outcome("crash", f"valid but plan fails: {_last_line(e)}")
    return Outcome("planned", f"{len(experiments)} experiments, {runs} runs", runs)
