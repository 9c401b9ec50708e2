"""Error and loss along the straight line between the two copies of a pair.

W(alpha) = alpha * W1 + (1 - alpha) * W2 at evenly spaced alpha in [0, 1]. Both copies share the
mask, so pruned weights are zero at every alpha. The barrier (instability) is the largest error on
the path minus the mean of the two endpoint errors (paper A, section 3).

BatchNorm running statistics are either interpolated with the weights (``bn_mode: interpolate``)
or recomputed at each alpha from training batches (``recompute``): interpolated statistics can
describe the blended network badly ("variance collapse", Jordan et al. 2023, REPAIR), and what
paper A did is not known, so both are offered and recorded in the tables.

Two routes give the same path (``tests/test_stacked_eval.py`` states the tolerance):

* the loop: one network, loaded with each alpha's weights in turn, 30 passes over the data;
* stacked: the alpha points are the members of one grouped network
  (``lmcpipe.training.grouped``): all points are blended in one broadcast op per tensor, the
  BatchNorm recompute is one train-mode pass over the BN batches for all points, and each split
  is read once for all points (``evaluate.evaluate_members``). Networks that cannot be grouped
  (Inception-v3) always take the loop.

``default_stacked`` says which route runs where, and why.

Precision: every point runs under the autocast of training's evaluation
(``devices.autocast``: bf16 when ``train.precision`` is bf16), so alpha = 0 and 1 reproduce
the copies' recorded errors; the BatchNorm recompute too, so the statistics describe the
activations the evaluation computes.

The entrypoints ``lmcpipe interpolate`` and ``interpolate-pairs`` are ``lmcpipe.stages.interpolate``
and ``.interpolate_pairs``. Each path gets a provenance record (``lmcpipe.provenance``) with the
wall time of its own interpolation.
"""

from __future__ import annotations

import time

import pandas as pd
import torch
from torch import nn

from lmcpipe import atomic, csvfiles, data, memory, models, provenance
from lmcpipe.barrier import barrier
from lmcpipe.devices import autocast
from lmcpipe.evaluate import (
    evaluate_members_splits,
    evaluate_splits,
    member_batch,
    members_per_pass,
)
from lmcpipe.hparams import InterpHParams, TrainHParams
from lmcpipe.seeds import generator
from lmcpipe.training.grouped import group, groupable

COLUMNS = ["alpha", "split", "loss", "error"]


def blend(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], alpha: float
          ) -> dict[str, torch.Tensor]:
    """alpha * a + (1 - alpha) * b for floating tensors; integer buffers are taken from a."""
    return {k: (alpha * a[k] + (1 - alpha) * b[k]) if a[k].is_floating_point() else a[k]
            for k in a}


def blend_all(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], alphas: torch.Tensor
              ) -> dict[str, torch.Tensor]:
    """``blend`` at every alpha at once: each tensor stacked on a leading dim of len(alphas),
    one broadcast expression per tensor; point j is bit-identical to ``blend(a, b, alphas[j])``
    (the same float32 products and sum). Integer buffers are a's, repeated."""
    out = {}
    for key, t in a.items():
        if t.is_floating_point():
            w = alphas.to(t.device, t.dtype).view(-1, *([1] * t.dim()))
            out[key] = w * t + (1 - w) * b[key]
        else:
            out[key] = t.expand(len(alphas), *t.shape).clone()
    return out


def batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def recompute_bn(model: nn.Module, x: torch.Tensor, batch_size: int, batches: int,
                 prepare=None) -> None:
    """Reset BatchNorm running statistics to their cumulative average over training batches.

    The batches are the first ``batches * batch_size`` examples of a fixed permutation (seeded,
    the same for every alpha and pair), without augmentation; weights are untouched. A grouped
    network's BatchNorm layers hold every member's statistics, so one pass recomputes them all.
    """
    layers = batchnorms(model)
    if not layers:
        return
    momenta = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    perm = torch.randperm(len(x), generator=generator("bn")).to(x.device)
    was_training = model.training
    model.train()
    for i in range(batches):
        idx = perm[i * batch_size : (i + 1) * batch_size]
        if len(idx):
            model(prepare(x[idx]) if prepare else x[idx])
    model.train(was_training)
    for m, momentum in zip(layers, momenta, strict=True):
        m.momentum = momentum


def default_stacked(model: nn.Module, device: torch.device) -> bool:
    """Whether ``interpolate`` takes the stacked route when not told: on CUDA when the network
    can be grouped; never on the CPU.

    Why not on the CPU: it gains nothing there and costs exactness. ``bench/eval_stacked.py``
    (2000 + 2000 examples, 1 thread, under load) measured the stacked pass at 1.01x the loop's
    time for LeNet-300-100 (30 points), 0.93x and 1.27x for ResNet-20 (5 points; BN statistics
    interpolated, recomputed). A CPU core is busy with one network's chunk of thousands of
    examples already: both routes do the same multiply-adds, and stacking saves only the per-op
    dispatch that such chunks amortise. The loop, meanwhile, computes the endpoints exactly as
    training's evaluation did (the same function and chunks), the stacked pass only within
    float rounding (``tests/test_stacked_eval.py``). On a GPU one small network's layers use a
    fraction of the device and each op is a kernel launch; one pass for all points replaces
    the points' separate passes, launches and reads of the data."""
    return device.type == "cuda" and groupable(model)


def _rows(alphas: list[float], metrics: list[dict[str, tuple[float, float]]]) -> list[dict]:
    return [{"alpha": alpha, "split": split, "loss": loss, "error": err}
            for alpha, m in zip(alphas, metrics, strict=True)
            for split, (loss, err) in m.items()]


def _loop(model: nn.Module, a: dict[str, torch.Tensor], b: dict[str, torch.Tensor],
          dataset: data.Data, hp: TrainHParams, ip: InterpHParams, alphas: torch.Tensor
          ) -> list[dict]:
    """One network, each alpha in turn; evaluated in training's evaluation chunks
    (``memory.eval_batch``), so the endpoints are computed exactly as ``eval_rows`` did."""
    batch, metrics = memory.eval_batch(hp, dataset), []
    for alpha in alphas.tolist():
        model.load_state_dict(blend(a, b, alpha))
        with autocast(hp, dataset.device):
            if ip.bn_mode == "recompute":
                recompute_bn(model, dataset.train_x, hp.batch_size, ip.bn_batches,
                             dataset.prepare)
            metrics.append(evaluate_splits(model, dataset, hp.eval_train_examples, batch))
    return _rows(alphas.tolist(), metrics)


def _stacked(model: nn.Module, a: dict[str, torch.Tensor], b: dict[str, torch.Tensor],
             dataset: data.Data, hp: TrainHParams, ip: InterpHParams, alphas: torch.Tensor
             ) -> list[dict]:
    """The alpha points as the members of grouped networks: all of them in one network on the
    CPU; on CUDA in as few groups as fit (``evaluate.members_per_pass``: the BN recompute runs
    whole training batches through every member at once)."""
    examples = hp.batch_size if ip.bn_mode == "recompute" else 1
    size = members_per_pass(hp, dataset, len(alphas), examples)
    rows, nets = [], {}
    for part in torch.tensor_split(alphas, -(-len(alphas) // size)):
        k = len(part)
        if k not in nets:  # at most two sizes: the parts differ by one point at most
            nets[k] = group(model, k)
        net = nets[k]
        net.load_state_dict(blend_all(a, b, part))
        with autocast(hp, dataset.device):
            if ip.bn_mode == "recompute":
                recompute_bn(net, dataset.train_x, hp.batch_size, ip.bn_batches,
                             dataset.prepare)
            metrics = evaluate_members_splits(net, k, dataset, hp.eval_train_examples,
                                              member_batch(hp, dataset, k, False))
        rows += _rows(part.tolist(), metrics)
    return rows


def interpolate(model: nn.Module, a: dict[str, torch.Tensor], b: dict[str, torch.Tensor],
                dataset: data.Data, hp: TrainHParams, ip: InterpHParams,
                stacked: bool | None = None) -> pd.DataFrame:
    """One row per alpha and split: alpha, split, loss, error (``ip.alphas`` points, alpha-major).

    ``model`` is an instance of the architecture, on ``dataset.device`` (its weights are
    overwritten). Uses the same evaluation sets and precision as training's evaluation, so the
    endpoints reproduce the copies' own errors. ``stacked``: the route (module docstring); None
    chooses ``default_stacked``; a network that cannot be grouped takes the loop regardless.
    """
    if ip.bn_mode not in ("interpolate", "recompute"):
        raise ValueError(f"unknown bn_mode '{ip.bn_mode}'")
    alphas = torch.linspace(0, 1, ip.alphas)
    if stacked is None:
        stacked = default_stacked(model, dataset.device)
    route = _stacked if stacked and groupable(model) else _loop
    return pd.DataFrame(route(model, a, b, dataset, hp, ip, alphas), columns=COLUMNS)


def interpolate_files(hp: TrainHParams, ip: InterpHParams, pairs: list[dict[str, str]],
                      device: torch.device, job_start: float | None = None,
                      stacked: bool | None = None) -> None:
    """The path of every pair ({copy1, copy2, out}) of a cohort, in one process: the data are
    read and the network built once for all of them (``stacked``: ``interpolate``'s route).

    Each path.csv is followed by its record: the pair's own wall time (reading both copies,
    evaluating the path, writing it) and ``job_wall_s`` since ``job_start`` (a
    ``time.perf_counter()``; default: this call's start)."""
    job_start = time.perf_counter() if job_start is None else job_start
    for pair in pairs:
        provenance.discard_record(pair["out"])
    dataset = data.load(hp.dataset, hp.data_root, device, hp.image_size)
    model = models.build(hp.model, hp.dataset, hp.image_size).to(device)
    for pair in pairs:
        began = time.perf_counter()
        a, b = ({k: v.to(device) for k, v in atomic.load_torch(pair[c])["state_dict"].items()}
                for c in ("copy1", "copy2"))
        path = interpolate(model, a, b, dataset, hp, ip, stacked)
        csvfiles.save_frame(path, pair["out"])
        provenance.write_record(pair["out"], provenance.record(
            "interpolate", device, job_start, time.perf_counter() - began,
            **provenance.data_fields(dataset)))
        print(pair["out"] + ": " + ", ".join(
            f"{row.split} barrier {row.barrier:.4f}" for row in barrier(path).itertuples()))
