"""Loss and classification error of a network on a split, in large no-grad batches.

Two forms: ``evaluate`` runs one network; ``evaluate_members`` runs k members of one
architecture held by one grouped network (``lmcpipe.training.grouped``: layers holding the k
members' tensors, member-major channels, logits ``(B, k * classes)``) on a SHARED input, so a
chunk of images is read and prepared once and each layer is one kernel for all members. The
stacked training loop evaluates its members this way, and interpolation evaluates a pair's alpha
points this way (``lmcpipe.interpolate``).

A member's figures equal its own evaluation up to float rounding: the grouped convolution and the
batched matmul sum in another order than the plain layers, so a logit differs in the last bits
and an example whose two top logits are that close may flip (tests/test_stacked_eval.py states
and checks the tolerance).

Chunk sizes: ``memory.eval_batch`` for one network; ``member_batch`` for k members, whose
activations are k times one network's, so the chunk shrinks with k.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lmcpipe import memory
from lmcpipe.hparams import TrainHParams
from lmcpipe.training.grouped import split_logits


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 5000,
             prepare=None) -> tuple[float, float]:
    """Mean cross-entropy and error rate (fraction misclassified).

    ``prepare`` turns a stored chunk into model input (``Data.prepare``: uint8 -> normalised).
    """
    was_training = model.training
    model.eval()
    loss = wrong = None
    for i in range(0, len(x), batch):
        chunk = x[i : i + batch]
        out = model(prepare(chunk) if prepare else chunk)
        target = y[i : i + batch].to(out.device)  # images may be host-resident (ImageNet)
        part = nn.functional.cross_entropy(out, target, reduction="sum").double()
        miss = (out.argmax(1) != target).sum()
        loss, wrong = (part, miss) if loss is None else (loss + part, wrong + miss)
    model.train(was_training)
    n = len(x)
    return float(loss) / n, float(wrong) / n


@torch.no_grad()
def evaluate_members(net: nn.Module, k: int, x: torch.Tensor, y: torch.Tensor, batch: int,
                     prepare=None) -> list[tuple[float, float]]:
    """``evaluate`` of each of the ``k`` members of the grouped network ``net``, in one pass:
    member j's (mean cross-entropy, error rate), j = 0 .. k-1.

    Every chunk of ``batch`` examples goes through ``net`` once, shared by all members; the
    logits ``(B, k * classes)`` are split member-major (member j's classes at
    ``j * classes : (j + 1) * classes``). Each member's loss is summed per chunk in float64 and
    its misclassified examples counted on the device, so the host syncs once per split, not
    once per member or chunk.
    """
    was_training = net.training
    net.eval()
    loss = wrong = None
    for i in range(0, len(x), batch):
        chunk = x[i : i + batch]
        out = net(prepare(chunk) if prepare else chunk)
        target = y[i : i + batch].to(out.device)
        logits = split_logits(out, k)  # (B, k, classes), a view for either output layout
        per_example = nn.functional.cross_entropy(
            logits.transpose(1, 2), target.unsqueeze(1).expand(-1, k), reduction="none")
        part = per_example.double().sum(0)  # (k,)
        miss = (logits.argmax(2) != target.unsqueeze(1)).sum(0)  # (k,)
        loss, wrong = (part, miss) if loss is None else (loss + part, wrong + miss)
    net.train(was_training)
    n = len(x)
    return [(float(lo) / n, float(w) / n) for lo, w in zip(loss.cpu(), wrong.cpu(), strict=True)]


def splits(data, train_examples: int = 0) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The evaluation sets: the (optionally truncated) training set and the test set."""
    n = train_examples or len(data.train_x)
    return {"train": (data.train_x[:n], data.train_y[:n]), "test": (data.test_x, data.test_y)}


def evaluate_splits(model: nn.Module, data, train_examples: int = 0, batch: int = 5000
                    ) -> dict[str, tuple[float, float]]:
    return {name: evaluate(model, x, y, batch, prepare=data.prepare)
            for name, (x, y) in splits(data, train_examples).items()}


def evaluate_members_splits(net: nn.Module, k: int, data, train_examples: int, batch: int
                            ) -> list[dict[str, tuple[float, float]]]:
    """``evaluate_splits`` of each member of the grouped network ``net``: one dict per member,
    split -> (loss, error), each split read once for all members."""
    per_split = {name: evaluate_members(net, k, x, y, batch, prepare=data.prepare)
                 for name, (x, y) in splits(data, train_examples).items()}
    return [{name: figures[j] for name, figures in per_split.items()} for j in range(k)]


def _member_sizes(hp: TrainHParams, data) -> tuple[int, int, int, memory.Footprint] | None:
    """On CUDA: (bytes the members may use, activation bytes of one member-example in a no-grad
    forward, bytes of one prepared input example, one member's training footprint); None
    elsewhere (the CPU's memory is not planned). A no-grad forward keeps about 3 of its largest
    tensors alive (``memory.eval_batch``); with k members each of them is k times as large, and
    the shared input is held once."""
    device = memory.device_bytes(data.device)
    if device is None:
        return None
    w = memory.Workload.of(hp)
    largest = memory.trace(w.model, w.dataset, 1, w.precision, w.image_size).largest
    room = memory.budget(device, memory.fixed_bytes(memory.resident_bytes(data)))
    return room, 3 * largest, math.prod(w.input_shape) * 4, memory.footprint(w)


def member_batch(hp: TrainHParams, data, k: int, training_state: bool = True) -> int:
    """Examples per chunk when ``k`` members are evaluated together (``evaluate_members``).

    At k = 1 this is ``memory.eval_batch``. The CPU (no memory plan): ``memory.eval_batch // k``,
    so a chunk's activations are those of one network's chunk (30 ResNet-20 alpha points at
    5000 examples would hold 10 GB per activation). CUDA: the largest chunk whose k activations
    and shared images fit beside the members' state: weights, and with ``training_state`` (the
    stacked training loop) their gradients and optimiser moments too; interpolation holds
    weights only."""
    sizes = _member_sizes(hp, data)
    if sizes is None:
        return max(1, memory.eval_batch(hp, data) // k)
    room, activation, image, f = sizes
    state = f.params + (f.grads + f.optimizer if training_state else 0)
    return max(1, min(memory.EVAL_BATCH // k, (room - k * state) // (k * activation + image)))


def members_per_pass(hp: TrainHParams, data, wanted: int, examples: int) -> int:
    """How many of ``wanted`` members (weights only) one no-grad pass of ``examples`` examples
    holds: all of them on the CPU; on CUDA as many as fit (at least 1). Interpolation's
    BatchNorm recompute needs this: it runs whole training batches (their statistics must be
    the batch's), so it is the number of members, not the chunk, that gives way."""
    sizes = _member_sizes(hp, data)
    if sizes is None:
        return wanted
    room, activation, image, f = sizes
    return max(1, min(wanted, (room - examples * image) // (examples * activation + f.params)))
