"""Hostile lmcpipe configs: hypothesis strategies (``configs``, ``valid_config``).

Issue 21: a config is either refused before any job with one line naming the key, or valid and
planned (``tests/config_judge.py`` tells which). Shared by ``tests/test_config_fuzz.py`` (a short,
derandomized run in the suite) and ``scripts/fuzz_config.py`` (a long campaign), so both fuzz
with the same strategies. Valid configs are generated small, then mutated: wrong types, huge
and special numbers, odd strings and names, steps and levels out of range, odd sweeps, unknown
and missing keys.
"""

from __future__ import annotations

import math
from typing import Any

import yaml
from hypothesis import strategies as st

from lmcpipe import config as lconfig
from lmcpipe import data, models

SCHEMA = yaml.safe_load(lconfig.SCHEMA.read_text())
EXPERIMENT = SCHEMA["$defs"]["experiment"]["properties"]
# lmcpipe's own networks and datasets (a user's, named by import path, entry point or folder,
# are tested in tests/test_user_models.py and tests/test_user_data.py)
MODELS = list(models.NAMES)
DATASETS = list(data.DATASETS)
SECTIONS = [k for k, v in EXPERIMENT.items() if "properties" in v]  # train, prune, ...
SWEPT = EXPERIMENT["sweep"]["propertyNames"]["enum"]

# --- hostile values ----------------------------------------------------------------------------
SPECIAL_INTS = [0, -1, 1, 2, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**30,
                10**100]
SPECIAL_FLOATS = [1e308, -1e308, 5e-324, -0.0, 0.5, 1.0, 10.0, 1e-300, math.inf, -math.inf,
                  math.nan, 0.1 + 1e-17, 0.30000000000000004]
ODD_STRINGS = ["", " ", "3ep", "3 ep", "3EP", "-3ep", "3.5ep", "0ep", "0it", "1e3", "10\n",
               "3ep\n", "3it\n", "1" * 30 + "ep", "9" * 5000 + "it", "a;rm -rf /", "a/b", "..",
               ".", "-x", "'q'", '"q"', "ü", "日本", "\x00", "${HOME}", "{exp}", "*", "$(id)",
               "a\nb", "\t", "sgd ", "SGD", "mnist\n", "None", "null", "true", "٣ep"]
ODD_NAMES = ["a;b", "a/b", "a b", "'a'", '"a"', ".a", "-a", "ü", "日本", "", "a\n", "a\nb",
             "..", ".", "a*", "a$b", "{exp}", "a.b", "a-b", "_", "0", "x" * 300, "instability_x",
             "a\x00", "A", "tables", "figures", "report", "all"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.sampled_from(SPECIAL_INTS),
    st.floats(), st.sampled_from(SPECIAL_FLOATS), st.text(max_size=12),
    st.sampled_from(ODD_STRINGS))
keys = st.one_of(st.text(max_size=10), st.sampled_from(ODD_STRINGS), st.integers(-3, 3),
                 st.none(), st.booleans(), st.sampled_from(SECTIONS + SWEPT))
hostile_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=6)


# --- valid configs: the ground the mutations start from ----------------------------------------
def _per_epoch(dataset: str, batch_size: int) -> int:
    return math.ceil(data.DATASETS[dataset].train_size / batch_size)


def _spelled(draw, iters: int, per_epoch: int) -> int | str:
    """A step as an int, "<n>it", or "<n>ep" where it is a whole number of epochs."""
    forms = [iters, f"{iters}it"]
    if iters % per_epoch == 0:
        forms.append(f"{iters // per_epoch}ep")
    return draw(st.sampled_from(forms))


def _steps_before(draw, limit: int, per_epoch: int, max_size: int = 3) -> list[int | str]:
    """Distinct steps in [0, limit), spelled in any form."""
    iters = draw(st.lists(st.integers(0, max(limit - 1, 0)), max_size=max_size, unique=True))
    return [_spelled(draw, i, per_epoch) for i in iters]


@st.composite
def experiment(draw) -> dict[str, Any]:
    """A valid experiment: small enough that planning it takes milliseconds."""
    dataset = draw(st.sampled_from(DATASETS))
    batch = draw(st.sampled_from([1, 8, 60, 128, 1024, 60_000]))
    per_epoch = _per_epoch(dataset, batch)
    steps = draw(st.sampled_from([1, 2, 10, 100, per_epoch, 3 * per_epoch]))
    train = {"optimizer": draw(st.sampled_from(["sgd", "adam"])),
             "lr": draw(st.floats(1e-6, 10)), "batch_size": batch,
             "steps": _spelled(draw, steps, per_epoch)}
    optional = {
        "milestones": _steps_before(draw, steps, per_epoch),
        "eval_steps": _steps_before(draw, steps + 1, per_epoch),
        "warmup_steps": _spelled(draw, draw(st.integers(0, steps)), per_epoch),
        "momentum": draw(st.floats(0, 1)), "schedule": draw(st.sampled_from(["step", "linear"])),
        "checkpoint_every": draw(st.integers(0, 10**6)), "precision": "bf16",
        "image_size": draw(st.sampled_from([0, 64])) if dataset == "imagenet" else 0,
        "repel_lambda": draw(st.floats(-3, 3)), "bias_init": "zero",
    }
    train.update(draw(st.dictionaries(st.sampled_from(sorted(optional)), st.just(None),
                                      max_size=4)))
    train = {k: optional[k] if v is None else v for k, v in train.items()}
    levels = draw(st.integers(0, 3))
    exp: dict[str, Any] = {"model": draw(st.sampled_from(MODELS)), "dataset": dataset,
                           "train": train}
    below = st.lists(st.integers(0, max(levels - 1, 0)), max_size=2, unique=True)
    sections = {
        "prune": {"levels": levels, "fraction": draw(st.floats(0, 0.9)),
                  "rewind_steps": _steps_before(draw, steps, per_epoch, 2) or [0],
                  "baselines": draw(st.lists(st.sampled_from(["randprune", "reinit"]),
                                             unique=True)),
                  "baseline_pairs": draw(st.booleans()),
                  "baseline_levels": draw(st.lists(st.integers(1, max(levels, 1)), max_size=2,
                                                   unique=True)) if levels else []},
        "instability": {"fork_steps": _steps_before(draw, steps, per_epoch),
                        "control": draw(st.booleans()), "alphas": draw(st.integers(2, 12)),
                        "bn_mode": draw(st.sampled_from(["interpolate", "recompute"]))},
        "analyses": {"successive": bool(levels) and draw(st.booleans()),
                     "rounds": bool(levels) and draw(st.booleans()),
                     "curvature": draw(st.booleans()),
                     "perturb_scales": draw(st.lists(st.floats(0, 4), max_size=2, unique=True))
                     if levels else [],
                     "perturb_levels": draw(below) if levels else [],
                     "oneshot_steps": draw(st.integers(0, 2)) if levels else 0,
                     "oneshot_levels": draw(below) if levels else []},
        "replicates": {"inits": draw(st.lists(st.integers(0, 5), min_size=1, max_size=2,
                                              unique=True)),
                       "orders": draw(st.lists(st.integers(0, 5), min_size=1, max_size=2,
                                               unique=True))},
        "resources": {"gpu": draw(st.booleans()), "mem_mb": draw(st.integers(100, 10**5))},
    }
    for name in draw(st.lists(st.sampled_from(sorted(sections)), unique=True)):
        exp[name] = sections[name]
    if draw(st.integers(0, 4)) == 0:  # a sweep
        grid = {"batch_size": st.integers(1, 2048), "lr": st.floats(1e-4, 1),
                "momentum": st.floats(0, 1), "weight_decay": st.floats(0, 1e-2),
                "repel_lambda": st.floats(-2, 2), "warmup_steps": st.integers(0, 5)}
        keys_ = draw(st.lists(st.sampled_from(sorted(grid)), min_size=1, max_size=2, unique=True))
        exp["sweep"] = {k: draw(st.lists(grid[k], min_size=1, max_size=3, unique=True))
                        for k in keys_}
    return exp


name_chars = st.text("abcdefghijklmnopqrstuvwxyzABCZ0123456789_.-", min_size=1, max_size=12)
# and names that only clash with each other: figure imp of instability_x is imp_instability_x
valid_names = name_chars.filter(lambda n: n[0] not in ".-") | st.sampled_from(
    ["x", "instability_x", "k0_x", "a.b", "a-b", "A", "a"])


@st.composite
def valid_config(draw) -> dict[str, Any]:
    """A config the schema and the cross-field checks should mostly accept."""
    names = draw(st.lists(valid_names, min_size=1, max_size=3, unique=True))
    cfg: dict[str, Any] = {"experiments": {n: draw(experiment()) for n in names}}
    if draw(st.booleans()):
        cfg["all"] = draw(st.lists(st.sampled_from(names), unique=True))
    if draw(st.booleans()):
        cfg["data_root"] = draw(st.sampled_from(["data", "", "/tmp/x y", "./d", "日本"]))
    if draw(st.booleans()):
        cfg["cluster"] = {"gpu_flag": draw(st.sampled_from(["gpus", "gres"])),
                          "gpu_model": draw(st.sampled_from(["", "a100", "h100"]))}
    return cfg


# --- mutations: what makes a config hostile ----------------------------------------------------
def _schema_paths(schema: dict[str, Any], prefix: tuple = ()) -> list[tuple]:
    """Every key path the schema knows below ``schema`` (properties, recursively)."""
    out = []
    for key, sub in schema.get("properties", {}).items():
        out.append((*prefix, key))
        out += _schema_paths(sub, (*prefix, key))
    return out


TOP_PATHS = [p for p in _schema_paths(SCHEMA) if p[0] != "experiments"]
EXP_PATHS = _schema_paths(SCHEMA["$defs"]["experiment"])


def _numeric(path: tuple) -> bool:
    """Whether an experiment key takes a number, a step or a list of them."""
    node = EXPERIMENT[path[0]] if len(path) == 1 else EXPERIMENT[path[0]]["properties"][path[1]]
    items = node.get("items", {})
    return bool({node.get("type"), items.get("type")} & {"integer", "number"}) or "$ref" in node


NUMERIC = [p for p in EXP_PATHS if _numeric(p)]
STEP_PATHS = [("train", k) for k in ("steps", "milestones", "warmup_steps", "eval_steps",
                                     "checkpoint_every")] + [("prune", "rewind_steps"),
                                                             ("instability", "fork_steps")]
LEVEL_LISTS = [("prune", "baseline_levels"), ("analyses", "perturb_levels"),
               ("analyses", "oneshot_levels")]
HUGE = [1e308, 2**63, 2**63 - 1, 10**30, 2**31, 10**6, 10**12, -1, math.inf, math.nan, -0.0,
        "999999999999999999ep", "1" * 30 + "it", "100000000000ep"]


def _all_paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path into a config (dict keys and list indices), the root included."""
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _all_paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _all_paths(v, (*prefix, i))
    return out


def _set(cfg: Any, path: tuple, value: Any) -> Any:
    """``cfg`` with ``value`` at ``path`` (dicts created on the way; a non-container is
    replaced by a dict so the path exists)."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(cfg, list) and isinstance(head, int) and 0 <= head < len(cfg):
        cfg[head] = _set(cfg[head], rest, value)
        return cfg
    if not isinstance(cfg, dict):
        cfg = {}
    cfg[head] = _set(cfg.get(head), rest, value)
    return cfg


def _delete(cfg: Any, path: tuple) -> None:
    *parents, last = path
    for p in parents:
        cfg = cfg[p]
    del cfg[last]


@st.composite
def mutation(draw, cfg: dict[str, Any]) -> dict[str, Any]:
    """``cfg`` with one hostile change."""
    exps = cfg.get("experiments") if isinstance(cfg, dict) else None
    name = draw(st.sampled_from(sorted(exps, key=repr))) if isinstance(exps, dict) and exps \
        else "x"
    kind = draw(st.sampled_from(["value", "value", "huge", "odd", "steps", "levels", "name",
                                 "sweep", "unknown", "delete", "all", "analyses", "bool"]))
    if kind == "value":  # any hostile value at any known or existing key
        path = draw(st.sampled_from(TOP_PATHS + [("experiments", name, *p) for p in EXP_PATHS]
                                    + _all_paths(cfg)[1:] + [()]))
        return _set(cfg, path, draw(hostile_values))
    if kind == "huge":
        path = ("experiments", name, *draw(st.sampled_from(NUMERIC)))
        value = draw(st.sampled_from(HUGE))
        return _set(cfg, path, [0, value] if draw(st.booleans()) else value)
    if kind == "odd":  # special numbers and odd strings where numbers and steps go
        path = ("experiments", name, *draw(st.sampled_from(NUMERIC)))
        value = draw(st.sampled_from(SPECIAL_INTS + SPECIAL_FLOATS + ODD_STRINGS))
        return _set(cfg, path, [value] if draw(st.booleans()) else value)
    if kind == "bool":  # YAML's yes/no where a number goes (True is an int in Python)
        path = ("experiments", name, *draw(st.sampled_from(NUMERIC)))
        return _set(cfg, path, draw(st.sampled_from([True, False, [True], None, [None], [[1]]])))
    if kind == "steps":  # beyond T, in iterations or epochs
        path = ("experiments", name, *draw(st.sampled_from(STEP_PATHS)))
        late = draw(st.sampled_from([10**6, "3ep", "1000ep", "3", "3 ep", 2**40, "0ep", 0]))
        return _set(cfg, path, late if path[-1] in ("steps", "warmup_steps", "checkpoint_every")
                    else [0, late])
    if kind == "levels":
        path = ("experiments", name, *draw(st.sampled_from(LEVEL_LISTS + [("prune", "levels")])))
        value = draw(st.sampled_from([0, 1, 3, 7, 50, 101, 10**6]))
        return _set(cfg, path, value if path[-1] == "levels" else [value])
    if kind == "analyses":  # analyses on, pruning off (or the other way round)
        cfg = _set(cfg, ("experiments", name, "prune", "levels"), draw(st.sampled_from([0, 2])))
        key = draw(st.sampled_from(["successive", "rounds", "curvature", "perturb_scales",
                                    "oneshot_steps"]))
        value = {"perturb_scales": [0.1, 0.1000000001], "oneshot_steps": draw(
            st.sampled_from([1, 10**4, 10**9]))}.get(key, True)
        return _set(cfg, ("experiments", name, "analyses", key), value)
    if kind == "name":
        new = draw(st.sampled_from(ODD_NAMES) | st.text(max_size=8))
        if isinstance(exps, dict) and name in exps:
            exps[new] = exps.pop(name)
        return cfg
    if kind == "sweep":
        grid = draw(st.dictionaries(st.sampled_from(SWEPT) | keys,
                                    st.lists(hostile_values | st.floats(), max_size=4)
                                    | hostile_values, max_size=3))
        if draw(st.integers(0, 3)) == 0:  # a combinatorial explosion
            grid = {k: list(range(1, 60)) for k in SWEPT}
        return _set(cfg, ("experiments", name, "sweep"), grid)
    if kind == "unknown":
        path = draw(st.sampled_from(_all_paths(cfg)))
        return _set(cfg, (*path, draw(keys)), draw(hostile_values))
    if kind == "delete":
        paths_ = _all_paths(cfg)[1:]
        if paths_:
            _delete(cfg, draw(st.sampled_from(paths_)))
        return cfg
    # all: odd or unknown names, duplicates, a sweep's member
    names = list(exps) if isinstance(exps, dict) else []
    return _set(cfg, ("all",), draw(st.lists(st.sampled_from(names + ODD_NAMES + [None, 1]),
                                             max_size=4)))


@st.composite
def hostile_config(draw) -> Any:
    """A valid config with one to three hostile changes (or, rarely, no config at all)."""
    if draw(st.integers(0, 50)) == 0:
        return draw(hostile_values)
    cfg = draw(valid_config())
    for _ in range(draw(st.integers(1, 3))):
        cfg = draw(mutation(cfg))
    return cfg


configs = st.one_of(valid_config(), hostile_config(), hostile_config())
