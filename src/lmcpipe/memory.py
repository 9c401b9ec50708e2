"""Device memory of a training job, estimated without a GPU: how many cohort members one stacked
step holds (``stack_size``) and whether one member's batch must be split into micro-batches
(``micro_batch``).

Why estimate: a stack chosen by trial and error costs an out-of-memory crash per try, on a
cluster a whole queued attempt; and the numbers are needed before the job's first step (the
cost preview and the cluster resources read them too). ``trace`` runs the real network
(``lmcpipe.models.build``) on the meta device, which does shape inference only: ResNet-50 at
batch 1024 takes about 0.2 s and no memory. Results are cached per (network, dataset, batch,
precision, image size).

One member's bytes at batch B, forward/backward in micro-batches of m (``Footprint``):

``params``, ``grads``
    fp32 weights and buffers, and one fp32 gradient per parameter (alive across steps:
    ``training.single.train`` drops the old gradients only after the next forward).
``optimizer``
    SGD momentum: 1x the parameters (none without momentum); Adam: 2x.
``cast``
    bf16 only: autocast's bfloat16 copies of the conv/linear weights, kept for the backward.
``batch``
    The step's B images as fp32 and their labels; twice the images in a stacked step on the
    vmap route, which holds each member's batch and their stacked copy (the grouped route reads
    the members' one gathered batch in place, as a single run reads its own).
``saved``
    What autograd saves for the backward of one micro-batch: every tensor the forward hands to
    ``saved_tensors_hooks``, counted once per storage, parameters left out. At ``bf16`` the
    network is traced in bfloat16 (autocast does not act on meta tensors; under it every conv
    and linear output, and all that follows, is bf16). channels_last changes strides, not sizes.
``transient``
    2x the largest saved tensor: the gradients of an op's output and input while the backward
    passes the largest layer.
``allowance``
    ``ALLOWANCE`` (10 %) of batch + saved + transient, for cuDNN workspaces and the caching
    allocator's rounding.

The fixed part of a job (``fixed_bytes``): the CUDA context and library handles
(``CUDA_CONTEXT``, 1 GiB) and the dataset tensors the job holds on the device (MNIST and CIFAR
whole, in fp32; ImageNet stays memory-mapped on the host).

Checked against the CPU (``bench/member_memory.py``: the peak RSS a fp32 training step adds to
the resting state, 1 thread): saved + transient is 4-21 % above the measured peak for
ResNet-20 (plain and 4 stacked), VGG-16 (plain and 2 stacked; stacked on the grouped route,
with oneDNN on or off: a grouped member's peak is a single run's), ResNet-50 at 224 px and
Inception-v3 at 299 px. A CUDA step adds cuDNN workspaces the CPU lacks (``ALLOWANCE``,
``MARGIN``); no GPU has checked these figures yet.

A stacked member is traced on the route its network trains by (``stacked_route``): the
grouped route (``training.grouped``: K members as one network of grouped layers) saves what a
single run saves, per member; the vmap route, left for networks that cannot be grouped
(Inception-v3), saves more, as vmap's batching rules split BatchNorm's affine step into separate
ops (ResNet-20 1.5x, VGG-16 1.6x a single run's saved bytes when traced that way).

The rules, D = the device's memory (``device_bytes``: a GPU's total, divided among the jobs
that share it), F = the fixed part, M(B, m) = one member's total, M_s(B) = one member's total
in a stacked step (``stacked``, on its route):

* stack (``stack_size``): floor((D x (1 - MARGIN) - F) / M_s(B)) members per stacked step, at
  least 1, at most the members to train. MARGIN (10 %) stays free for what the estimate misses.
* micro-batch (``micro_batch``): B when F + M(B, B) <= D x (1 - MARGIN), else the largest
  divisor m of B with F + M(B, m) within it. A member that needs micro-batches trains alone.

This module imports torch only inside its functions, so the cost preview and the Snakemake
rules can import it cheaply.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from functools import cache
from typing import Any

from lmcpipe.data.registry import DATASETS
from lmcpipe.errors import InputError
from lmcpipe.hparams import TrainHParams

GiB = 2**30
MARGIN = 0.10  # of the device's memory, never planned for
ALLOWANCE = 0.10  # of a member's batch-dependent bytes: cuDNN workspaces, allocator rounding
CUDA_CONTEXT = 1 * GiB  # CUDA context, cuBLAS/cuDNN handles and their loaded kernels
EVAL_BATCH = 5000  # lmcpipe.evaluate.evaluate's chunk, where memory allows
TEST_SIZES = {"mnist": 10_000, "fashion_mnist": 10_000, "cifar10": 10_000, "cifar100": 10_000}


@dataclass(frozen=True)
class Workload:
    """What a member's memory depends on (the fields of TrainHParams that matter)."""

    model: str
    dataset: str
    batch_size: int
    precision: str = "fp32"
    image_size: int = 0
    optimizer: str = "sgd"
    momentum: float = 0.0

    @classmethod
    def of(cls, hp: TrainHParams) -> Workload:
        return cls(hp.model, hp.dataset, hp.batch_size, hp.precision, hp.image_size,
                   hp.optimizer, hp.momentum)

    @property
    def input_shape(self) -> tuple[int, ...]:
        shape = DATASETS[self.dataset].input_shape
        return (shape[0], self.image_size, self.image_size) if self.image_size else shape


@dataclass(frozen=True)
class Footprint:
    """One member's device bytes in a training step (module docstring: what each part is)."""

    params: int
    grads: int
    optimizer: int
    cast: int
    batch: int
    saved: int
    transient: int
    allowance: int

    @property
    def total(self) -> int:
        return sum(getattr(self, f.name) for f in fields(self))


@dataclass(frozen=True)
class Trace:
    """What a forward of one batch on the meta device tells: parameter bytes (fp32), the
    conv/linear weight count (autocast casts those), saved bytes and the largest saved tensor."""

    param_bytes: int
    cast_weights: int
    saved: int
    largest: int


ROUTES = ("solo", "grouped", "vmap")


@cache
def stacked_route(model: str, dataset: str) -> str:
    """The route a stacked step of this network takes: ``grouped`` when
    ``training.grouped.groupable`` (built on the meta device, so free), else ``vmap``."""
    import torch

    from lmcpipe import models
    from lmcpipe.training.grouped import groupable

    with torch.device("meta"):
        return "grouped" if groupable(models.build(model, dataset)) else "vmap"


@cache
def trace(model: str, dataset: str, batch: int, precision: str = "fp32", image_size: int = 0,
          route: str = "solo") -> Trace:
    """One training forward of ``batch`` examples on the meta device, with every tensor
    autograd saves for the backward collected by ``saved_tensors_hooks``; per member.

    ``route``: ``solo``, the plain network; ``grouped`` or ``vmap``, two members of a stacked
    step on that route (``grouped.group(net, 2)`` and ``member_losses``; ``functional_call``
    under ``vmap``), halved. Batch 1 is half of batch 2 (BatchNorm refuses one value per
    channel, as on Inception-v3's auxiliary head)."""
    if route not in ROUTES:
        raise ValueError(f"unknown route '{route}' (known: {', '.join(ROUTES)})")
    if batch == 1:
        two = trace(model, dataset, 2, precision, image_size, route)
        return Trace(two.param_bytes, two.cast_weights, -(-two.saved // 2), -(-two.largest // 2))
    import torch
    from torch import nn
    from torch.autograd.graph import saved_tensors_hooks

    from lmcpipe import models
    from lmcpipe.training.grouped import group, member_losses

    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    shape = Workload(model, dataset, batch, image_size=image_size).input_shape
    k = 1 if route == "solo" else 2
    with torch.device("meta"):
        net = models.build(model, dataset, image_size)
        param_bytes = sum(t.numel() * 4 for t in (*net.parameters(), *net.buffers())
                          if t.is_floating_point())
        cast = sum(m.weight.numel() for m in net.modules() if isinstance(m, nn.Linear | nn.Conv2d))
        net = (group(net, k) if route == "grouped" else net).to(dtype).train()
        x = torch.empty((k, batch, *shape), dtype=dtype)
        y = torch.zeros((k, batch), dtype=torch.long)
        params = {n: torch.empty((k, *p.shape), dtype=dtype, requires_grad=True)
                  for n, p in net.named_parameters()} if route == "vmap" else {}
        buffers = {n: torch.empty((k, *b.shape), dtype=b.dtype) for n, b in net.named_buffers()}
    weights = {id(p.untyped_storage()) for p in (*net.parameters(), *params.values())}
    saved: dict[int, Any] = {}  # id -> storage; holding it keeps the id from being reused

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()  # one Python object per storage: views share it
        if id(storage) not in weights:
            saved[id(storage)] = storage
        return t

    with saved_tensors_hooks(pack, lambda t: t):
        if route == "vmap":
            _stacked_loss(net)(params, buffers, x, y)
        elif route == "grouped":  # the members' (B*k) batch viewed member-major, (B, k*C, ...)
            member_losses(net(x.view(batch, k * shape[0], *shape[1:])), y.view(batch, k))
        else:
            net.training_loss(x[0], y[0])
    sizes = [s.nbytes() for s in saved.values()]
    return Trace(param_bytes, cast, sum(sizes) // k, max(sizes, default=0) // k)


def _stacked_loss(net: Any) -> Any:
    """The members' losses as ``training.stacked._train_stacked`` computes them, rebuilt here:
    importing training.stacked would make this module, which ``training.single`` uses, import the
    training loop back."""
    from torch import nn
    from torch.func import functional_call, vmap

    class Loss(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: Any, y: Any) -> Any:
            return self.net.training_loss(x, y)

    module = Loss()

    def member_loss(p: dict, b: dict, x: Any, y: Any) -> Any:
        state = {f"net.{n}": t for n, t in p.items()} | {f"net.{n}": t for n, t in b.items()}
        return functional_call(module, state, (x, y))

    return vmap(member_loss, in_dims=(0, 0, 0, 0), randomness="different")


def footprint(w: Workload, micro: int = 0, stacked: bool = False) -> Footprint:
    """One member's bytes at ``w.batch_size``, forward/backward in micro-batches of ``micro``
    (0: the whole batch); ``stacked``: as a member of a stacked step, on the route its network
    takes (``stacked_route``, ``trace``)."""
    route = stacked_route(w.model, w.dataset) if stacked else "solo"
    t = trace(w.model, w.dataset, micro or w.batch_size, w.precision, w.image_size, route)
    moments = 2 if w.optimizer == "adam" else (1 if w.momentum else 0)
    copies = 2 if route == "vmap" else 1
    batch = w.batch_size * (copies * math.prod(w.input_shape) * 4 + 8)
    transient = 2 * t.largest
    return Footprint(params=t.param_bytes, grads=t.param_bytes, optimizer=moments * t.param_bytes,
                     cast=2 * t.cast_weights if w.precision == "bf16" else 0, batch=batch,
                     saved=t.saved, transient=transient,
                     allowance=int(ALLOWANCE * (batch + t.saved + transient)))


def dataset_bytes(dataset: str) -> int:
    """The dataset tensors a job holds on the device, from the nominal sizes: MNIST-style and
    CIFAR sets whole (fp32 images, int64 labels); none for image folders (host-resident)."""
    info = DATASETS[dataset]
    if info.image_folder:
        return 0
    n = info.train_size + TEST_SIZES.get(dataset, info.train_size // 5)
    return n * (math.prod(info.input_shape) * 4 + 8)


def resident_bytes(data: Any) -> int:
    """The bytes a loaded ``lmcpipe.data.Data`` holds on its device (the measured counterpart
    of ``dataset_bytes``)."""
    tensors = (data.train_x, data.train_y, data.test_x, data.test_y, data.mean, data.std)
    return sum(t.numel() * t.element_size() for t in tensors
               if t is not None and t.device == data.device)


def fixed_bytes(dataset_on_device: int) -> int:
    """A job's bytes that do not depend on its members: the CUDA context and the data."""
    return CUDA_CONTEXT + dataset_on_device


def budget(device: int, fixed: int, margin: float = MARGIN) -> int:
    """The bytes members may use: the device's memory less the margin and the fixed part."""
    return int(device * (1 - margin)) - fixed


def stack_size(device: int, member: int, fixed: int, members: int,
               margin: float = MARGIN) -> int:
    """Members per stacked step: floor((device x (1 - margin) - fixed) / member), at least 1
    (one member that does not fit trains alone, in micro-batches), at most ``members``."""
    return max(1, min(members, budget(device, fixed, margin) // member))


def divisors(n: int) -> list[int]:
    """The divisors of ``n``, largest first."""
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted(set(small) | {n // d for d in small}, reverse=True)


def fitting_micro_batch(w: Workload, device: int, fixed: int, margin: float = MARGIN) -> int:
    """The whole batch when one member fits ``device``, else the largest divisor of the batch
    that does; InputError when not even one example fits."""
    room = budget(device, fixed, margin)
    for m in divisors(w.batch_size):
        if footprint(w, m).total <= room:
            return m
    raise InputError(
        f"one example of {w.model} ({w.precision}) needs {footprint(w, 1).total / GiB:.2f} GiB, "
        f"more than the {room / GiB:.2f} GiB this device leaves after {fixed / GiB:.2f} GiB of "
        "context and data (train.precision: bf16 halves the activations)")


def device_bytes(device: Any) -> int | None:
    """The memory of a CUDA device this job may plan with: its total
    (``torch.cuda.get_device_properties``) divided among the jobs sharing it
    (``resources.jobs_per_gpu``, from the job's GPU slot, ``lmcpipe.slots``); None for the CPU,
    whose memory the stack and micro-batch rules do not plan."""
    import torch

    from lmcpipe import slots

    device = torch.device(device)
    if device.type != "cuda":
        return None
    slot = slots.held()
    share = slot.jobs_per_gpu if slot is not None and slot.kind == "gpu" else 1
    return torch.cuda.get_device_properties(device).total_memory // share


def micro_batch(hp: TrainHParams, data: Any, earlier: int | None = None) -> int:
    """Examples per forward/backward of a run: ``hp.micro_batch`` when set; else on CUDA
    ``fitting_micro_batch`` for the device of ``data`` (a loaded ``lmcpipe.data.Data``), and the
    whole batch elsewhere. ``earlier``: the micro-batch a resumed run was trained with, kept
    when it still fits (it does when it is not larger), so a resumed run continues as it began
    on any device at least as large."""
    if hp.micro_batch:
        return hp.micro_batch
    device = device_bytes(data.device)
    if device is None:
        return hp.batch_size
    chosen = fitting_micro_batch(Workload.of(hp), device, fixed_bytes(resident_bytes(data)))
    return min(chosen, earlier) if earlier else chosen


def eval_batch(hp: TrainHParams, data: Any) -> int:
    """Examples per no-grad evaluation chunk: ``EVAL_BATCH``, or on CUDA fewer when the chunk
    would not fit beside the run's weights, gradients and optimiser state (one member's: the
    other members of a stacked cohort are CIFAR networks of a few MB; ``data``: the loaded
    ``lmcpipe.data.Data``, whose device decides). A no-grad forward keeps about 3 of its largest
    tensors alive, plus the chunk's prepared images: 5000 ImageNet images through ResNet-50 at
    224 px would need 51 GB in fp32 (27 GB in bf16)."""
    device = device_bytes(data.device)
    if device is None:
        return EVAL_BATCH
    w = Workload.of(hp)
    f = footprint(w)
    per_example = (3 * trace(w.model, w.dataset, 1, w.precision, w.image_size).largest
                   + math.prod(w.input_shape) * 4)
    room = budget(device, fixed_bytes(resident_bytes(data))) - f.params - f.grads - f.optimizer
    return max(1, min(EVAL_BATCH, room // per_example))
