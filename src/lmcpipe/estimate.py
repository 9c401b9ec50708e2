"""What a target costs before anything runs: ``lmcpipe estimate <targets>``.

The plan is Snakemake's own (``lmcpipe.dryrun``: the dry run of the targets, so finished work is
left out, and with ``--forceall`` everything counts). Each job's work follows from its shell
line, whose flags carry the run's hyperparameters (``job_work``):

- ``cohort``: members x (T - start) member-steps, in chunks of ``--stack`` members trained
  together; each member evaluated at its eval steps and at the end;
- ``train`` (rewind points, single runs): its steps (``--start-step`` to ``--stop-step``);
- ``interpolate-pairs`` / ``interpolate``: pairs x alphas evaluations of both splits (plus the
  BatchNorm recomputation when asked for);
- ``curvature``: its Hessian-vector products, 3 training passes per example each (a double
  backward), in member-steps;
- every other stage (masks, tables, figures, pages): its start only.

Counted (``lmcpipe.workload``, on the meta device): matmul/convolution FLOPs and memory traffic.
Timed here (``lmcpipe.calibrate``, the real code on this machine, cached): a job's start, reading
the data, the training step at the job's stack, evaluation per example. With a device spec
(``lmcpipe.roofline``), each GPU job also gets the datasheet roofline bound of its work and a
projected time from the cost table (``lmcpipe.costs``, what cluster runtimes use) where it has
the network, else the roofline. The whole plan is then played out on the cores and GPU slots
(``lmcpipe.schedule``), which gives its wall time and critical path.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from lmcpipe.data.registry import DATASETS
from lmcpipe.dryrun import PlannedJob, SnakemakeOptions, stage_call
from lmcpipe.errors import InputError
from lmcpipe.hparams import AnalysisHParams, InterpHParams, TrainHParams, from_json
from lmcpipe.roofline import DeviceSpec, roofline_seconds
from lmcpipe.schedule import Schedule, Task, simulate

# nominal test-set sizes, for a dataset that is not on disk (the registry's train_size is nominal)
TEST_EXAMPLES = {"mnist": 10_000, "fashion_mnist": 10_000, "cifar10": 10_000,
                 "cifar100": 10_000, "imagenet": 50_000}
DATA_STAGES = {"cohort", "train", "interpolate", "interpolate-pairs", "curvature"}
DEVICE_STAGES = DATA_STAGES  # the stages that take --device: GPU jobs on a GPU machine


@dataclass
class JobWork:
    """What one planned job computes, before any timing."""

    job: PlannedJob
    stage: str = ""
    hp: TrainHParams | None = None
    runs: int = 0  # trained runs, or interpolated paths
    member_steps: float = 0.0
    chunks: list[tuple[int, float]] = field(default_factory=list)  # (members together, steps)
    eval_examples: int = 0
    threads: int = 1
    stack: int = 0  # --stack (0: the device's default)
    deterministic: bool = True  # --deterministic (resources.deterministic)

    @property
    def loads_data(self) -> bool:
        return self.stage in DATA_STAGES

    @property
    def gpu(self) -> bool:
        return self.stage in DEVICE_STAGES

    def images(self) -> float:
        return self.member_steps * (self.hp.batch_size if self.hp else 0) + self.eval_examples


def _json(flags: dict[str, list[str]], name: str, schema: type):
    return from_json(schema, flags[name][0]) if flags.get(name) else None


def _int(flags: dict[str, list[str]], name: str, default: int) -> int:
    return int(flags[name][0]) if flags.get(name) else default


def evaluation_examples(hp: TrainHParams, sizes: dict[str, tuple[int, int]]) -> int:
    """Examples of one evaluation (``lmcpipe.evaluate.splits``): the training set or its first
    ``eval_train_examples``, and the test set; sizes as read from disk, else nominal."""
    train_n, test_n = sizes.get(hp.dataset) or (DATASETS[hp.dataset].train_size,
                                                TEST_EXAMPLES.get(hp.dataset, 0))
    return min(hp.eval_train_examples or train_n, train_n) + test_n


def stack_chunks(members: int, stack: int, solo: int = 0) -> list[int]:
    """Members per chunk of a cohort (``lmcpipe.training.cohort.train_cohort``): ``solo`` runs alone
    (paper B's repellent term), the rest in chunks of ``stack`` (one at a time when <= 1)."""
    rest = members - solo
    if stack <= 1:
        return [1] * members
    return [1] * solo + [min(stack, rest - i) for i in range(0, rest, stack)]


def job_work(job: PlannedJob, sizes: dict[str, tuple[int, int]],
             default_stack: Callable[[TrainHParams, int], int] = lambda hp, members: 1
             ) -> JobWork:
    """The work of one planned job from its shell line (module docstring). ``sizes``: dataset
    -> (train, test) examples as read; ``default_stack(hp, members)``: the members per stacked
    step of a cohort whose ``--stack`` is 0 (the device's default)."""
    stage, flags = stage_call(job.shell)
    work = JobWork(job, stage, threads=_int(flags, "threads", job.threads),
                   deterministic=flags.get("deterministic", ["true"])[0] != "false")
    hp = work.hp = _json(flags, "hparams", TrainHParams)
    if hp is None:
        return work
    evaluation = evaluation_examples(hp, sizes)
    if stage == "cohort":
        members = json.loads(flags["members"][0])
        start = _int(flags, "start-step", 0)
        work.stack = _int(flags, "stack", 0)
        steps = max(hp.steps - start, 0)
        evals = len({s for s in hp.eval_steps if start <= s < hp.steps}) + 1
        solo = sum(1 for m in members if m.get("references") and hp.repel_lambda)
        work.runs, work.member_steps = len(members), float(len(members) * steps)
        stack = work.stack or default_stack(hp, len(members))
        work.chunks = [(k, float(steps)) for k in stack_chunks(len(members), stack, solo)]
        work.eval_examples = len(members) * evals * evaluation
    elif stage == "train":
        start, stop = _int(flags, "start-step", 0), _int(flags, "stop-step", hp.steps)
        evals = (len({s for s in hp.eval_steps if start <= s < stop}) + 1
                 if flags.get("metrics-out") else 0)
        work.runs, work.member_steps = 1, float(max(stop - start, 0))
        work.chunks = [(1, work.member_steps)]
        work.eval_examples = evals * evaluation
    elif stage in ("interpolate-pairs", "interpolate"):
        ip = _json(flags, "interp", InterpHParams) or InterpHParams()
        pairs = len(json.loads(flags["pairs"][0])) if stage == "interpolate-pairs" else 1
        per_point = evaluation + (ip.bn_batches * hp.batch_size if ip.bn_mode == "recompute"
                                  else 0)
        work.runs, work.eval_examples = pairs, pairs * ip.alphas * per_point
    elif stage == "curvature":
        ap = _json(flags, "analyses", AnalysisHParams) or AnalysisHParams()
        products = ap.lanczos_iters + ap.trace_samples + 3
        n = min(ap.curvature_examples, (sizes.get(hp.dataset) or (DATASETS[hp.dataset]
                                                                   .train_size, 0))[0])
        work.member_steps = products * 3 * math.ceil(n / hp.batch_size)
        work.chunks = [(1, work.member_steps)]
    return work


@dataclass
class Timed:
    """A job's seconds here and, with a device spec, its bound and projection there."""

    seconds: float
    source: str
    flops: float = 0.0
    nbytes: float = 0.0
    bound_s: float = 0.0  # roofline of its device work on the spec (GPU jobs)
    spec_s: float = 0.0  # projected on the spec: fixed cost here + table or roofline work
    spec_source: str = ""


def counted(work: JobWork) -> tuple[float, float]:
    """(FLOPs, bytes) of a job's device work (``lmcpipe.workload``)."""
    from lmcpipe.workload import step_cost

    hp = work.hp
    if hp is None or not (work.member_steps or work.eval_examples):
        return 0.0, 0.0
    step = step_cost(hp.model, hp.dataset, hp.batch_size, hp.precision, hp.image_size)
    ev = evaluation_cost(hp, work.eval_examples)
    return step.flops * work.member_steps + ev.flops, step.bytes * work.member_steps + ev.bytes


def evaluation_cost(hp: TrainHParams, examples: int):
    """The work of evaluating ``examples`` examples, from one full chunk's count scaled (exact
    for FLOPs; for bytes it spreads the weights' reads over the chunk as a full one does)."""
    from lmcpipe.workload import EVAL_BATCH, eval_cost

    chunk = eval_cost(hp.model, hp.dataset, EVAL_BATCH, hp.precision, hp.image_size)
    return chunk.scaled(examples / EVAL_BATCH)


def table_seconds(hp: TrainHParams, spec: DeviceSpec) -> tuple[float, str] | None:
    """Seconds per member-step of the cost table (``lmcpipe.costs``) for the spec's device
    class, and the figure's source; None when there is no table or it lacks the network."""
    try:
        from lmcpipe import costs

        table = costs.Costs()
        device = costs.device_class(True, spec.key, table.devices())
        seconds, source = table.step_seconds(hp.model, hp.precision, device, hp.batch_size,
                                             hp.image_size, hp.dataset)
    except Exception:  # no table shipped yet, or a network it lacks: the roofline instead
        return None
    kind = (source or "").split(":")[0].strip() or "figure"
    return seconds, f"table ({kind}, {device})"


def spec_seconds(work: JobWork, fixed_s: float, flops: float, nbytes: float,
                 spec: DeviceSpec) -> tuple[float, float, str]:
    """(bound, projected, source) of a GPU job on ``spec``: the roofline of its device work,
    and ``fixed_s`` (its start and data read, timed here) plus the table's member-step seconds
    (evaluation per example as the roofline's ratio of evaluation to training), else plus the
    roofline itself."""
    hp = work.hp
    bound_s = roofline_seconds(flops, nbytes, spec, hp.precision)
    figure = table_seconds(hp, spec)
    if figure is None:
        return bound_s, fixed_s + bound_s, "roofline (datasheet)"
    from lmcpipe.workload import step_cost

    per_step, source = figure
    step = step_cost(hp.model, hp.dataset, hp.batch_size, hp.precision, hp.image_size)
    step_bound = roofline_seconds(step.flops, step.bytes, spec, hp.precision)
    ev = evaluation_cost(hp, work.eval_examples)
    eval_bound = roofline_seconds(ev.flops, ev.bytes, spec, hp.precision)
    eval_s = eval_bound * per_step / step_bound if step_bound else 0.0
    return bound_s, fixed_s + work.member_steps * per_step + eval_s, source




# --- the whole plan -----------------------------------------------------------------------------
@dataclass
class Estimate:
    """Everything ``lmcpipe estimate`` prints (``estimate_table.report`` writes it out)."""

    jobs: list[PlannedJob]
    works: list[JobWork]
    timed: dict[int, Timed]
    here: Schedule
    device_here: str
    snakemake_s: float  # the dry run's own wall time: Snakemake's start, paid by a real run too
    cores: int
    gpus_here: int
    spec: DeviceSpec | None = None
    gpus: int = 0
    there: Schedule | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def wall_here_s(self) -> float:
        return self.snakemake_s + self.here.wall_s


def _root(data_root: str, directory: str) -> str:
    """A data root as the jobs see it: relative roots are relative to Snakemake's ``-d``."""
    return data_root if os.path.isabs(data_root) or not directory else os.path.join(directory,
                                                                                     data_root)


def asks_gpu(job: PlannedJob) -> bool:
    """Whether the plan gives the job Snakemake's ``gpu`` resource (a GPU experiment's job)."""
    return job.resources.get("gpu", "0") not in ("", "0")


def play_threads(work: JobWork, cores: int) -> int:
    """Cores a job holds when the plan is played out. A dry run shows a GPU experiment's jobs
    with all ``--cores`` (as a cluster's batch job gets them: ``common.smk``'s
    ``_serial_if_gpu``), but a local run gives them their own threads, which the dry run does
    not show: they count 1 (a GPU job's work is on its GPU)."""
    return 1 if asks_gpu(work.job) else min(max(work.threads, 1), cores)


def local_seconds(work: JobWork, device, load_s: float, threads: int,
                  log: Callable[[str], None]) -> tuple[float, float, str]:
    """(seconds, fixed part, source) of a job on this machine: its start and data read, its
    chunks' training steps and its evaluations, each calibrated (``lmcpipe.calibrate``)."""
    from lmcpipe import calibrate

    if not work.stage:
        return 0.0, 0.0, "-"
    fixed, cached = calibrate.import_seconds(work.stage, work.gpu, work.deterministic)
    if not cached:
        log(f"calibrated the start of lmcpipe {work.stage}: {fixed:.2f}s")
    fixed += load_s if work.loads_data else 0.0
    hp, seconds = work.hp, fixed
    deterministic = work.deterministic
    for members, steps in work.chunks:
        per_step, cached = calibrate.step_seconds(hp, members, device, threads, deterministic)
        if not cached:
            log(f"calibrated a training step of {hp.model} (batch {hp.batch_size}, {members} "
                f"member{'s' if members > 1 else ''}, {hp.precision}): {per_step * 1e3:.3g} ms")
        seconds += steps * per_step
    if work.eval_examples:
        per_example, cached = calibrate.eval_seconds(hp, device, threads, deterministic)
        if not cached:
            log(f"calibrated evaluation of {hp.model}: {per_example * 1e6:.3g} us per example")
        seconds += work.eval_examples * per_example
    return seconds, fixed, "calibrated"


def estimate(options: SnakemakeOptions, cores: int, gpus: int | None = None,
             spec: DeviceSpec | None = None, log: Callable[[str], None] = print) -> Estimate:
    """Plan ``options.targets`` with Snakemake, count and time every job, and play the plan out
    on this machine (``cores``; its GPUs, or ``gpus`` slots of them) and, with ``spec``, on
    ``gpus`` such devices (default 1)."""
    import torch

    from lmcpipe import calibrate, dryrun
    from lmcpipe.training import cohort

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if gpus is not None and spec is None and device.type != "cuda":
        raise InputError(f"--gpus {gpus}: torch sees no CUDA device here; give --device-spec "
                         "to play the plan out on GPUs elsewhere")
    gpus_here = 0 if device.type != "cuda" else (
        gpus if gpus is not None and spec is None else torch.cuda.device_count())
    jobs, snakemake_s = dryrun.plan(options)
    notes: list[str] = []
    sizes: dict[str, tuple[int, int]] = {}
    load_s: dict[tuple[str, str, int], float] = {}
    plain = [dryrun.stage_call(j.shell) for j in jobs]
    for stage, flags in plain:
        if stage not in DATA_STAGES or not flags.get("hparams"):
            continue
        hp = from_json(TrainHParams, flags["hparams"][0])
        key = (hp.dataset, hp.data_root, hp.image_size)
        if key in load_s:
            continue
        found = calibrate.load_seconds(dataclasses.replace(
            hp, data_root=_root(hp.data_root, options.directory)), device)
        if found is None:
            load_s[key] = 0.0
            notes.append(f"{hp.dataset} under {hp.data_root}: not read here (absent, or an "
                         "image folder), so its read time counts 0 and its sizes are nominal")
        else:
            load_s[key], train_n, test_n = found
            sizes[hp.dataset] = (train_n, test_n)

    def default_stack(hp: TrainHParams, members: int) -> int:
        """What ``lmcpipe cohort`` picks for ``--stack 0`` on this device (its memory there)."""
        return cohort.default_stack(device, hp, members)

    works = [job_work(j, sizes, default_stack) for j in jobs]
    measured = calibrate.prefetch_starts(
        [(w.stage, w.gpu, w.deterministic) for w in works if w.stage], os.cpu_count() or 1)
    if measured:
        log(f"calibrated the start of {measured} kinds of job (a process importing what the "
            "stage does)")
    timed: dict[int, Timed] = {}
    for w in works:
        threads = play_threads(w, cores)
        hp = w.hp
        data_s = load_s.get((hp.dataset, hp.data_root, hp.image_size), 0.0) if hp else 0.0
        seconds, fixed, source = local_seconds(w, device, data_s, threads, log)
        flops, nbytes = counted(w)
        t = Timed(seconds, source, flops, nbytes, spec_s=seconds)
        if spec is not None and w.gpu and hp is not None:
            t.bound_s, t.spec_s, t.spec_source = spec_seconds(w, fixed, flops, nbytes, spec)
        timed[w.job.jobid] = t
    edges = dryrun.needs(jobs)

    def tasks(seconds_of: Callable[[Timed], float], gpu_jobs: bool) -> dict[int, Task]:
        return {w.job.jobid: Task(seconds_of(timed[w.job.jobid]), play_threads(w, cores),
                                  gpu_jobs and w.gpu) for w in works}

    here = simulate(tasks(lambda t: t.seconds, gpus_here > 0), edges, cores, gpus_here)
    result = Estimate(jobs, works, timed, here, calibrate.device_label(device, 1).removesuffix(
        " x1"), snakemake_s, cores, gpus_here, notes=notes)
    if spec is not None:
        result.spec, result.gpus = spec, gpus if gpus is not None else 1
        result.there = simulate(tasks(lambda t: t.spec_s, True), edges, cores, result.gpus)
    return result
