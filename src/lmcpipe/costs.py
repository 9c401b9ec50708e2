"""What a cluster job asks for: its runtime and memory, from the work it does.

A SLURM job that asks for too little is killed (an 18-member ResNet-20 cohort of 62 560 steps
at the old flat 30 minutes); one that asks for far too much waits longer in the queue. So each
compute job's request follows from its work and a table of what that work costs.

**The cost table** (``costs.yaml``, written by ``scripts/cost_table.py``; torch-free here, since
Snakemake reads it to plan) gives seconds per member-step (one member's training step: forward,
backward, optimiser update) per network, precision (fp32, tf32, bf16) and device class (``cpu``,
``a100``, ``h100``, ``h200``, ``unknown``), at a stated batch, each figure with its source:
``measured`` (where and how) or ``roofline`` (unmeasured: FLOPs and bytes per member-step over a
pessimistic fraction of datasheet peaks; errs long). A site overrides any figure in its profile
(``cluster.costs``). The device class of a GPU job is ``cluster.gpu_model`` when the table knows
it (or contains it: ``nvidia_h100_80gb`` -> ``h100``), else ``unknown``, a slow GPU (err long).

**Runtime**, minutes, of a job on its first attempt::

    estimate = (member_steps x s + eval_examples x s / batch x eval_ratio) x margin / 60
               + job_minutes

``s``: seconds per member-step at the experiment's batch (``Figure.at``); ``eval_ratio``: the
cost of evaluating one example relative to training on one (the table's, from FLOPs and bytes);
``margin``: ``cluster.runtime_margin`` (1.5); ``job_minutes``: fixed per job (start, imports,
reading the data; the table's, per dataset). Attempt n asks for n x the estimate (retries).

**The cap** (``cluster.max_runtime_min``, the site's walltime; 0 = none): on SLURM a job group
runs as one batch job asking for the sum of its jobs' runtimes, so the cap binds the group.
Where the group's request would exceed it, the group asks for exactly the cap, shared among its
jobs in proportion to their estimates (``share``). A training job still running at the limit
is killed; its resume checkpoint (``train.checkpoint_every``) survives, and the retry continues
from it, so a run longer than the site allows finishes over several attempts.

**Memory** (host, ``mem_mb``) is ``mem_mb``'s formula below. Explicit ``resources.runtime_min``
and ``resources.mem_mb`` of an experiment win over both estimates.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lmcpipe.data.registry import DATASETS
from lmcpipe.errors import InputError
from lmcpipe.hparams import AnalysisHParams, InterpHParams, TrainHParams
from lmcpipe.models import NAMES
from lmcpipe.models.spec import split_spec

TABLE_PATH = Path(__file__).with_name("costs.yaml")
MARGIN = 1.5  # cluster.runtime_margin's default: estimates x 1.5
MEM_MARGIN = 1.25  # host memory: the formula's sum x 1.25, rounded up to 100 MB
EVAL_BATCH = 5000  # lmcpipe.evaluate's chunk (and lmcpipe.workload's)
BASE_BYTES = {"cpu": 1.0e9, "gpu": 4.0e9}  # the process: Python, torch; CUDA's host libraries
STATE_COPIES = 3  # states per member a cohort holds: its start, its finished state, the writer's


@dataclass(frozen=True)
class Figure:
    """Seconds per member-step at ``batch``; ``fixed`` of them do not grow with the batch (a
    roofline's kernel launches); ``source``: measured (where) or roofline."""

    seconds: float
    batch: int
    fixed: float = 0.0
    source: str = ""

    def at(self, batch: int) -> float:
        """Seconds per member-step at ``batch``: the part that grows with the batch scaled
        linearly from the figure's batch. A smaller batch keeps the figure (never extrapolated
        down: a step's overheads do not shrink with it; errs long)."""
        if batch <= self.batch:
            return self.seconds
        return self.fixed + (self.seconds - self.fixed) * batch / self.batch


@dataclass(frozen=True)
class Work:
    """What one job computes. ``member_steps``: training steps summed over its members (may be
    fractional: curvature's Hessian-vector products in step equivalents); ``eval_examples``:
    examples evaluated without gradients; ``loads_data``: whether it reads the dataset;
    ``states``: model states it holds at once on the host; ``trains``: whether it runs
    backward passes (its activations then count in a CPU job's memory)."""

    member_steps: float = 0.0
    eval_examples: int = 0
    loads_data: bool = True
    states: int = 2
    trains: bool = False


@functools.cache
def shipped() -> dict[str, Any]:
    """The shipped table (costs.yaml), read once per process."""
    return yaml.safe_load(TABLE_PATH.read_text())


def device_class(gpu: bool, gpu_model: str, known: Sequence[str]) -> str:
    """``cpu`` for a job without a GPU; else the table's class that ``gpu_model`` names (exactly,
    or as a part: ``nvidia_h100_80gb`` -> ``h100``; the longest match), else ``unknown``."""
    if not gpu:
        return "cpu"
    model = gpu_model.lower()
    named = [d for d in known if d not in ("cpu", "unknown") and d in model]
    return max(named, key=len) if named else "unknown"


class Costs:
    """The shipped table with a site's overrides (``cluster.costs``: network -> precision ->
    device class -> seconds per member-step at the table's batch, or ``{seconds, batch}``)."""

    def __init__(self, overrides: Mapping[str, Any] | None = None, margin: float = MARGIN,
                 table: Mapping[str, Any] | None = None) -> None:
        self.table = shipped() if table is None else table
        self.margin = margin
        self.overrides = dict(overrides or {})
        # entries derived for networks the table lacks (costs_traced), per (network, dataset)
        self._derived: dict[tuple[str, str], dict[str, Any]] = {}

    @classmethod
    def of_cluster(cls, cluster: Mapping[str, Any]) -> Costs:
        """From the validated config's ``cluster`` section."""
        return cls(cluster.get("costs"), cluster.get("runtime_margin", MARGIN))

    def devices(self) -> list[str]:
        """Device classes with a figure, shipped or overridden."""
        found = {"cpu", "unknown", *self.table["devices"]}
        for precisions in self.overrides.values():
            for rows in precisions.values():
                found |= set(rows)
        return sorted(found)

    def network(self, network: str, dataset: str = "") -> dict[str, Any]:
        """The table's entry of ``network``; for a network lmcpipe does not ship, given the
        ``dataset`` it trains on, one derived from its traced work (``costs_traced``)."""
        entry = self.table["networks"].get(network)
        if entry is None and dataset and split_spec(network)[0] not in NAMES:
            from lmcpipe.costs_traced import REFERENCES, derived_entry

            key = (network, dataset)
            if key not in self._derived:
                refs = {n: self.table["networks"][n] for n in REFERENCES
                        if n in self.table["networks"]}
                self._derived[key] = derived_entry(network, dataset, refs)
            return self._derived[key]
        if entry is None:
            raise InputError(f"cluster.costs: the cost table has no network '{network}'; give "
                             f"its figures as cluster.costs.{network}.<precision>.<device> "
                             "(seconds per member-step) or add it to scripts/cost_table.py")
        return entry

    def figure(self, network: str, precision: str, device: str, dataset: str = "") -> Figure:
        """The figure of (network, precision, device): a site's override first, then the
        shipped table; a precision the table lacks falls back to fp32, a device class to
        ``unknown``."""
        rows = self.network(network, dataset)["seconds"]
        precision = precision if precision in rows else "fp32"
        shipped_row = rows[precision].get(device) or rows[precision]["unknown"]
        site = self.overrides.get(network, {}).get(precision, {}).get(device)
        if site is None:
            return Figure(**shipped_row)
        where = f"cluster.costs.{network}.{precision}.{device}"
        if isinstance(site, Mapping):
            return Figure(float(site["seconds"]), int(site.get("batch", shipped_row["batch"])),
                          float(site.get("fixed", 0.0)), f"site: {where}")
        return Figure(float(site), int(shipped_row["batch"]), 0.0, f"site: {where}")

    def step_seconds(self, network: str, precision: str, device: str, batch: int,
                     image_size: int = 0, dataset: str = "") -> tuple[float, str]:
        """Seconds per member-step of ``network`` at ``batch`` (and ``image_size``, 0: the
        dataset's), and the figure's source. A larger image than the figure's scales the
        per-example part by the pixel count (a smaller one keeps the figure: errs long)."""
        entry = self.network(network, dataset)
        fig = self.figure(network, precision, device, dataset)
        s = fig.at(batch)
        ref = entry.get("image_size") or DATASETS[entry["dataset"]].input_shape[-1]
        size = image_size or DATASETS[entry["dataset"]].input_shape[-1]
        if size > ref:
            s = fig.fixed + (s - fig.fixed) * (size / ref) ** 2
        return s, fig.source

    def minutes(self, hp: TrainHParams, device: str, work: Work) -> float:
        """A job's runtime estimate in minutes (module docstring), before any cap."""
        fixed = (self.table["datasets"].get(hp.dataset, {}).get("job_minutes", 5)
                 if work.loads_data else self.table["no_data_job_minutes"])
        if not work.member_steps and not work.eval_examples:
            return float(fixed)
        s, _ = self.step_seconds(hp.model, hp.precision, device, hp.batch_size, hp.image_size,
                                 hp.dataset)
        ratio = self.network(hp.model, hp.dataset)["eval_ratio"]
        seconds = work.member_steps * s + work.eval_examples * s / hp.batch_size * ratio
        return seconds * self.margin / 60 + fixed

    def mem_mb(self, hp: TrainHParams, device: str, work: Work, stack: int = 1) -> int:
        """Host memory of a job in MB: 1.25 x the sum, rounded up to 100 MB, of

        - the process: 1 GB, or 4 GB with a GPU (CUDA's libraries and context on the host);
        - the data (``loads_data``): MNIST-style and CIFAR sets are held whole as float32 after
          decoding uint8, (train + test) x pixels x 5 B; ImageNet stays memory-mapped on disk
          (page cache, reclaimable), plus 4 batches of staging: uint8 on the host, 4 x batch x
          pixels x 1 B, made float32 there too on the CPU (x 5 B);
        - ``states`` model states, each parameters x 4 B;
        - on the CPU, the work itself: training ``stack`` members at once holds their weights,
          gradients and two optimiser moments (parameters x 16 B) and their activations
          (the table's peak bytes per example x batch); evaluation, the activations of one
          chunk of up to 5 000 examples. On a GPU these live on the device
          (``lmcpipe.training.cohort.default_stack`` sizes them there).
        """
        entry = self.network(hp.model, hp.dataset)
        params = entry["params"]
        total = BASE_BYTES["cpu" if device == "cpu" else "gpu"] + work.states * params * 4
        if work.loads_data:
            info = DATASETS[hp.dataset]
            shape = info.input_shape
            pixels = math.prod(shape) if not hp.image_size else (
                shape[0] * hp.image_size * hp.image_size)
            if info.image_folder:
                total += 4 * hp.batch_size * pixels * (5 if device == "cpu" else 1)
            else:
                test = self.table["datasets"].get(hp.dataset, {}).get("test_examples", 0)
                total += (info.train_size + test) * pixels * 5
        if device == "cpu":
            if work.trains:
                total += stack * (params * 16
                                  + entry["train_peak_bytes_per_example"] * hp.batch_size)
            if work.eval_examples:
                total += entry["eval_peak_bytes_per_example"] * min(EVAL_BATCH,
                                                                    work.eval_examples)
        return math.ceil(total * MEM_MARGIN / 1e8) * 100


# --- the work of each kind of compute job --------------------------------------------------
def examples_per_evaluation(hp: TrainHParams, table: Mapping[str, Any] | None = None) -> int:
    """Examples one evaluation reads: the training set (or its first ``eval_train_examples``)
    and the test set (``lmcpipe.evaluate.splits``)."""
    table = shipped() if table is None else table
    train = hp.eval_train_examples or DATASETS[hp.dataset].train_size
    return train + table["datasets"].get(hp.dataset, {}).get("test_examples", 0)


def training_work(hp: TrainHParams, members: int, start_step: int, stop_step: int | None = None,
                  record: bool = True, references: int = 0) -> Work:
    """A cohort of ``members`` runs trained from ``start_step`` to ``stop_step`` (default T),
    each evaluated at the eval steps in [start, stop) and at the end when ``record``
    (``lmcpipe.training.single.train``); ``references``: paper B's earlier optima it also holds."""
    stop = hp.steps if stop_step is None else stop_step
    evals = len({s for s in hp.eval_steps if start_step <= s < stop} | {stop}) if record else 0
    return Work(member_steps=members * max(stop - start_step, 0),
                eval_examples=members * evals * examples_per_evaluation(hp),
                states=STATE_COPIES * members + references, trains=True)


def interpolation_work(hp: TrainHParams, ip: InterpHParams, pairs: int) -> Work:
    """``pairs`` paths of ``alphas`` points, each an evaluation of both splits, plus the
    BatchNorm recomputation (``bn_batches`` training-mode batches) per point when asked for."""
    per_point = examples_per_evaluation(hp)
    if ip.bn_mode == "recompute":
        per_point += ip.bn_batches * hp.batch_size
    return Work(eval_examples=pairs * ip.alphas * per_point, states=3)


def curvature_work(hp: TrainHParams, ap: AnalysisHParams) -> Work:
    """Lanczos iterations, Hutchinson samples, a gradient and two quadratic forms over
    ``curvature_examples``: each a Hessian-vector product, counted as 3 training passes per
    example (a double backward)."""
    products = ap.lanczos_iters + ap.trace_samples + 3
    n = min(ap.curvature_examples, DATASETS[hp.dataset].train_size)
    return Work(member_steps=products * n * 3 / hp.batch_size, states=4, trains=True)


def setup_work() -> Work:
    """Jobs that read models and masks but not the data (W_0, masks, probe setups)."""
    return Work(loads_data=False, states=3)


def share(estimates: Sequence[float], attempt: int, cap: int) -> list[int]:
    """Minutes each job of one job group asks for on attempt ``attempt`` (1, 2, ...).

    Each asks for attempt x its estimate, rounded up, unless the group's sum would exceed
    ``cap`` (0: no cap). Then the group asks for exactly ``cap``, split in proportion to the
    estimates (whole minutes, largest remainders first): a job may get 0 only when the cap has
    fewer minutes than the group has jobs."""
    asked = [attempt * math.ceil(e) for e in estimates]
    if not cap or sum(asked) <= cap:
        return asked
    total = sum(estimates)
    exact = [cap * e / total for e in estimates]
    out = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: out[i] - exact[i])
    for i in by_remainder[:cap - sum(out)]:
        out[i] += 1
    return out


def attempts_needed(estimate: float, cap: int) -> int:
    """Attempts a job of ``estimate`` minutes needs under ``cap`` (each resuming the last)."""
    return max(1, math.ceil(estimate / cap)) if cap else 1


def resume_problems(where: str, hp: TrainHParams, estimate: float, cap: int, retries: int,
                    checkpoint_minutes: float) -> list[str]:
    """Why a training job estimated at ``estimate`` minutes may never finish under ``cap``,
    one line each, naming the setting to change (empty when it fits or resumes well).

    ``checkpoint_minutes``: the estimated time between two resume checkpoints; what an attempt
    killed at the cap loses is at most that, so more than a quarter of the cap is flagged."""
    if not cap or estimate <= cap:
        return []
    out = []
    if not hp.checkpoint_every:
        out.append(f"{where}.train.checkpoint_every: 0, but a training job is estimated at "
                   f"{estimate:.0f} min, over cluster.max_runtime_min {cap}: each attempt "
                   "would restart from the start; set checkpoint_every")
    elif checkpoint_minutes > cap / 4:
        out.append(f"{where}.train.checkpoint_every: {hp.checkpoint_every} steps take about "
                   f"{checkpoint_minutes:.0f} min, over a quarter of cluster.max_runtime_min "
                   f"{cap}: a job killed at the limit loses that much; checkpoint more often")
    needed = attempts_needed(estimate, cap)
    if needed > retries + 1:
        out.append(f"{where}: a training job is estimated at {estimate:.0f} min, {needed} "
                   f"attempts of cluster.max_runtime_min {cap}, but the profile's retries "
                   f"({retries}) allow {retries + 1}; raise retries, or rerun the command "
                   "(rerun-incomplete resumes it)")
    return out


def _number(value: Any) -> Any:
    """A string holding an integer or a decimal number as that number; anything else as is (the
    schema then refuses it, naming the key)."""
    if not isinstance(value, str):
        return value
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def cluster_numbers(config: dict[str, Any]) -> None:
    """The numbers of the ``cluster`` section as numbers, in place (``lmcpipe.config``
    calls it before the schema check): a profile's ``config:``
    reaches Snakemake as ``--config cluster={...}``, which YAML's base loader reads, every
    scalar inside a string (``max_runtime_min: 2880`` arrives as ``'2880'``)."""
    cluster = config.get("cluster") if isinstance(config, dict) else None
    if not isinstance(cluster, dict):
        return
    for key in ("max_runtime_min", "runtime_margin"):
        if key in cluster:
            cluster[key] = _number(cluster[key])
    stack, seen = [cluster.get("costs")], set()
    while stack:
        node = stack.pop()
        if isinstance(node, dict) and id(node) not in seen:  # a YAML alias may loop back
            seen.add(id(node))
            for key, value in node.items():
                if isinstance(value, dict):
                    stack.append(value)
                else:
                    node[key] = _number(value)
