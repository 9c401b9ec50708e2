"""The work of a training step and of an evaluation, counted without running either.

``step_cost`` and ``eval_cost`` trace the real network (``lmcpipe.models.build``) on the meta
device, where every op runs shape inference only: ResNet-50 at batch 1024 costs no memory and
about a second. Two counts come out:

``flops``
    ``torch.utils.flop_counter.FlopCounterMode``: the multiply-adds of matmuls and convolutions
    (2 FLOPs each), forward and backward. Elementwise ops (ReLU, BatchNorm, the loss, the
    optimiser) count 0 there, as in every FLOP figure quoted for these networks; they are
    bandwidth-bound, and ``bytes`` holds their cost.
``bytes``
    Memory traffic, modelled as: every aten op that is not a view reads each input tensor once
    and writes each output once (an in-place op reads and writes its operand); summed over the
    ops of the step. No cache reuse between ops (each op's tensors come from device memory) and
    none inside one (a convolution reads its input once): a fair roofline model for GPUs, whose
    caches are far smaller than a layer's activations at training batch sizes. The optimiser
    update is added as one fused Adam pass over the parameters (reads weight, gradient and two
    moments, writes weight and moments: 7 x the fp32 parameter bytes); SGD with momentum moves
    5/7 of that, which the estimate does not distinguish (the update is under 1 % of a
    convolutional step's traffic).

Precision: ``bf16`` traces the network in bfloat16 (autocast does not act on meta tensors), so
activations and gradients count 2 bytes; the optimiser's master weights stay fp32. ``fp32`` and
``tf32`` move the same bytes. Augmentation and the uint8 -> float conversion of the batch are
not counted (they are per-example and small next to a network's layers).

Both functions are cached in-process (``functools.cache``) and on disk (a JSON file in the
user's cache directory, ``cache_path``), keyed by the arguments, the torch version and a hash
of the network sources, so a Snakemake start or ``lmcpipe estimate`` traces a network once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

EVAL_BATCH = 5000  # lmcpipe.evaluate.evaluate's chunk


@dataclass(frozen=True)
class StepCost:
    """The work of one member-step (training) or of one evaluation (forward only).

    ``flops``: matmul/convolution FLOPs; ``bytes``: modelled memory traffic (module docstring);
    ``params``: trainable parameters of one member; ``examples``: images processed."""

    flops: float
    bytes: float
    params: int = 0
    examples: int = 0

    def __add__(self, other: StepCost) -> StepCost:
        return StepCost(self.flops + other.flops, self.bytes + other.bytes,
                        max(self.params, other.params), self.examples + other.examples)

    def scaled(self, n: float) -> StepCost:
        """``n`` times this work (n steps, n members)."""
        return StepCost(self.flops * n, self.bytes * n, self.params, int(self.examples * n))


def cache_dir() -> Path:
    """lmcpipe's per-user cache: ``$XDG_CACHE_HOME/lmcpipe``, else ``~/.cache/lmcpipe``. It holds
    only figures that can be recomputed (FLOP counts, calibrations); deleting it is safe."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lmcpipe"


def cache_path() -> Path:
    return cache_dir() / "workload.json"


def read_json(path: Path) -> dict:
    """A cache file's entries; {} when it is absent or unreadable (it is only a cache)."""
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def write_json_entry(path: Path, key: str, value: object) -> None:
    """Add one entry to a cache file, atomically (concurrent writers may lose an entry, never
    corrupt the file); a cache that cannot be written is skipped silently."""
    from lmcpipe.atomic import write_atomic

    entries = read_json(path)
    entries[key] = value
    with contextlib.suppress(OSError):
        write_atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(entries, indent=1)))


@cache
def _sources_digest() -> str:
    """What a count depends on besides its arguments: torch and the network definitions."""
    import torch

    from lmcpipe import codever

    h = hashlib.sha256(torch.__version__.encode())
    h.update(codever.version("models.registry").encode())
    return h.hexdigest()[:16]


def _cached(kind: str, args: tuple, compute) -> StepCost:
    key = f"{kind}:{':'.join(map(str, args))}:{_sources_digest()}"
    found = read_json(cache_path()).get(key)
    if isinstance(found, dict):
        try:
            return StepCost(**found)
        except TypeError:
            pass
    cost = compute()
    write_json_entry(cache_path(), key, asdict(cost))
    return cost


def _input_shape(dataset: str, image_size: int) -> tuple[int, ...]:
    from lmcpipe.data.registry import DATASETS

    shape = DATASETS[dataset].input_shape
    return (shape[0], image_size, image_size) if image_size else shape


def _trace(model: str, dataset: str, batch_size: int, precision: str, image_size: int,
           train: bool) -> StepCost:
    """Count one forward (+ backward when ``train``) of a batch on the meta device."""
    import torch
    from torch.utils._pytree import tree_leaves
    from torch.utils.flop_counter import FlopCounterMode

    from lmcpipe import models
    from lmcpipe.data.registry import DATASETS

    class _Traffic(torch.utils._python_dispatch.TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.bytes = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if not func.is_view:
                self.bytes += sum(t.numel() * t.element_size()
                                  for t in tree_leaves((args, kwargs, out))
                                  if isinstance(t, torch.Tensor))
            return out

    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    with torch.device("meta"):
        net = models.build(model, dataset, image_size).to(dtype)
        x = torch.empty((batch_size, *_input_shape(dataset, image_size)), dtype=dtype)
        y = torch.randint(0, DATASETS[dataset].num_classes, (batch_size,))
    params = sum(p.numel() for p in net.parameters())
    flops, traffic = FlopCounterMode(display=False), _Traffic()
    net.train(train)
    with flops, traffic:
        if train:
            net.training_loss(x, y).backward()
        else:
            with torch.no_grad():
                torch.nn.functional.cross_entropy(net(x), y, reduction="sum")
    update = 7 * 4 * params if train else 0
    return StepCost(float(flops.get_total_flops()), float(traffic.bytes + update), params,
                    batch_size)


@cache
def step_cost(model: str, dataset: str, batch_size: int, precision: str,
              image_size: int = 0) -> StepCost:
    """The work of one member's training step: forward and backward of a batch of
    ``batch_size`` and the optimiser update (module docstring for what is counted)."""
    return _cached("step", (model, dataset, batch_size, precision, image_size),
                   lambda: _trace(model, dataset, batch_size, precision, image_size, True))


@cache
def eval_cost(model: str, dataset: str, examples: int, precision: str,
              image_size: int = 0) -> StepCost:
    """The work of evaluating ``examples`` images without gradients, in the chunks of
    ``lmcpipe.evaluate`` (one training-set or test-set evaluation; an interpolation path is
    ``alphas`` x both splits of these)."""
    if examples <= 0:
        return StepCost(0.0, 0.0)

    def chunk(n: int) -> StepCost:
        return _cached("eval", (model, dataset, n, precision, image_size),
                       lambda: _trace(model, dataset, n, precision, image_size, False))

    full, rest = divmod(examples, EVAL_BATCH)
    total = chunk(EVAL_BATCH).scaled(full) if full else StepCost(0.0, 0.0)
    return total + chunk(rest) if rest else total
