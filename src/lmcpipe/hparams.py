"""Hyperparameters as frozen dataclasses.

The validated config (see ``workflow/schemas/config.schema.yaml``) is turned into these objects.
Each stage receives only the dataclass it depends on, serialised as JSON, so that Snakemake's
params trigger reruns exactly the jobs whose hyperparameters changed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any


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
        {**exp["train"], "model": exp["model"], "dataset": exp["dataset"], "data_root": data_root},
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


def to_json(hp: Any) -> str:
    """Canonical JSON of a dataclass (sorted keys, so equal values give equal strings)."""
    return json.dumps(asdict(hp), sort_keys=True, separators=(",", ":"))


def from_json(cls: type, text: str) -> Any:
    return _coerce(cls, json.loads(text))


__all__ = [
    "AnalysisHParams",
    "Experiment",
    "InterpHParams",
    "PruneHParams",
    "TrainHParams",
    "experiment_from_config",
    "from_json",
    "to_json",
]


def experiment_from_json(text: str) -> Experiment:
    """Inverse of ``to_json`` for an Experiment (nested dataclasses)."""
    d = json.loads(text)
    return Experiment(
        name=d["name"],
        train=_coerce(TrainHParams, d["train"]),
        prune=_coerce(PruneHParams, d["prune"]),
        interp=_coerce(InterpHParams, d["interp"]),
        inits=tuple(d["inits"]),
        orders=tuple(d["orders"]),
        fork_steps=tuple(d["fork_steps"]),
        threads=d["threads"],
        control=d.get("control", False),
        analyses=_coerce(AnalysisHParams, d.get("analyses", {})),
    )
