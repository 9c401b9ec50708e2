"""Short timing runs of the real code on this machine, for ``lmcpipe estimate``.

What is timed, each the real thing and not a model of it:

``step_seconds``
    The training step: ``training.single.train`` for a chunk of one member,
    ``training.stacked.train_stacked`` for a chunk of K (``training.cohort`` trains a cohort in
    such chunks), on synthetic data of the dataset's shape (random images, so no dataset has to
    be present), with the run's optimiser, precision, augmentation, memory format and numerics
    (``devices.apply_numerics``).
    A warm-up call, then two timed calls of ``a`` and ``a + n`` steps: their difference over
    ``n`` is the per-step time without the per-call setup (the optimiser, moving the model);
    ``n`` is chosen to take about ``BUDGET_S``.
``eval_seconds``
    ``lmcpipe.evaluate.evaluate`` (no-grad forward in chunks of 5000), per example.
``import_seconds``
    The start of a job before its work: a fresh process importing every lmcpipe module the
    stage can reach (``codever.closure``), the third-party packages they import at their top,
    those its stage module imports anywhere and those behind the lazy importers it calls
    (``start_packages``), and, for a stage that picks a device, setting the numerics as it
    does. Python, ``import torch``, pandas or matplotlib: seconds per job that dominate small
    workflows.
``load_seconds``
    ``data.load`` of the real dataset under the data root, a second time (the first may decode
    the files and write the data root's decode cache, as a workflow's first job would). Not for
    image folders (ImageNet's first read decodes for hours); they count 0 and say so.

What a measurement reads (``clock``): CPU time for one-thread CPU work and process starts, so
that other processes on a shared machine neither lengthen a figure nor poison the cache: the
figures are what the machine does for a job that has a core to itself. Several threads or a
GPU: the wall clock.

Each figure is cached in ``calibration.json`` in lmcpipe's user cache directory
(``workload.cache_dir``: ``$XDG_CACHE_HOME/lmcpipe`` or ``~/.cache/lmcpipe``) under what it
depends on: the network, batch, stack, precision and optimiser, the numerics, the device's name
and the threads, the torch version and a hash of the code timed. Delete the file to calibrate
again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from lmcpipe import codever
from lmcpipe.hparams import TrainHParams
from lmcpipe.workload import cache_dir, read_json, write_json_entry

BUDGET_S = 1.0  # about how long one timed call of a calibration runs
EVAL_CHUNK = 5000


def cache_path() -> Path:
    return cache_dir() / "calibration.json"


def device_label(device, threads: int) -> str:
    """What a figure measured on ``device`` is valid for: its name, and on the CPU the threads
    (``AMD EPYC x1``, ``NVIDIA H100 80GB HBM3``)."""
    import torch

    from lmcpipe.provenance import cpu_name

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()} x{threads}"


def _key(*parts: object) -> str:
    import torch

    return "|".join(map(str, (*parts, f"torch {torch.__version__}")))


def _cached(key: str, measure: Callable[[], float]) -> tuple[float, bool]:
    """(seconds, whether it came from the cache)."""
    found = read_json(cache_path()).get(key)
    if isinstance(found, int | float) and found > 0:
        return float(found), True
    seconds = measure()
    write_json_entry(cache_path(), key, seconds)
    return seconds, False


def _network(hp: TrainHParams) -> str:
    """The fields of a run's hparams that set the cost of its step."""
    return (f"{hp.model} {hp.dataset} b{hp.batch_size} {hp.precision} img{hp.image_size} "
            f"cl{int(hp.channels_last)} {hp.optimizer} m{int(hp.momentum > 0)} "
            f"wd{int(hp.weight_decay > 0)}")


def synthetic(hp: TrainHParams, n: int, device):
    """A ``data.Data`` of ``n`` random images of the dataset's shape on ``device`` (uint8 on
    the host for image folders, as the real loader keeps ImageNet), seeded."""
    import torch

    from lmcpipe.data.registry import DATASETS
    from lmcpipe.data.tensors import Data
    from lmcpipe.workload import _input_shape

    info = DATASETS[hp.dataset]
    shape = _input_shape(hp.dataset, hp.image_size)
    gen = torch.Generator().manual_seed(0)
    y = torch.randint(0, info.num_classes, (n,), generator=gen)
    channels = 1 if info.format == "idx" else shape[0]
    mean, std = torch.full((channels,), 0.5), torch.full((channels,), 0.25)
    if info.image_folder:
        x = torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=gen)
    else:
        x = torch.randn((n, *shape), generator=gen)
    return Data(x, y, x, y, mean=mean, std=std).to(device)


@contextlib.contextmanager
def numerics(precision: str, deterministic: bool, threads: int):
    """The numerics a job runs with (``devices.apply_numerics``: determinism, TF32) and its
    threads, for the duration of a measurement; this process's own settings come back after."""
    import torch

    from lmcpipe import devices

    threads_before = torch.get_num_threads()
    with devices.numerics_during(precision, deterministic, torch.cuda.is_available()):
        torch.set_num_threads(threads)
        try:
            yield
        finally:
            torch.set_num_threads(threads_before)


def clock(device, threads: int) -> Callable[[], float]:
    """What a measurement reads: this process's CPU time for one-thread CPU work, so that other
    processes on a shared machine do not lengthen it (the figure is what the machine does when
    a job has a core to itself); the wall clock for several threads or a GPU."""
    return time.process_time if device.type == "cpu" and threads == 1 else time.perf_counter


def _timed(run: Callable[[int], None], steps: int, now: Callable[[], float]) -> float:
    began = now()
    run(steps)
    return now() - began


def _per_step(run: Callable[[int], None], now: Callable[[], float]) -> float:
    """Seconds per step of ``run(steps)`` without its fixed setup (module docstring)."""
    with contextlib.redirect_stdout(io.StringIO()):  # the training loop's progress lines
        run(1)
        first = _timed(run, 2, now)
        n = max(4, min(400, int(BUDGET_S / max(first / 2, 1e-5))))
        second = _timed(run, 2 + n, now)
    return max((second - first) / n, 1e-7)


def step_seconds(hp: TrainHParams, stack: int, device, threads: int = 1,
                 deterministic: bool = True) -> tuple[float, bool]:
    """Seconds per training step of a chunk of ``stack`` members (``stack`` = 1: one run) on
    ``device`` with ``threads`` CPU threads and the job's numerics; and whether the figure was
    cached."""
    key = _key("step", _network(hp), f"stack{stack}", f"det{int(deterministic)}",
               device_label(device, threads), codever.version("stacked"))
    return _cached(key, lambda: _measure_step(hp, stack, device, threads, deterministic))


def _measure_step(hp: TrainHParams, stack: int, device, threads: int,
                  deterministic: bool) -> float:
    from lmcpipe import models
    from lmcpipe.training import single, stacked

    with numerics(hp.precision, deterministic, threads):
        base = dataclasses.replace(hp, eval_steps=(), checkpoint_every=0, milestones=(),
                                   warmup_steps=0, schedule="step", repel_lambda=0.0)
        dataset = synthetic(hp, max(2 * hp.batch_size, 256), device)
        start = models.build_initialised(hp.model, hp.dataset, "calibrate", 0,
                                         bias=hp.bias_init, init=hp.model_init,
                                         image_size=hp.image_size).state_dict()
        template = models.build(hp.model, hp.dataset, hp.image_size)

        def run(steps: int) -> None:
            h = dataclasses.replace(base, steps=steps)
            if stack <= 1:
                template.load_state_dict(start)
                single.train(h, template, dataset, order=0, copy=1, record=False)
            else:
                stacked.train_stacked(h, template, [start] * stack, dataset,
                                      [(0, c) for c in range(stack)], [None] * stack,
                                      record=False)

        return _per_step(run, clock(device, threads))


def eval_seconds(hp: TrainHParams, device, threads: int = 1,
                 deterministic: bool = True) -> tuple[float, bool]:
    """Seconds per example of a no-grad evaluation (``lmcpipe.evaluate``); and whether the
    figure was cached."""
    key = _key("eval", hp.model, hp.dataset, hp.precision, f"img{hp.image_size}",
               f"det{int(deterministic)}", device_label(device, threads),
               codever.version("evaluate"))
    return _cached(key, lambda: _measure_eval(hp, device, threads, deterministic))


def _measure_eval(hp: TrainHParams, device, threads: int, deterministic: bool) -> float:
    import torch

    from lmcpipe import models
    from lmcpipe.devices import autocast
    from lmcpipe.evaluate import evaluate

    with numerics(hp.precision, deterministic, threads):
        model = models.build_initialised(hp.model, hp.dataset, "calibrate", 0,
                                         image_size=hp.image_size).to(device)
        small = synthetic(hp, 64, device)
        now = clock(device, threads)

        def run(n: int) -> float:
            data = small if n <= 64 else synthetic(hp, n, device)
            began = now()
            with autocast(hp, torch.device(device)):
                evaluate(model, data.train_x, data.train_y, EVAL_CHUNK, data.prepare)
            return now() - began

        run(64)  # warm-up
        per_example = run(64) / 64
        n = max(64, min(EVAL_CHUNK, int(BUDGET_S / max(per_example, 1e-7))))
        return run(n) / n if n > 64 else per_example


_IMPORT_CODE = """
import importlib, sys
from lmcpipe import cli, codever
for path in codever.closure(cli.module(sys.argv[1])):
    parts = path.relative_to(codever.PACKAGE).with_suffix("").parts
    importlib.import_module(".".join(("lmcpipe",) + parts).removesuffix(".__init__"))
for package in sys.argv[2].split():
    importlib.import_module(package)
if len(sys.argv) > 3:
    from lmcpipe import devices
    import torch
    devices.apply_numerics("fp32", sys.argv[3] == "true", torch.cuda.is_available())
"""


# functions that import a package when called (``lmcpipe.atomic``'s, so that table and figure
# stages never pay for torch): a stage whose code calls one pays for the package
LAZY_IMPORTS = {"load_torch": "torch", "save_torch": "torch"}


def _third_party(names: set[str]) -> set[str]:
    return {n for n in names if n not in sys.stdlib_module_names
            and n not in ("lmcpipe", "__future__")}


def _imports(path: Path, everywhere: bool) -> set[str]:
    """Top-level packages a module imports: at its top (``if``/``try`` blocks included), or
    ``everywhere`` (inside functions too); plus those of the ``LAZY_IMPORTS`` it calls."""
    import ast

    tree = ast.parse(path.read_text())
    found: set[str] = set()
    todo = list(ast.walk(tree)) if everywhere else list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.If | ast.Try) and not everywhere:
            todo += [*node.body, *node.orelse, *getattr(node, "finalbody", [])]
            todo += [n for h in getattr(node, "handlers", []) for n in h.body]
    if path.name != "atomic.py":
        for node in ast.walk(tree):
            name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", None)
            if name in LAZY_IMPORTS:
                found.add(LAZY_IMPORTS[name])
    return _third_party(found)


def start_packages(stage: str) -> tuple[str, ...]:
    """The third-party packages a job of ``lmcpipe <stage>`` imports: those its modules import
    at their top, those its stage module imports anywhere (its ``main`` runs), and those of the
    ``LAZY_IMPORTS`` its code calls. Not counted: imports inside other modules' functions
    (``lmcpipe.data.download``'s torchvision is never imported by a training job)."""
    from lmcpipe.cli import module

    found: set[str] = set()
    own = codever.PACKAGE / f"{module(stage).replace('.', '/')}.py"
    for path in codever.closure(module(stage)):
        found |= _imports(path, everywhere=path == own)
    return tuple(sorted(found))


def _import_key(stage: str, numerics: bool, deterministic: bool) -> tuple[str, list[str]]:
    """The cache key of a stage's start, and the command that measures it."""
    settings = f"numerics det{int(deterministic)} {codever.version('devices')}" if numerics \
        else "no numerics"
    packages = " ".join(start_packages(stage))
    key = _key("import", packages or "python", settings, sys.executable, codever.version("cli"))
    cmd = [sys.executable, "-c", _IMPORT_CODE, stage, packages]
    return key, cmd + (["true" if deterministic else "false"] if numerics else [])


def import_seconds(stage: str, numerics: bool = False,
                   deterministic: bool = True) -> tuple[float, bool]:
    """CPU seconds of a fresh process that imports what ``lmcpipe <stage>`` can reach (module
    docstring) and, for a stage that picks a device (``numerics``), sets the numerics as it
    does (``devices.apply_numerics``: torch's deterministic algorithms cost an import of their
    own); and whether the figure was cached. Stages that import the same third-party packages
    (``start_packages``: torch, pandas, matplotlib...) share one measurement: the rest of a
    start, lmcpipe's own small modules, differs little between them."""
    key, cmd = _import_key(stage, numerics, deterministic)
    return _cached(key, lambda: measure_starts([cmd])[0])


def measure_starts(commands: list[list[str]], parallel: int = 1) -> list[float]:
    """CPU seconds (user + system) of each command, ``parallel`` of them at a time: CPU time is
    each process's own (``os.wait4``), so running them side by side changes little but the wall
    time of calibrating. A command that fails counts as a bare Python start."""
    todo = list(commands)
    running: list[subprocess.Popen] = []
    results: dict[int, float] = {}
    order: list[int] = []
    while todo or running:
        while todo and len(running) < max(parallel, 1):
            proc = subprocess.Popen(todo.pop(0), stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            running.append(proc)
            order.append(proc.pid)
        time.sleep(0.02)
        for proc in list(running):  # only our own children: never another's (wait4(-1))
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                running.remove(proc)
                results[pid] = (usage.ru_utime + usage.ru_stime if proc.returncode == 0
                                else 0.05)
    return [results[pid] for pid in order]


def prefetch_starts(requests: list[tuple[str, bool, bool]], parallel: int) -> int:
    """Measure the starts ``import_seconds`` has not cached yet, ``parallel`` at a time, and
    cache them; returns how many were measured."""
    cached = read_json(cache_path())
    wanted: dict[str, list[str]] = {}
    for stage, numerics, deterministic in requests:
        key, cmd = _import_key(stage, numerics, deterministic)
        if key not in cached:
            wanted.setdefault(key, cmd)
    for key, seconds in zip(wanted, measure_starts(list(wanted.values()), parallel),
                            strict=True):
        write_json_entry(cache_path(), key, seconds)
    return len(wanted)


def load_seconds(hp: TrainHParams, device) -> tuple[float, int, int] | None:
    """(seconds, training examples, test examples) of reading the run's dataset from its data
    root, measured now; None where it is not measured (absent, or an image folder)."""
    from lmcpipe import data
    from lmcpipe.data.registry import DATASETS

    if DATASETS[hp.dataset].image_folder or data.find(hp.dataset, hp.data_root) is None:
        return None
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            data.load(hp.dataset, hp.data_root, device, hp.image_size)
            now = clock(device, 1)
            began = now()
            loaded = data.load(hp.dataset, hp.data_root, device, hp.image_size)
            seconds = now() - began
    except data.DataError:
        return None
    return seconds, len(loaded.train_x), len(loaded.test_x)
