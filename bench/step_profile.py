"""Per-step proxies of the training step, BEFORE and AFTER issue 23, side by side in one run.

A GPU runs a stacked cohort well when each step launches few kernels and moves no more memory
than it must. Without a GPU, these proxies carry over (issue 23 states them; this script is how
they are taken, for the old code and the new with the same counting code):

kernel ops / step
    ``torch.profiler`` over the real training loops (``record=False``, no checkpoints) run for
    ``n`` and for ``n + m`` steps after a warm-up call; the difference over ``m`` is the steady
    state, without the per-call setup (stacking, the optimiser, an epoch's permutation: the
    synthetic set is sized so that no epoch ends inside the runs). An aten op counts when it
    is not in ``EXCLUDED`` and nothing below it counts (a leaf: ``addmm`` counts as its
    ``copy_``, ``sum`` as its ``fill_``); the convolution ops in ``ATOMIC`` count as one
    whatever the CPU runs inside them (a vmapped or grouped conv is one cuDNN call on a GPU,
    but the CPU's fallback loops over the groups); kernels that torch.compile generates count
    one each (inductor's kernel profiling names them). ``EXCLUDED``, ops that launch no kernel:
    allocations (empty, empty_like, empty_strided, new_empty, new_empty_strided, resize_,
    scalar_tensor); views (view, _unsafe_view, view_as, as_strided, as_strided_,
    _reshape_alias, reshape, flatten, unflatten, expand, expand_as, t, transpose, permute,
    movedim, unsqueeze, squeeze, select, slice, narrow, alias, unbind, split, split_with_sizes,
    chunk, set_); detaches and no-copy dispatch ops (detach, detach_, lift_fresh,
    resolve_conj, resolve_neg, to, contiguous: when they copy, the copy below them counts);
    host reads and queries (item, _local_scalar_dense, _has_compatible_shallow_copy_type,
    _nnpack_available).
    The loop's progress line (``Progress.tick``, labelled here with ``record_function``) reads
    the loss on a printing step; a real run prints 20 lines in all, so its ops are left out of
    ops/step. The issue's figures were taken from short runs, which print every step: the
    validation table counts them as the issue did (``ops_with_progress``).
    The compiled step (after side, ``compile=`` of the loops) is counted within one call, ``m``
    steps after the first 3 (its compilation), read at the loop's progress ticks: each call
    compiles anew, so a difference of two calls would hold two compilations. On eager steps
    the two ways agree (LeNet K = 4 stacked: 32 and 32; ResNet-20 single: 203 and 203).
    On CUDA the profiler also counts the host's calls that submit GPU work (``LAUNCHES``:
    kernel and graph launches, asynchronous copies and sets) and the kernels the GPU ran;
    there the ops columns count host-dispatched aten ops only (a CUDA graph's replay
    dispatches none, and Triton kernels are counted among the GPU's kernels).
seconds / step (``--time``)
    One call of ``warm + N`` steps at the real batch; the wall clock between the ends of steps
    ``warm`` and ``warm + N`` (synchronised on CUDA), eager and compiled.
bytes / member-step
    Forward and backward of one step of K members traced on the meta device (no memory, no
    arithmetic), summing the bytes of every tensor input and output of each op that is not a
    view, an allocation or a detach (``TracedBytes``); divided by K. BEFORE: one run's
    ``training_loss``, and the old stacked route (``memory._stacked_loss``: ``functional_call``
    under ``vmap``). AFTER: one run's ``training_loss``, and the grouped route
    (``training.grouped.group`` + ``member_losses``, input ``(B*K, C, H, W)`` viewed
    ``(B, K*C, H, W)``); ``n/a`` while that module does not exist.
FLOPs / member-step
    ``torch.utils.flop_counter.FlopCounterMode`` on the same trace, divided by K, with its
    convolution-backward formula corrected for groups (torch's counts a grouped conv's weight
    gradient as if ungrouped: ``groups`` times too many). Every route does the same arithmetic
    per member, so the column doubles as a check of the routes.

BEFORE is the code at ``--before`` (default c32af5b, the last commit before issue 23),
extracted with ``git archive`` and measured in a child process with that ``src`` first on
``PYTHONPATH`` (its loops: ``lmcpipe.train.train``, ``lmcpipe.stacked.train_stacked``); AFTER is
this tree's ``src`` (``lmcpipe.training.single``/``.stacked``). Synthetic data of the real shape
(``calibrate.synthetic``, the same in both trees); hyperparameters as ``bench/cohort_throughput``:
LeNet-300-100 Adam lr 1.2e-3 batch 60 (MNIST shape), ResNet-20 and VGG-16 SGD lr 0.1 momentum
0.9 weight decay 1e-4 batch 128 with the CIFAR augmentation; no masks; one CPU thread.
Kernel-op counts do not depend on the batch (the convolutions count as one whatever algorithm
the CPU picks for the size), so by default they are taken at batch 16 (``--ops-batch``; 0: the
real batch), which makes the old stacked loop's K = 32 affordable on one CPU thread;
``--check-batch`` counts every eager case at the real batch too (old code, ResNet-20 single and
K = 1, 4: equal). Bytes and FLOPs are always at the real batch.

    python bench/step_profile.py                      # the whole table (about 1 h on one core)
    python bench/step_profile.py --quick              # LeNet and ResNet-20 at K = 1, 16
    python bench/step_profile.py --device cuda --sides after --nets resnet20 --ks 16 \
        --no-single --ops-batch 0 --time              # what bench/gpu_check.sh runs
    python bench/step_profile.py --table-from a.json b.json   # the table of saved --json runs
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import inspect
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.autograd import DeviceType
from torch.utils._python_dispatch import TorchDispatchMode  # the documented home of the mode

REPO = Path(__file__).resolve().parents[1]
BEFORE_REV = "c32af5b"
# ops that launch no kernel, by kind (the module docstring lists them too)
EXCLUDED = frozenset([
    # allocations
    "empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "resize_",
    "scalar_tensor",
    # views
    "view", "_unsafe_view", "view_as", "as_strided", "as_strided_", "_reshape_alias", "reshape",
    "flatten", "unflatten", "expand", "expand_as", "t", "transpose", "permute", "movedim",
    "unsqueeze", "squeeze", "select", "slice", "narrow", "alias", "unbind", "split",
    "split_with_sizes", "chunk", "set_",
    # detaches, and dispatch ops that return their input or a view when nothing is copied
    "detach", "detach_", "lift_fresh", "resolve_conj", "resolve_neg", "to", "contiguous",
    # host reads and queries
    "item", "_local_scalar_dense", "_has_compatible_shallow_copy_type", "_nnpack_available",
])
ATOMIC = frozenset({"aten::_convolution", "aten::convolution_backward"})
PROGRESS = "step_profile: progress line"
# host calls that submit work to a GPU: kernel and graph launches, asynchronous copies and sets
LAUNCHES = frozenset({"cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel",
                      "cuLaunchKernelEx", "cudaLaunchCooperativeKernel", "cudaGraphLaunch",
                      "cudaMemcpyAsync", "cudaMemsetAsync"})


@dataclasses.dataclass(frozen=True)
class Net:
    model: str
    dataset: str
    batch: int
    opt: dict


SGD = {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4}
NETWORKS = {"lenet": Net("lenet_300_100", "mnist", 60, {"optimizer": "adam", "lr": 1.2e-3}),
            "resnet20": Net("resnet20", "cifar10", 128, SGD),
            "vgg16": Net("vgg16", "cifar10", 128, SGD)}
# issue 23's "before" table, quoted: (ops/step, ops/member-step, bytes/member-step)
ISSUE = {("lenet", "single", 1): (26, 26, None), ("lenet", "stacked", 1): (58, 58, None),
         ("lenet", "stacked", 4): (64, 16, None), ("lenet", "stacked", 16): (88, 5.5, None),
         ("resnet20", "single", 1): (194, 194, 1.82e9),
         ("resnet20", "stacked", 1): (386, 386, 2.95e9),
         ("resnet20", "stacked", 4): (444, 111, 2.95e9),
         ("resnet20", "stacked", 16): (672, 42, 2.95e9)}


# --- counting ---------------------------------------------------------------------------------
def is_kernel(name: str) -> bool:
    """An op that launches work: an aten op outside ``EXCLUDED``, or a C++ kernel that
    torch.compile generated for the CPU (``graph_0_cpp_fused_*``, named by inductor's kernel
    profiling; Triton kernels run on a GPU and are counted among its kernels)."""
    if name.startswith("aten::"):
        return name[6:] not in EXCLUDED
    return "cpp_fused" in name


def kernel_ops(events) -> tuple[collections.Counter, collections.Counter]:
    """Kernel ops of profiler ``events`` by name: (outside the progress line, inside it)."""
    counts = (collections.Counter(), collections.Counter())

    def walk(e, inside: bool) -> bool:  # whether e or something below it counted
        inside = inside or e.name == PROGRESS
        if e.name in ATOMIC:
            counts[inside][e.name] += 1
            return True
        below = [walk(c, inside) for c in e.cpu_children]
        if any(below):
            return True
        if is_kernel(e.name):
            counts[inside][e.name] += 1
            return True
        return False

    for e in events:
        if e.cpu_parent is None and e.device_type == DeviceType.CPU:
            walk(e, False)
    return counts


def cuda_work(events) -> tuple[int, int]:
    """(host calls that submit CUDA work: kernels, graphs, copies; kernels run on the GPU)."""
    return (sum(1 for e in events if e.name in LAUNCHES),
            sum(1 for e in events if e.device_type == DeviceType.CUDA))


def activities() -> list:
    from torch.profiler import ProfilerActivity

    return [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])


def counted(events) -> tuple:
    return (*kernel_ops(events), *cuda_work(events))


def per_step(counts: tuple, m: int, base: tuple | None = None) -> dict:
    """Kernel ops per step of ``counts`` over ``m`` steps (less ``base``'s): outside the
    progress line, with it, the most frequent; on CUDA the launch calls and the kernels."""
    ops, progress, launch, kernels = counts[0].copy(), counts[1].copy(), *counts[2:]
    if base is not None:
        ops.subtract(base[0])
        progress.subtract(base[1])
        launch, kernels = launch - base[2], kernels - base[3]
    total = sum(ops.values()) / m
    cuda = torch.cuda.is_available()
    return {"ops": total, "ops_with_progress": total + sum(progress.values()) / m,
            "top": {k[:80]: v / m for k, v in ops.most_common(12) if v},
            "launches": launch / m if cuda else None, "kernels": kernels / m if cuda else None}


def profiled(run, steps: int) -> tuple:
    from torch.profiler import profile

    with profile(activities=activities()) as prof:
        run(steps)
    return counted(prof.events())


def steady_ops(run, n: int, m: int) -> dict:
    """Kernel ops per step of ``run`` in the steady state: (run(n + m) - run(n)) / m, after a
    warm-up ``run(1)`` that takes the one-off costs (lazy imports, first-call paths)."""
    run(1)
    base = profiled(run, n)
    return per_step(profiled(run, n + m), m, base)


def in_one_call(run, warm: int, timed_steps: int, counted_steps: int, device) -> dict:
    """One call of ``run(warm + timed_steps + counted_steps)``, read at the loop's progress
    ticks (once per step): seconds per step from the end of step ``warm`` to the end of step
    ``warm + timed_steps``, then the kernel ops of the next ``counted_steps`` steps under the
    profiler. For a compiled step: its compilation (in the first steps) is excluded without a
    second call that would compile again."""
    from torch.profiler import profile

    from lmcpipe.progress import Progress

    a, b, c = warm, warm + timed_steps, warm + timed_steps + counted_steps
    prof = profile(activities=activities()) if counted_steps else None
    marks: dict[int, float] = {}
    tick = Progress.tick

    def hooked(self, step, *args, **kwargs):
        if prof is not None and step == c:
            prof.stop()
        with torch.profiler.record_function(PROGRESS):
            line = tick(self, step, *args, **kwargs)
        if step in (a, b):
            if device.type == "cuda":
                torch.cuda.synchronize()
            marks[step] = time.perf_counter()
        if prof is not None and step == b:
            prof.start()
        return line

    Progress.tick = hooked
    try:
        run(c)
    finally:
        Progress.tick = tick
    out = per_step(counted(prof.events()), counted_steps) if prof is not None else {}
    if timed_steps:
        out["s_per_step"] = (marks[b] - marks[a]) / timed_steps
    return out


def tensors(value):
    """The tensors in an op's arguments or results (nested in lists, tuples and dicts)."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, list | tuple):
        for v in value:
            yield from tensors(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from tensors(v)


class TracedBytes(TorchDispatchMode):
    """Bytes of the tensor inputs and outputs of every op that is not a view, allocation or
    detach: what a step reads and writes if nothing stays in cache."""

    SKIP = frozenset({"empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided",
                      "resize_", "detach", "detach_", "lift_fresh", "alias"})

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not func.is_view and func.overloadpacket.__name__ not in self.SKIP:
            self.total += sum(t.numel() * t.element_size() for t in tensors((args, kwargs, out)))
        return out


def grouped_conv_backward_flops(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding,
                                _dilation, transposed, _output_padding, groups, output_mask,
                                out_shape, **kwargs) -> int:
    """FLOPs of ``aten.convolution_backward``, groups included: the input gradient is a
    transposed conv with the grouped weight (torch's formula has it right), the weight gradient
    a conv of the input with the output gradient per group, ``groups`` times fewer FLOPs than
    the ungrouped product torch's formula counts."""
    from torch.utils.flop_counter import conv_flop_count

    def t(shape):
        return [shape[1], shape[0], *shape[2:]]

    flops = 0
    if output_mask[0]:
        flops += conv_flop_count(grad_out_shape, w_shape, out_shape[0], not transposed)
    if output_mask[1]:
        a, b = (grad_out_shape, x_shape) if transposed else (x_shape, grad_out_shape)
        flops += conv_flop_count(t(a), t(b), t(out_shape[1]), False) // groups
    return flops


def step_loss(side: str, net: Net, route: str, k: int):
    """(loss(), its leaf tensors) of one step of ``k`` members on the meta device, as this side
    computes it for ``route``; None when this side has no such route."""
    from lmcpipe import models
    from lmcpipe.data.registry import DATASETS

    shape, b = DATASETS[net.dataset].input_shape, net.batch
    with torch.device("meta"):
        template = models.build(net.model, net.dataset).train()
        if route == "single":
            x, y = torch.empty(b, *shape), torch.zeros(b, dtype=torch.long)
            return (lambda: template.training_loss(x, y)), list(template.parameters())
        if side == "before":
            from lmcpipe.memory import _stacked_loss

            params = {n: torch.empty((k, *p.shape), requires_grad=True)
                      for n, p in template.named_parameters()}
            buffers = {n: torch.empty((k, *t.shape), dtype=t.dtype)
                       for n, t in template.named_buffers()}
            x, y = torch.empty(k, b, *shape), torch.zeros(k, b, dtype=torch.long)
            stacked = _stacked_loss(template)
            return (lambda: stacked(params, buffers, x, y).sum()), list(params.values())
        try:
            from lmcpipe.training import grouped
        except ImportError:
            return None
        net_k = grouped.group(template, k)
        x = torch.empty(b * k, *shape).view(b, k * shape[0], *shape[1:])  # member-major
        y = torch.zeros(b, k, dtype=torch.long)
        return (lambda: grouped.member_losses(net_k(x), y).sum()), list(net_k.parameters())


def traced(side: str, net: Net, route: str, k: int) -> dict | None:
    """Bytes and FLOPs per member-step of forward + backward on the meta device; None when this
    side has no such route."""
    from torch.utils.flop_counter import FlopCounterMode

    found = step_loss(side, net, route, k)
    if found is None:
        return None
    loss, leaves = found
    counter = TracedBytes()
    with counter:
        loss().backward()
    for t in leaves:
        t.grad = None
    flops = FlopCounterMode(display=False, custom_mapping={
        torch.ops.aten.convolution_backward: grouped_conv_backward_flops})
    with flops:
        loss().backward()
    return {"bytes": counter.total / k, "flops": flops.get_total_flops() / k}


# --- the loops, old and new -------------------------------------------------------------------
def loops(side: str):
    """(single-run loop, stacked loop) of this side's tree."""
    if side == "before":
        from lmcpipe import stacked, train

        return train.train, stacked.train_stacked
    from lmcpipe.training import single, stacked

    return single.train, stacked.train_stacked


def accepts_compile(fn) -> bool:
    """Whether a loop takes ``compile=``: in its signature, or, for a wrapper that passes
    ``**kwargs`` on (``train_stacked``), in its module's ``_<name>``."""
    params = inspect.signature(fn).parameters
    if "compile" in params:
        return True
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        inner = getattr(sys.modules[fn.__module__], f"_{fn.__name__}", None)
        return inner is not None and "compile" in inspect.signature(inner).parameters
    return False


@contextlib.contextmanager
def labelled_progress():
    """``Progress.tick`` under a ``record_function`` label, so its ops can be told apart."""
    from lmcpipe.progress import Progress

    tick = Progress.tick

    def labelled(self, *args, **kwargs):
        with torch.profiler.record_function(PROGRESS):
            return tick(self, *args, **kwargs)

    Progress.tick = labelled
    try:
        yield
    finally:
        Progress.tick = tick


def runner(side: str, net: Net, route: str, k: int, batch: int, compile: str, device, rows: int):
    """``run(steps)``: this side's loop for ``steps`` steps from the same start, no records."""
    from lmcpipe import models
    from lmcpipe.calibrate import synthetic
    from lmcpipe.hparams import TrainHParams

    single, stacked = loops(side)
    hp = TrainHParams(net.model, net.dataset, "", batch_size=batch, steps=1, **net.opt)
    dataset = synthetic(hp, rows, device)
    start = models.build_initialised(net.model, net.dataset, "step_profile", 0).state_dict()
    template = models.build(net.model, net.dataset)
    extra = {} if compile == "none" else {"compile": compile}

    def run(steps: int) -> None:
        h = dataclasses.replace(hp, steps=steps)
        with contextlib.redirect_stdout(io.StringIO()):
            if route == "single":
                template.load_state_dict(start)
                single(h, template, dataset, order=0, copy=1, record=False, **extra)
            else:
                stacked(h, template, [start] * k, dataset, [(0, c) for c in range(k)],
                        [None] * k, record=False, **extra)
        if device.type == "cuda":
            torch.cuda.synchronize()

    return run


def stacked_route(side: str, loop, net: Net) -> str:
    """Which route this side's stacked loop takes for ``net``: vmap before issue 23; after it,
    what the loop's module says (a ``route(template)`` function), else grouped where the module
    uses ``training.grouped`` and the network is groupable."""
    if side == "before":
        return "vmap"
    from lmcpipe import models

    module = sys.modules[loop.__module__]
    template = models.build(net.model, net.dataset)
    if callable(getattr(module, "route", None)):
        return str(module.route(template))
    try:
        from lmcpipe.training import grouped
    except ImportError:
        return "vmap"
    uses = any(v is grouped or getattr(v, "__module__", None) == grouped.__name__
               for v in vars(module).values())
    return "grouped" if uses and grouped.groupable(template) else "vmap"


def failure(e: Exception) -> str:
    return f"failed: {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e) else ''}"[:240]


def measure_case(side: str, spec: dict, net: Net, route: str, k: int, device) -> dict:
    """One case: bytes and FLOPs, eager ops (and seconds per step), compiled ops (and seconds);
    a part that fails says why in its place and the others still run."""
    out: dict = {}
    n, m, real = spec["n"], spec["m"], net.batch
    batch = spec["ops_batch"] or real
    warm, timed_steps = spec["time"] or (3, 0)
    loop = loops(side)[route == "stacked"]
    if route == "stacked":
        out["stacked_route"] = stacked_route(side, loop, net)

    def make(b: int, steps: int, mode: str = "none"):
        return runner(side, net, route, k, b, mode, device, (steps + 2) * b)

    parts = {"traced": lambda: traced(side, net, route, k)}

    def eager() -> dict:
        with labelled_progress():
            return steady_ops(make(batch, n + m), n, m)

    parts["eager"] = eager
    if spec["check_batch"] and batch != real:
        def real_batch() -> dict:
            with labelled_progress():
                return steady_ops(make(real, n + m), n, m)

        parts["eager_real_batch"] = real_batch
    if timed_steps:
        parts["eager_s_per_step"] = lambda: in_one_call(
            make(real, warm + timed_steps), warm, timed_steps, 0, device)["s_per_step"]
    if spec["compile"] != "none" and side == "after":
        if not accepts_compile(loop):
            out["compiled"] = f"{loop.__module__}.{loop.__name__} takes no compile="
        else:  # timed at the real batch, then counted in the same call: one compilation
            b = real if timed_steps else batch

            def compiled() -> dict:
                # every case compiles the same code (the loops' Step) for another network or
                # K: without a reset, the ninth in one process meets dynamo's recompile limit
                torch.compiler.reset()
                return in_one_call(make(b, warm + timed_steps + m, spec["compile"]), warm,
                                   timed_steps, m, device)

            parts["compiled"] = compiled
    for key, part in parts.items():
        try:
            out[key] = part()
        except Exception as e:
            out[key] = failure(e)
        # each part as it ends: what is left in the log if a timeout cuts the run short
        print("PART " + json.dumps([key, out[key]]), flush=True)
    if isinstance(out.get("compiled"), dict):
        out["compiled_s_per_step"] = out["compiled"].pop("s_per_step", None)
    return out


def child(side: str, spec: dict) -> None:
    """Measure every case of ``spec`` with this process's ``lmcpipe``; one JSON line each."""
    import lmcpipe

    device = torch.device(spec["device"])
    if device.type == "cpu":
        torch.set_num_threads(1)
    with contextlib.suppress(Exception):  # names the kernels torch.compile generates on a CPU
        import torch._inductor.config as inductor

        inductor.cpp.enable_kernel_profile = True
    for name, route, k in spec["cases"]:
        out = {"side": side, "net": name, "route": route, "k": k, "lmcpipe": lmcpipe.__file__}
        print(f"CASE {name} {route} K={k}", flush=True)
        try:
            out |= measure_case(side, spec, NETWORKS[name], route, k, device)
        except Exception as e:  # a case that cannot start says why; the others still run
            out["error"] = failure(e)
        print("RESULT " + json.dumps(out), flush=True)


# --- the parent: both sides, the table --------------------------------------------------------
def got(r: dict, key: str) -> dict:
    """A measured part of a result; {} where it is absent or failed (a string then)."""
    value = r.get(key)
    return value if isinstance(value, dict) else {}


def short(key: str, value) -> str:
    """A part of a case's result in a few words, for the progress lines."""
    if isinstance(value, float):
        return f"{key.removesuffix('_s_per_step')} {1e3 * value:.2f} ms/step"
    if not isinstance(value, dict):
        return f"{key} {value}"
    if "bytes" in value:
        return f"{value['bytes'] / 1e9:.3f} GB and {value['flops'] / 1e9:.2f} GFLOP/member-step"
    text = f"{key} {value['ops']:g} ops/step"
    if value.get("launches") is not None:
        text += f", {value['launches']:g} launch calls, {value['kernels']:g} kernels/step"
    return text


def measure(side: str, src: Path, spec: dict, log: Path) -> list[dict]:
    """Run ``child`` for one side with ``src`` first on PYTHONPATH; its results as they come."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(src), *filter(None, [os.environ.get("PYTHONPATH")])]))
    cmd = [sys.executable, __file__, "--child", side, "--spec", json.dumps(spec)]
    results, case = [], ""
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
        for line in proc.stdout:
            if line.startswith("PART "):
                key, value = json.loads(line[5:])
                print(f"  {side} {case}: {short(key, value)}", file=sys.stderr, flush=True)
            elif line.startswith("RESULT "):
                r = json.loads(line[7:])
                if not str(Path(r["lmcpipe"]).resolve()).startswith(str(src.resolve())):
                    raise SystemExit(f"{side}: imported {r['lmcpipe']}, not the tree at {src}")
                results.append(r)
                if "error" in r:
                    print(f"  {side} {case}: {r['error']}", file=sys.stderr, flush=True)
            elif line.startswith("CASE "):
                case = line[5:].strip()
    if proc.wait():
        print(f"{side}: the child failed (rc {proc.returncode}); its log {log} ends:\n"
              + "".join(log.read_text().splitlines(True)[-30:]), file=sys.stderr)
    return results


def before_tree(rev: str, into: Path) -> Path | None:
    """``src`` of the code at ``rev`` (``git archive``), or None where there is no history."""
    try:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "src/lmcpipe"],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    except (subprocess.CalledProcessError, FileNotFoundError) as e:
        print(f"before: no tree at {rev} ({e}); only the after side is measured",
              file=sys.stderr)
        return None
    return into / "src"


def cell(x, digits: int = 0) -> str:
    if x is None:
        return "n/a"
    return f"{x:,.{digits}f}" if digits or float(x).is_integer() else f"{x:,.1f}"


def si(x, unit: str) -> str:
    """``1.82 GB``, ``6.3 MB``: two decimals in G, one below."""
    if x is None:
        return "n/a"
    if x >= 1e9:
        return f"{x / 1e9:.2f} G{unit}"
    return f"{x / 1e6:.1f} M{unit}" if x >= 1e6 else f"{x / 1e3:.1f} k{unit}"


def issue_cell(key: tuple) -> str:
    q = ISSUE.get(key)
    if q is None:
        return ""
    return f"{q[0]} / {q[1]:g}" + (f" / {q[2] / 1e9:.2f} GB" if q[2] else "")


def table(results: list[dict]) -> str:
    by = {(r["side"], r["net"], r["route"], r["k"]): r for r in results}
    cases = sorted({key[1:] for key in by}, key=lambda c: (list(NETWORKS).index(c[0]),
                                                           c[1] == "stacked", c[2]))
    head = ["network", "K", "route", "before ops/step", "before ops/member-step",
            "after ops/step", "after ops/member-step", "issue's before (quoted): ops/step / "
            "per member / bytes", "before bytes/member-step", "after bytes/member-step",
            "FLOPs/member-step (before / after)", "compiled ops/step (after)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for net, route, k in cases:
        row = [net, str(k)]
        b, a = by.get(("before", net, route, k), {}), by.get(("after", net, route, k), {})
        row.append("single" if route == "single" else "stacked: " + " → ".join(
            r.get("stacked_route", "?") for r in (b, a)))
        for r in (b, a):
            ops = got(r, "eager").get("ops")
            row += [cell(ops), cell(None if ops is None else ops / k, 1)]
        row.append(issue_cell((net, route, k)))
        tb, ta = got(b, "traced"), got(a, "traced")
        row += [si(tb.get("bytes"), "B"), si(ta.get("bytes"), "B")]
        row.append(" / ".join(si(t.get("flops"), "FLOP") for t in (tb, ta)))
        comp = a.get("compiled")
        row.append("see below" if isinstance(comp, str) else cell(got(a, "compiled").get("ops")))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def validation(results: list[dict]) -> str:
    """The old code's counts against the issue's figures, the progress line counted every step
    as in the issue's short runs."""
    lines = ["| case | counted (old code, progress line every step) | issue | difference |",
             "|---|---|---|---|"]
    for r in results:
        q = ISSUE.get((r["net"], r["route"], r["k"]))
        if r["side"] != "before" or q is None:
            continue
        tag = f"{r['net']} {r['route']} K={r['k']}"
        if got(r, "eager"):
            ops = got(r, "eager")["ops_with_progress"]
            lines.append(f"| {tag} ops/step | {cell(ops)} | {q[0]} | {ops - q[0]:+g} |")
        if q[2] and got(r, "traced"):
            gb = got(r, "traced")["bytes"] / 1e9
            lines.append(f"| {tag} GB/member-step | {gb:.3f} | {q[2] / 1e9:.2f} | "
                         f"{gb - q[2] / 1e9:+.3f} |")
    return "\n".join(lines)


def extras(results: list[dict]) -> str:
    """Failures, the batch check, CUDA launches and kernels, timings: one line each."""
    lines = []
    for r in results:
        tag = f"{r['side']} {r['net']} {r['route']} K={r['k']}"
        lines += [f"- {tag} {key}: {v}" for key, v in r.items()
                  if isinstance(v, str) and (v.startswith("failed") or key == "compiled")]
        full, counted = got(r, "eager_real_batch"), got(r, "eager")
        if full and counted:
            lines.append(f"- {tag}: {full['ops']:g} ops/step at batch {NETWORKS[r['net']].batch}"
                         f", {counted['ops']:g} at the counting batch")
        for key in ("eager", "compiled"):
            e = got(r, key)
            if e.get("launches") is not None:
                lines.append(f"- {tag} {key}: {e['launches']:g} CUDA launch calls/step, "
                             f"{e['kernels']:g} CUDA kernels/step")
        timed = [(key, r.get(f"{key}_s_per_step")) for key in ("eager", "compiled")]
        timed = [f"{key} {1e3 * s:.2f} ms/step, {r['k'] / s:,.1f} member-steps/s"
                 for key, s in timed if isinstance(s, float)]
        if timed:
            lines.append(f"- {tag} timed: " + "; ".join(timed))
    return "\n".join(lines)


def report(settings: dict, results: list[dict]) -> None:
    """The table, the counter's validation and the notes, as markdown on stdout."""
    batch, warm = settings["ops_batch"] or "real", (settings["time"] or (3, 0))[0]
    batches = ", ".join(f"{n} {net.batch}" for n, net in NETWORKS.items())
    print(f"\n## Step profile: before ({settings['before']}) and after, {settings['device']}, "
          f"torch {settings['torch']}\n")
    compiled = "none measured" if settings["compile"] == "none" else (
        f"torch.compile mode {settings['compile']!r}, {settings['m']} steps after the first "
        f"{warm} of one call")
    print(f"Kernel ops per step: steady state, (run(n + m) - run(n)) / m with n = "
          f"{settings['n']}, m = {settings['m']}, at batch {batch} (the counts do not depend on "
          f"it), the progress line left out; compiled: {compiled}. "
          f"Bytes and FLOPs per member-step: forward + backward on the meta device at the real "
          f"batch ({batches}); after: the grouped route.\n")
    print(table(results))
    print("\nCounter validation against the issue's before table:\n")
    print(validation(results))
    notes = extras(results)
    if notes:
        print("\n" + notes)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nets", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    p.add_argument("--ks", nargs="+", type=int, default=[1, 4, 16, 32],
                   help="stack sizes of the stacked loop (the single-run loop always runs)")
    p.add_argument("--single", action=argparse.BooleanOptionalAction, default=True,
                   help="also the single-run loop (K = 1, route single)")
    p.add_argument("--n", type=int, default=2, help="steps of the shorter profiled run")
    p.add_argument("--m", type=int, default=2, help="steps the longer run adds")
    p.add_argument("--ops-batch", type=int, default=16,
                   help="batch of the op-count runs (0: the real batch)")
    p.add_argument("--check-batch", action="store_true",
                   help="also count every case at the real batch (slow), to show it is equal")
    p.add_argument("--compile", default="auto", help="compile mode of the after side's "
                   "compiled column: none, default, reduce-overhead (auto: reduce-overhead "
                   "on CUDA, default on the CPU)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--time", action="store_true",
                   help="also time eager against compiled steps (ms/step, members/s)")
    p.add_argument("--time-steps", type=int, nargs=2, default=[3, 20], metavar=("WARM", "N"))
    p.add_argument("--sides", nargs="+", default=["before", "after"], choices=["before", "after"])
    p.add_argument("--before", default=BEFORE_REV, help="git revision of the before side")
    p.add_argument("--quick", action="store_true", help="LeNet and ResNet-20 at K = 1, 16")
    p.add_argument("--json", type=Path, help="also write the settings and results here")
    p.add_argument("--table-from", type=Path, nargs="+", metavar="JSON",
                   help="print the table of results saved by --json (several: joined)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--spec", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args.child, json.loads(args.spec))
    if args.table_from:
        saved = [json.loads(path.read_text()) for path in args.table_from]
        return report(saved[0]["settings"], [r for d in saved for r in d["results"]])
    if args.quick:
        args.nets, args.ks = ["lenet", "resnet20"], [1, 16]
    compile = args.compile if args.compile != "auto" else (
        "reduce-overhead" if args.device.startswith("cuda") else "default")
    cases = [(n, "single", 1) for n in args.nets if args.single]
    cases += [(n, "stacked", k) for n in args.nets for k in args.ks]
    spec = {"cases": cases, "n": args.n, "m": args.m, "ops_batch": args.ops_batch,
            "check_batch": args.check_batch, "compile": compile, "device": args.device,
            "time": args.time_steps if args.time else None}
    print(f"step profile: {args.device}, torch {torch.__version__}, n {args.n} m {args.m}, "
          f"ops counted at batch {args.ops_batch or 'real'}, compiled: {compile}",
          file=sys.stderr)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for side in args.sides:
            src = REPO / "src" if side == "after" else before_tree(args.before, Path(tmp))
            if src is not None:
                results += measure(side, src, spec, Path(tmp) / f"{side}.log")
    settings = {**spec, "before": args.before, "torch": torch.__version__}
    report(settings, results)
    if args.json:
        args.json.write_text(json.dumps({"settings": settings, "results": results}, indent=1))


if __name__ == "__main__":
    main()
