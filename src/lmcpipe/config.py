"""Config validation: JSON schema with defaults, then cross-field checks, one-line errors.

Errors name the offending key (``experiments.demo.prune.fraction``) so a bad value is fixed
before any job starts. Snakemake's ``common.smk`` and ``lmcpipe check-config`` both call
``validate``. What YAML can hold but no schema keyword refuses cleanly (keys that are not
strings, NaN, integers beyond 64 bits, a node inside itself) is refused first; limits keep a
plan finite (``MAX_*``: iterations, sweep members, runs). scripts/fuzz_config.py fuzzes all of it.
"""

from __future__ import annotations

import copy
import functools
import itertools
import math
import re
import reprlib
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from lmcpipe import config_inputs as inputs
from lmcpipe import paths
from lmcpipe.config_inputs import Refused as _Refused
from lmcpipe.costs import cluster_numbers
from lmcpipe.data.registry import DATASETS
from lmcpipe.figures.registry import FIGURES
from lmcpipe.hparams import Experiment, experiment_from_config

# The schema ships inside the package (package data), so an installed lmcpipe validates configs
# too; workflow/schemas/config.schema.yaml, where Snakemake workflows keep theirs, links to it.
SCHEMA = Path(str(resources.files("lmcpipe") / "config.schema.yaml"))


class ConfigError(ValueError):
    """A config value is invalid; the message starts with the key."""


def _with_defaults(cls):
    validate_properties = cls.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = _copy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(cls, {"properties": set_defaults})


def _copy(value: Any) -> Any:
    """A default of its own for each config it fills (defaults come from YAML: plain data)."""
    return copy.deepcopy(value)


def dotted(path) -> str:
    """A place in the config as the messages name it: ``experiments.demo.train.lr``. A key
    that is not a printable word (a space, a newline, empty) is quoted, so a message stays one
    line and says exactly which key."""
    parts = [p if isinstance(p, str) and p.isprintable() and p and " " not in p else
             str(p) if isinstance(p, int) and not isinstance(p, bool) else repr(p) for p in path]
    return ".".join(parts) or "<top level>"


# Integers are stored as 64-bit integers by torch, numpy and most JSON readers; Python's own
# would carry 10**30 through the schema into a job that then fails.
INT64 = range(-(2**63), 2**63)


def _plain_values(config: Any) -> None:
    """Refuse what a YAML file can hold but a config must not, before the schema sees it: keys
    that are not strings (YAML reads ``1:``, ``on:``, ``null:`` as a number, bool and None),
    integers beyond 64 bits, NaN and infinities (``.nan``, ``.inf``: they pass every
    ``minimum``), and a node inside itself (a YAML alias within its own anchor)."""
    stack: list[tuple[tuple, Any, bool]] = [((), config, False)]
    inside: set[int] = set()  # containers on the path from the root to the current node
    while stack:
        path, node, leaving = stack.pop()
        if leaving:
            inside.discard(id(node))
            continue
        where = f"config key {dotted(path)}:"
        if isinstance(node, dict | list):
            if id(node) in inside:
                raise ConfigError(f"{where} contains itself (a YAML alias inside its anchor)")
            inside.add(id(node))
            stack.append((path, node, True))
            items = list(node.items() if isinstance(node, dict) else enumerate(node))
            if isinstance(node, dict):
                for key, _ in items:
                    if not isinstance(key, str):
                        raise ConfigError(f"{where} key {key!r} is not a string (YAML reads "
                                          "unquoted numbers, yes/no/on/off and null as such; "
                                          "quote it)")
            stack += [((*path, key), value, False) for key, value in reversed(items)]
        elif isinstance(node, int) and not isinstance(node, bool) and node not in INT64:
            text = str(node) if node.bit_length() < 1000 else f"{node.bit_length()}-bit integer"
            raise ConfigError(f"{where} {text} is beyond the 64-bit integer range")
        elif isinstance(node, float) and not math.isfinite(node):
            raise ConfigError(f"{where} {node!r} is not a finite number")


STEP_KEYS = (
    ("train", "steps"), ("train", "milestones"), ("train", "warmup_steps"),
    ("train", "eval_steps"), ("train", "checkpoint_every"),
    ("prune", "rewind_steps"), ("instability", "fork_steps"),
)


def iterations(value: int | str, per_epoch: int) -> int:
    """A step given as an integer, "<n>it" or "<n>ep", in iterations."""
    if isinstance(value, int):
        return value
    if value.endswith("ep"):
        return int(value[:-2]) * per_epoch
    return int(value.removesuffix("it"))


# Limits that keep a plan finite and a job meaningful; each message says which was passed.
MAX_STEPS = 10**9  # iterations: ~4700 times paper A's longest run (Inception-v3, 214k)
MAX_SWEEP = 1000  # members of one sweep, each an experiment of its own
MAX_RUNS = 100_000  # trained runs of one experiment (shipped: at most 7452, vgg16)
MAX_RUNS_IN_ALL = 1_000_000  # of the whole config (shipped config.yaml: 39588)


def _to_iterations(exp: dict[str, Any]) -> None:
    """Rewrite every step-valued key of an experiment in iterations (in place)."""
    per_epoch = math.ceil(DATASETS[exp["dataset"]].train_size / exp["train"]["batch_size"])
    for section, key in STEP_KEYS:
        value = exp[section][key]
        if isinstance(value, list):
            exp[section][key] = sorted({iterations(v, per_epoch) for v in value})
            largest = max(exp[section][key], default=0)
        else:
            exp[section][key] = largest = iterations(value, per_epoch)
        if largest > MAX_STEPS:
            raise _Refused(f"{section}.{key}", f"{largest:,} iterations is more than the "
                           f"{MAX_STEPS:,} lmcpipe trains")


SWEEP_SHORT = {"batch_size": "bs", "warmup_steps": "wu", "lr": "lr", "weight_decay": "wd",
               "momentum": "mom", "repel_lambda": "rl"}


def member_name(sweep: str, values: dict[str, Any]) -> str:
    """Experiment name of one sweep combination, e.g. ``paperb_bs512_wu10ep``."""
    parts = [f"{SWEEP_SHORT[k]}{str(v).replace('-', 'm').replace('.', 'p')}"
             for k, v in values.items()]
    return "_".join([sweep, *parts])


def _expand_sweeps(config: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """Replace each experiment with a ``sweep`` by one experiment per combination (in place).

    Returns {sweep name: {member name: {train key: value}}} in the config's order.
    """
    sweeps: dict[str, dict[str, dict[str, Any]]] = {}
    expanded: dict[str, Any] = {}
    for name, exp in config["experiments"].items():
        grid = exp.pop("sweep", {}) if isinstance(exp, dict) else {}
        if not grid:
            expanded[name] = exp
            continue
        size = math.prod(len(values) for values in grid.values())
        if size > MAX_SWEEP:  # before expanding: 6 keys of 60 values are 4.7e10 experiments
            raise ConfigError(f"config key {dotted(('experiments', name, 'sweep'))}: {size:,} "
                              f"combinations, more than the {MAX_SWEEP} experiments a sweep "
                              "may have")
        sweeps[name] = {}
        for combo in itertools.product(*grid.values()):
            values = dict(zip(grid, combo, strict=True))
            member = copy.deepcopy(exp)
            member["train"].update(values)
            member_key = member_name(name, values)
            if member_key in config["experiments"] or member_key in expanded:
                raise ConfigError(f"config key experiments.{name}.sweep: member {member_key!r} "
                                  "clashes with another experiment")
            expanded[member_key] = member
            sweeps[name][member_key] = values
    config["experiments"] = expanded
    return sweeps


def _schema_check(validator, config: dict[str, Any], note: str = "") -> None:
    # the first error in the config's own order; a path's keys are all strings or all list
    # indices at each depth (``_plain_values`` refused other keys), never compared with each other
    errors = sorted(validator.iter_errors(config),
                    key=lambda e: [(isinstance(p, str), p) for p in e.absolute_path])
    if errors:
        e = errors[0]
        message = e.message
        rule = e.schema.get("description", "").strip() if isinstance(e.schema, dict) else ""
        if e.validator in ("pattern", "maxLength", "oneOf") and rule:  # the rule, not a regex
            message = f"{reprlib.repr(e.instance)} is not allowed: {rule}"
        elif len(message) > 200:  # a long value shown in full hides what is wrong with it
            message = message.replace(repr(e.instance), reprlib.repr(e.instance))
        raise ConfigError(f"config key {dotted(e.absolute_path)}: {message}{note}")


def _name_rule(schema: dict[str, Any]) -> tuple[re.Pattern, int, str]:
    """The pattern every experiment name matches (``$defs/name``), its length limit, and
    their wording."""
    name = schema["$defs"]["name"]
    return re.compile(name["pattern"]), name["maxLength"], name["description"].strip()


@functools.lru_cache(maxsize=8)
def _validator(schema_path: str, mtime_ns: int) -> tuple[Any, dict[str, Any]]:
    """The schema and a validator that fills its defaults in, and whose ``integer`` is an int:
    jsonschema's takes 10.0 and 1e308 too, which ``range(levels)`` or a tensor's shape would
    then refuse. Cached per file version: a fuzzer validates thousands of configs."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    integers = jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda checker, value: isinstance(value, int) and not isinstance(value, bool))
    cls = jsonschema.validators.extend(jsonschema.Draft202012Validator, type_checker=integers)
    return _with_defaults(cls)(schema), schema


def validate(config: dict[str, Any], schema_path: str | Path = SCHEMA) -> dict[str, Experiment]:
    """Fill defaults into ``config`` in place, check it, and return its experiments (sweeps
    expanded into their members; see ``validate_with_sweeps``)."""
    return validate_with_sweeps(config, schema_path)[0]


def validate_with_sweeps(config: dict[str, Any], schema_path: str | Path = SCHEMA
                         ) -> tuple[dict[str, Experiment], dict[str, dict[str, dict[str, Any]]]]:
    """``validate``, and the sweeps: {sweep: {member experiment: {train key: value}}}."""
    validator, schema = _validator(str(schema_path), Path(schema_path).stat().st_mtime_ns)
    cluster_numbers(config)
    _plain_values(config)
    _schema_check(validator, config)
    sweeps = _expand_sweeps(config)
    pattern, longest, rule = _name_rule(schema)
    for sweep, members in sweeps.items():  # names made of swept values: checked like others
        for member in members:
            if not pattern.match(member) or len(member) > longest:
                raise ConfigError(f"config key experiments.{sweep}.sweep: member name "
                                  f"{member!r} is not allowed: {rule}")
    if sweeps:  # the swept values themselves
        _schema_check(validator, config, " (a value of a sweep)")
    experiments = {}
    data_root = config["data_root"]
    total = 0
    for name in config["experiments"]:
        # YAML anchors share dicts between experiments: give each its own before converting
        exp = config["experiments"][name] = copy.deepcopy(config["experiments"][name])
        try:
            _check_experiment(exp, data_root)
            experiments[name] = experiment_from_config(name, exp, data_root)
            runs = planned_runs(experiments[name])
            if runs > MAX_RUNS:
                raise _Refused("", f"{runs:,} training runs, more than the {MAX_RUNS:,} of one "
                               "experiment lmcpipe plans (fewer replicates, steps k, levels or "
                               "probes)")
        except _Refused as e:
            raise ConfigError(_refusal(name, e, sweeps)) from None
        total += runs
    _figure_files(experiments, sweeps)
    if total > MAX_RUNS_IN_ALL:
        raise ConfigError(f"config key experiments: {total:,} training runs in all, more than "
                          f"the {MAX_RUNS_IN_ALL:,} lmcpipe plans")
    config.setdefault("all", [n for n in experiments if not any(n in m for m in sweeps.values())]
                      + list(sweeps))
    for name in config["all"]:
        if name not in experiments and name not in sweeps:
            raise ConfigError(f"config key all: unknown experiment or sweep {name!r}")
    return experiments, sweeps


def _figure_files(experiments: dict[str, Experiment],
                  sweeps: dict[str, dict[str, dict[str, Any]]]) -> None:
    """Refuse two names whose figure files would be one file: ``<figure>_<name>.pdf`` of figure
    imp and experiment instability_x is figure imp_instability of experiment x too, and
    Snakemake would silently draw only one of the two into it."""
    sweep_of = {member: sweep for sweep, members in sweeps.items() for member in members}
    owner: dict[str, tuple[str, str]] = {}
    for name in [*experiments, *sweeps]:
        for figure in FIGURES:
            stem = f"{figure}_{name}"
            first = owner.setdefault(stem, (figure, name))
            if first != (figure, name):
                key = f"experiments.{sweep_of[name]}.sweep" if name in sweep_of else \
                    f"experiments.{name}"
                raise ConfigError(f"config key {key}: figure {stem}.pdf would be both {figure} "
                                  f"of {name} and {first[0]} of {first[1]}; rename one of them")


def _refusal(name: str, refused: _Refused, sweeps: dict[str, dict[str, dict[str, Any]]]) -> str:
    """The one-line message of a failed experiment check, naming the key as the config has it:
    a sweep member's keys are its sweep's (a swept one ``sweep.<key>``), the member said after."""
    for sweep, members in sweeps.items():
        if name in members:
            swept = refused.key.removeprefix("train.")
            key = f"sweep.{swept}" if swept in members[name] else refused.key
            where = ".".join(filter(None, (f"experiments.{sweep}", key)))
            return f"config key {where}: {refused.message} (sweep member {name})"
    return f"config key {'.'.join(filter(None, (f'experiments.{name}', refused.key)))}: " \
        f"{refused.message}"


def _check_experiment(exp: dict[str, Any], data_root: str) -> None:
    """The cross-field checks of one experiment (defaults filled in); its steps become
    iterations. Raises _Refused naming the key."""
    dataset = inputs.dataset(exp, data_root)
    inputs.network(exp, dataset)
    train = exp["train"]
    if train["batch_size"] > dataset.train_size:
        raise _Refused("train.batch_size", f"{train['batch_size']} is more than the "
                       f"{dataset.train_size} training examples of {exp['dataset']} (a batch "
                       "holds each at most once)")
    micro = train["micro_batch"]
    if micro and train["batch_size"] % micro:
        raise _Refused("train.micro_batch", f"{micro} does not divide train.batch_size = "
                       f"{train['batch_size']} (use a divisor of it, or 0 to let lmcpipe choose)")
    _to_iterations(exp)
    steps = train["steps"]
    if train["image_size"] and not dataset.image_folder:
        raise _Refused("train.image_size", f"only for image folders, not {exp['dataset']}")
    if steps < 1:
        raise _Refused("train.steps", "must be at least 1 iteration")
    for key, values in (("train.eval_steps", train["eval_steps"]),
                        ("train.milestones", train["milestones"]),
                        ("prune.rewind_steps", exp["prune"]["rewind_steps"]),
                        ("instability.fork_steps", exp["instability"]["fork_steps"])):
        limit = steps + 1 if key == "train.eval_steps" else steps
        late = [s for s in values if s >= limit]
        if late:
            raise _Refused(key, f"{late[0]} is beyond train.steps = {steps}")
    levels = exp["prune"]["levels"]
    late = [lvl for lvl in exp["prune"]["baseline_levels"] if lvl > levels]
    if late:
        raise _Refused("prune.baseline_levels", f"level {late[0]} is beyond prune.levels = "
                       f"{levels}")
    analyses = exp["analyses"]
    for key in ("perturb_levels", "oneshot_levels"):
        late = [lvl for lvl in analyses[key] if lvl >= levels]
        if late:
            raise _Refused(f"analyses.{key}", f"level {late[0]} has no successor "
                           f"(prune.levels = {levels})")
    if levels < 1 and any(analyses[key] for key in (
            "successive", "rounds", "perturb_scales", "oneshot_steps")):
        raise _Refused("analyses", "needs prune.levels >= 1")
    arms: dict[str, float] = {}
    for scale in analyses["perturb_scales"]:  # the arm names a probe's directory
        clash = arms.setdefault(paths.perturb_arm(scale), scale)
        if clash != scale:
            raise _Refused("analyses.perturb_scales", f"{scale!r} and {clash!r} are one probe, "
                           f"{paths.perturb_arm(scale)} (its name keeps 6 significant digits)")


def planned_runs(exp: Experiment) -> int:
    """How many runs ``lmcpipe.plan`` trains for an experiment (``plan.runs`` and both kinds of
    ``plan.probes``), counted without listing them: a config asking for 10**12 is refused in
    microseconds. tests/test_config_fuzz.py checks the count against the plan's lists."""
    p, a = exp.prune, exp.analyses
    orders, rewinds = len(exp.orders), len(p.rewind_steps)
    dense_ks = len(set(exp.fork_steps) | set(p.rewind_steps))
    restart_ks = len(set(exp.fork_steps) - {0}) if exp.control else 0
    with_baselines = sum(p.has_baselines(n) for n in range(1, p.levels + 1))
    per_rewind = p.levels * 2 * orders + with_baselines * len(p.baselines) * orders * (
        2 if p.baseline_pairs else 1)
    runs = len(exp.inits) * ((dense_ks + restart_ks) * 2 * orders + rewinds * per_rewind)
    per_chain = (len(a.levels(a.perturb_levels, p.levels)) * len(a.perturb_scales)
                 + len(a.levels(a.oneshot_levels, p.levels)) * len(a.oneshot_methods)
                 * a.oneshot_steps)
    return runs + len(exp.inits) * rewinds * per_chain
