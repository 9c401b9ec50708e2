"""Hyperparameters as frozen dataclasses.

The validated config (see ``workflow/schemas/config.schema.yaml``) is turned into these objects.
Each stage receives only the dataclass it depends on, serialised as JSON, so that Snakemake's
params trigger reruns exactly the jobs whose hyperparameters changed.

A JSON flag is checked against the annotations of what it holds when the stage's arguments are
parsed (``JsonFlag``, ``conform``), before any data is read: a missing or unknown key or a value of
the wrong type is refused in one line naming the flag and the key, instead of a traceback from
deep inside training (or, for an unknown key, silently training without it).
"""

from __future__ import annotations

import argparse
import difflib
import json
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from typing import Any, get_args, get_origin, get_type_hints, is_typeddict

from lmcpipe.errors import InputError

# Field metadata of a field added to a dataclass after results trained under it existed:
# ``to_json`` leaves it out while it holds its default. A job's params are ``to_json`` of its
# hyperparameters, and Snakemake reruns a job whose params changed, so a new field written out
# at its default would rerun every finished job although nothing it computes changed.
ADDED_LATER = "lmcpipe_added_later"
# How a training step runs (resources.compile; lmcpipe.training.step): a resource, not an
# hyperparameter, as it changes float rounding only
COMPILE_MODES = ("none", "default", "reduce-overhead")


def add_compile_argument(p: argparse.ArgumentParser) -> None:
    """``--compile`` of the training stages (``lmcpipe train``, ``lmcpipe cohort``)."""
    p.add_argument("--compile", choices=COMPILE_MODES, default="none",
                   help="run the training step eagerly or compiled whole (resources.compile)")


@dataclass(frozen=True)
class TrainHParams:
    """Everything that determines a training run apart from its seeds, start point and mask."""

    model: str
    dataset: str
    data_root: str
    optimizer: str
    lr: float
    batch_size: int
    steps: int
    momentum: float = 0.0
    weight_decay: float = 0.0
    schedule: str = "step"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    final_lr: float = 0.0
    warmup_steps: int = 0
    eval_steps: tuple[int, ...] = ()
    eval_train_examples: int = 0
    checkpoint_every: int = 0
    precision: str = "fp32"
    channels_last: bool = False
    image_size: int = 0
    repel_lambda: float = 0.0
    bias_init: str = "uniform"
    # examples per forward/backward; 0: the whole batch when it fits the device, else the largest
    # divisor that does (lmcpipe.memory). Added after results existed: see ``ADDED_LATER``.
    micro_batch: int = field(default=0, metadata={ADDED_LATER: True})
    # lmcpipe's seeded init, or "own": the network's own, seeded (lmcpipe.models.MODEL_INITS)
    model_init: str = field(default="lmcpipe", metadata={ADDED_LATER: True})
    # the batch augmentation (lmcpipe.augment.AUGMENTATIONS); "": the dataset's own
    augment: str = field(default="", metadata={ADDED_LATER: True})

    def lr_at(self, step: int) -> float:
        """Learning rate of iteration ``step`` (0-based): the schedule times open_lth's linear
        warmup factor min(1, step / warmup_steps) (0 at step 0, 1 from ``warmup_steps`` on).

        ``step``: multiply by ``gamma`` at each milestone; ``linear``: decay linearly from ``lr``
        to ``final_lr`` at ``steps`` (Inception-v3 in paper A).
        """
        if self.schedule == "linear":
            lr = self.lr + (self.final_lr - self.lr) * step / self.steps
        else:
            lr = self.lr * self.gamma ** sum(step >= m for m in self.milestones)
        if self.warmup_steps and step < self.warmup_steps:
            lr *= step / self.warmup_steps
        return lr


# prune.counting -> what a density is a fraction of (the ``density_of`` column of the tables)
DENSITY_OF = {"open_lth": "all_weights", "prunable": "prunable_weights"}


@dataclass(frozen=True)
class PruneHParams:
    """Iterative magnitude pruning: fraction of the remaining weights removed per level, counted
    over the set ``counting`` names (``lmcpipe.masks.magnitude_prune``)."""

    fraction: float = 0.2
    counting: str = "open_lth"
    levels: int = 0
    rewind_steps: tuple[int, ...] = (0,)
    baselines: tuple[str, ...] = ("randprune", "reinit")
    baseline_pairs: bool = True
    baseline_levels: tuple[int, ...] = ()

    def has_baselines(self, level: int) -> bool:
        """Whether level ``level`` trains the baselines: every level when ``baseline_levels`` is
        empty, else the levels it names (paper A's Figs 6/7 and Table 2 need only the deepest)."""
        return bool(self.baselines) and (not self.baseline_levels or level in self.baseline_levels)


@dataclass(frozen=True)
class InterpHParams:
    """Linear interpolation between the two copies of a pair."""

    alphas: int = 30
    threshold: float = 0.02
    bn_mode: str = "interpolate"
    bn_batches: int = 20


@dataclass(frozen=True)
class AnalysisHParams:
    """Papers B and C analyses of the IMP chains (all off by default)."""

    successive: bool = False
    rounds: bool = False
    histogram_bins: int = 60
    curvature: bool = False
    curvature_examples: int = 1000
    lanczos_iters: int = 30
    trace_samples: int = 20
    matching_tolerance: float = 0.002
    perturb_scales: tuple[float, ...] = ()
    perturb_levels: tuple[int, ...] = ()
    oneshot_steps: int = 0
    oneshot_levels: tuple[int, ...] = ()
    oneshot_methods: tuple[str, ...] = ("magnitude", "random")

    def levels(self, which: tuple[int, ...], chain_levels: int) -> list[int]:
        """Levels L (with a successor L + 1) a probe runs from: ``which``, or all when empty."""
        return sorted(which) if which else list(range(chain_levels))


@dataclass(frozen=True)
class Experiment:
    """One named experiment of ``config.yaml``."""

    name: str
    train: TrainHParams
    prune: PruneHParams
    interp: InterpHParams
    inits: tuple[int, ...]
    orders: tuple[int, ...]
    fork_steps: tuple[int, ...]
    threads: int = 1
    control: bool = False
    analyses: AnalysisHParams = AnalysisHParams()

    @property
    def chain_order(self) -> int:
        """The data order of the IMP chain (its retrain runs are copy 1 of this order's pairs)."""
        return self.orders[0]


def _coerce(cls: type, values: dict[str, Any]) -> Any:
    kwargs = {}
    for f in fields(cls):
        if f.name in values:
            v = values[f.name]
            kwargs[f.name] = tuple(v) if isinstance(v, list) else v
    return cls(**kwargs)


def experiment_from_config(name: str, exp: dict[str, Any], data_root: str) -> Experiment:
    """Build an Experiment from one validated (defaults filled) config entry."""
    train = _coerce(
        TrainHParams,
        {**exp["train"], "model": exp["model"], "dataset": exp["dataset"], "data_root": data_root,
         "model_init": exp.get("model_init", "lmcpipe")},
    )
    return Experiment(
        name=name,
        train=train,
        prune=_coerce(PruneHParams, exp["prune"]),
        interp=_coerce(InterpHParams, exp["instability"]),
        inits=tuple(exp["replicates"]["inits"]),
        orders=tuple(exp["replicates"]["orders"]),
        fork_steps=tuple(exp["instability"]["fork_steps"]),
        threads=exp.get("threads", 1),
        control=exp["instability"].get("control", False),
        analyses=_coerce(AnalysisHParams, exp.get("analyses", {})),
    )


def _plain(value: Any) -> Any:
    """``dataclasses.asdict``, less each ``ADDED_LATER`` field that holds its default (at any
    depth: an Experiment holds its TrainHParams), so adding such a field leaves every earlier
    JSON byte for byte as it was. Decoding (``conform``) fills the field's default back in."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)
                if not (f.metadata.get(ADDED_LATER) and getattr(value, f.name) == f.default)}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def to_json(hp: Any) -> str:
    """Canonical JSON of a dataclass (sorted keys, so equal values give equal strings); fields
    added later are left out at their default (``ADDED_LATER``)."""
    return json.dumps(_plain(hp), sort_keys=True, separators=(",", ":"))


# --- JSON flags: decoded JSON checked against an annotation -----------------------------------
_SCALARS = {  # annotation -> (accepts, what it is called in a message); bool is not a number
    bool: (lambda v: isinstance(v, bool), "true or false"),
    int: (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    float: (lambda v: isinstance(v, int | float) and not isinstance(v, bool), "a number"),
    str: (lambda v: isinstance(v, str), "a string"),
}


def _at(path: tuple[str | int, ...]) -> str:
    """Where in the JSON: ``key 'lr'``, ``key 'train.lr'``, ``item 0, key 'model_out'``."""
    parts: list[str] = []
    keys: list[str] = []
    for p in path:
        if isinstance(p, int):
            parts += [f"key '{'.'.join(keys)}'"] if keys else []
            parts.append(f"item {p}")
            keys = []
        else:
            keys.append(p)
    return ", ".join(parts + ([f"key '{'.'.join(keys)}'"] if keys else []))


def _wrong(path: tuple[str | int, ...], expected: str, value: Any) -> InputError:
    got = {str: f"the string {json.dumps(value)}", list: "a list", dict: "an object"}.get(
        type(value), json.dumps(value))
    return InputError(f"{_at(path) + ': ' if path else ''}expected {expected}, got {got}")


def _object(value: Any, kind: type, path: tuple[str | int, ...]) -> Any:
    """A dataclass (or a TypedDict, returned as a dict) from a JSON object with its keys."""
    if not isinstance(value, dict):
        raise _wrong(path, f"an object ({kind.__name__})", value)
    hints = get_type_hints(kind)
    if is_typeddict(kind):
        required = set(kind.__required_keys__)
    else:
        hints = {f.name: hints[f.name] for f in fields(kind)}
        required = {f.name for f in fields(kind)
                    if f.default is MISSING and f.default_factory is MISSING}
    where = f"{_at(path)}: " if path else ""
    for key in value:
        if key not in hints:
            near = difflib.get_close_matches(key, hints, n=1, cutoff=0.5)
            hint = f"did you mean '{near[0]}'?" if near else f"{kind.__name__} has no such key"
            raise InputError(f"{where}unknown key '{key}' ({hint})")
    missing = [f"'{key}'" for key in hints if key in required and key not in value]
    if missing:
        raise InputError(f"{where}missing key{'s' if len(missing) > 1 else ''} "
                         + ", ".join(missing))
    checked = {key: conform(v, hints[key], (*path, key)) for key, v in value.items()}
    return checked if is_typeddict(kind) else kind(**checked)


def conform(value: Any, kind: Any, path: tuple[str | int, ...] = ()) -> Any:
    """``value`` (decoded JSON) checked against the annotation ``kind``; InputError naming the key
    where it differs.

    ``kind``: a dataclass (every required field present, no other key, nested dataclasses checked
    too), a TypedDict (the same, returned as a dict), ``int``, ``float`` (an int is fine),
    ``str``, ``bool``, ``tuple[T, ...]`` (a list, returned as a tuple), ``list[T]``,
    ``dict[str, T]`` or ``Any``. Values are kept as JSON gave them (an int where a float is
    declared stays an int), so a valid JSON builds exactly what it built before checking.
    """
    origin, args = get_origin(kind), get_args(kind)
    if kind is Any:
        return value
    if is_dataclass(kind) or is_typeddict(kind):
        return _object(value, kind, path)
    if origin in (tuple, list):
        if not isinstance(value, list):
            raise _wrong(path, "a list", value)
        items = [conform(v, args[0], (*path, i)) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise _wrong(path, "an object", value)
        return {k: conform(v, args[1], (*path, k)) for k, v in value.items()}
    if kind not in _SCALARS:
        raise TypeError(f"conform: unsupported annotation {kind!r}")  # a bug, not a user's error
    accepts, name = _SCALARS[kind]
    if not accepts(value):
        raise _wrong(path, name, value)
    return value


def from_json(kind: Any, text: str) -> Any:
    """``text`` as ``kind`` (a dataclass such as TrainHParams, or any annotation ``conform``
    takes); InputError when it is not JSON or does not match."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"not valid JSON ({e})") from None
    return conform(value, kind)


class JsonFlag(argparse.Action):
    """A flag holding JSON, checked while the arguments are parsed, so a bad value stops the
    stage before it reads any data: ``p.add_argument("--hparams", action=JsonFlag,
    schema=TrainHParams)`` stores a TrainHParams (``schema``: any annotation ``conform`` takes).

    A malformed or mismatching value is argparse's error ("argument --hparams: key 'lr': ..."),
    which ``lmcpipe.cli`` prints as one line. Only ``InputError`` is turned into it: anything
    else raised while checking is a bug and keeps its traceback (argparse's ``type=`` would turn
    any TypeError or ValueError into "invalid value").
    """

    def __init__(self, option_strings: list[str], dest: str, schema: Any, **kwargs: Any) -> None:
        kwargs.setdefault("metavar", "JSON")
        super().__init__(option_strings, dest, **kwargs)
        self.schema = schema

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        try:
            setattr(namespace, self.dest, from_json(self.schema, values))
        except InputError as e:
            raise argparse.ArgumentError(self, str(e)) from None


def experiment_from_json(text: str) -> Experiment:
    """Inverse of ``to_json`` for an Experiment (nested dataclasses, checked like any)."""
    return from_json(Experiment, text)


__all__ = [
    "ADDED_LATER",
    "AnalysisHParams",
    "Experiment",
    "InterpHParams",
    "JsonFlag",
    "PruneHParams",
    "TrainHParams",
    "conform",
    "experiment_from_config",
    "experiment_from_json",
    "from_json",
    "to_json",
]
