"""Config validation: JSON schema with defaults, then cross-field checks, one-line errors.

Errors name the offending key (``experiments.demo.prune.fraction``) so a bad value is fixed
before any job starts. Snakemake's ``common.smk`` and ``lmcpipe check-config`` both call
``validate``.
"""

from __future__ import annotations

import copy
import itertools
import math
import re
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from lmcpipe.data.registry import DATASETS
from lmcpipe.hparams import Experiment, experiment_from_config
from lmcpipe.models import NAMES as MODELS

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
    return yaml.safe_load(yaml.safe_dump(value))


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


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


def _to_iterations(exp: dict[str, Any]) -> None:
    """Rewrite every step-valued key of an experiment in iterations (in place)."""
    per_epoch = math.ceil(DATASETS[exp["dataset"]].train_size / exp["train"]["batch_size"])
    for section, key in STEP_KEYS:
        value = exp[section][key]
        if isinstance(value, list):
            exp[section][key] = sorted({iterations(v, per_epoch) for v in value})
        else:
            exp[section][key] = iterations(value, per_epoch)


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
        sweeps[name] = {}
        for combo in itertools.product(*grid.values()):
            values = dict(zip(grid, combo, strict=True))
            member = copy.deepcopy(exp)
            member["train"].update(values)
            member_key = member_name(name, values)
            if member_key in config["experiments"] or member_key in expanded:
                raise ConfigError(f"config key experiments.{name}.sweep: member {member_key} "
                                  "clashes with another experiment")
            expanded[member_key] = member
            sweeps[name][member_key] = values
    config["experiments"] = expanded
    return sweeps


def _schema_check(validator, config: dict[str, Any], note: str = "") -> None:
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        message = e.message
        if e.validator == "pattern" and "description" in e.schema:  # say the rule, not a regex
            message = f"{e.instance!r} is not allowed: {e.schema['description'].strip()}"
        raise ConfigError(f"config key {_key(e.absolute_path)}: {message}{note}")


def _name_rule(schema: dict[str, Any]) -> tuple[re.Pattern, str]:
    """The pattern every experiment name matches (``$defs/name``) and its wording."""
    name = schema["$defs"]["name"]
    return re.compile(name["pattern"]), name["description"].strip()


def validate(config: dict[str, Any], schema_path: str | Path = SCHEMA) -> dict[str, Experiment]:
    """Fill defaults into ``config`` in place, check it, and return its experiments (sweeps
    expanded into their members; see ``validate_with_sweeps``)."""
    return validate_with_sweeps(config, schema_path)[0]


def validate_with_sweeps(config: dict[str, Any], schema_path: str | Path = SCHEMA
                         ) -> tuple[dict[str, Experiment], dict[str, dict[str, dict[str, Any]]]]:
    """``validate``, and the sweeps: {sweep: {member experiment: {train key: value}}}."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = _with_defaults(jsonschema.Draft202012Validator)(schema)
    _schema_check(validator, config)
    sweeps = _expand_sweeps(config)
    pattern, rule = _name_rule(schema)
    for sweep, members in sweeps.items():  # names made of swept values: checked like others
        for member in members:
            if not pattern.match(member):
                raise ConfigError(f"config key experiments.{sweep}.sweep: member name "
                                  f"{member!r} is not allowed: {rule}")
    if sweeps:  # the swept values themselves
        _schema_check(validator, config, " (a value of a sweep)")
    experiments = {}
    data_root = config["data_root"]
    for name in config["experiments"]:
        # YAML anchors share dicts between experiments: give each its own before converting
        exp = config["experiments"][name] = copy.deepcopy(config["experiments"][name])
        where = f"experiments.{name}"
        if exp["model"] not in MODELS:
            raise ConfigError(f"config key {where}.model: unknown network '{exp['model']}'")
        if exp["dataset"] not in DATASETS:
            raise ConfigError(f"config key {where}.dataset: unknown dataset '{exp['dataset']}'")
        _to_iterations(exp)
        steps = exp["train"]["steps"]
        if exp["train"]["image_size"] and DATASETS[exp["dataset"]].format != "imagefolder":
            raise ConfigError(f"config key {where}.train.image_size: only for image folders, "
                              f"not {exp['dataset']}")
        if steps < 1:
            raise ConfigError(f"config key {where}.train.steps: must be at least 1 iteration")
        for key, values in (("train.eval_steps", exp["train"]["eval_steps"]),
                            ("train.milestones", exp["train"]["milestones"]),
                            ("prune.rewind_steps", exp["prune"]["rewind_steps"]),
                            ("instability.fork_steps", exp["instability"]["fork_steps"])):
            limit = steps + 1 if key == "train.eval_steps" else steps
            late = [s for s in values if s >= limit]
            if late:
                raise ConfigError(f"config key {where}.{key}: {late[0]} is beyond "
                                  f"train.steps = {steps}")
        levels = exp["prune"]["levels"]
        late = [lvl for lvl in exp["prune"]["baseline_levels"] if lvl > levels]
        if late:
            raise ConfigError(f"config key {where}.prune.baseline_levels: level {late[0]} is "
                              f"beyond prune.levels = {levels}")
        for key in ("perturb_levels", "oneshot_levels"):
            late = [lvl for lvl in exp["analyses"][key] if lvl >= levels]
            if late:
                raise ConfigError(f"config key {where}.analyses.{key}: level {late[0]} has no "
                                  f"successor (prune.levels = {levels})")
        if levels < 1 and any(exp["analyses"][key] for key in (
                "successive", "rounds", "perturb_scales", "oneshot_steps")):
            raise ConfigError(f"config key {where}.analyses: needs prune.levels >= 1")
        experiments[name] = experiment_from_config(name, exp, data_root)
    config.setdefault("all", [n for n in experiments if not any(n in m for m in sweeps.values())]
                      + list(sweeps))
    for name in config["all"]:
        if name not in experiments and name not in sweeps:
            raise ConfigError(f"config key all: unknown experiment or sweep '{name}'")
    return experiments, sweeps
