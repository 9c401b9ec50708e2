"""Error and loss along the straight line between the two copies of a pair.

W(alpha) = alpha * W1 + (1 - alpha) * W2 at evenly spaced alpha in [0, 1]. Both copies share the
mask, so pruned weights are zero at every alpha. The barrier (instability) is the largest error on
the path minus the mean of the two endpoint errors (paper A, section 3).

BatchNorm running statistics are either interpolated with the weights (``bn_mode: interpolate``)
or recomputed at each alpha from training batches (``recompute``): interpolated statistics can
describe the blended network badly ("variance collapse", Jordan et al. 2023, REPAIR), and what
paper A did is not known, so both are offered and recorded in the tables.

The entrypoints ``lmcpipe interpolate`` and ``interpolate-pairs`` are ``lmcpipe.stages.interpolate``
and ``.interpolate_pairs``. Each path gets a provenance record (``lmcpipe.provenance``) with the
wall time of its own interpolation.
"""

from __future__ import annotations

import time

import pandas as pd
import torch
from torch import nn

from lmcpipe import atomic, csvfiles, data, models, provenance
from lmcpipe.barrier import barrier
from lmcpipe.evaluate import evaluate_splits
from lmcpipe.hparams import InterpHParams, TrainHParams
from lmcpipe.seeds import generator


def blend(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], alpha: float
          ) -> dict[str, torch.Tensor]:
    """alpha * a + (1 - alpha) * b for floating tensors; integer buffers are taken from a."""
    return {k: (alpha * a[k] + (1 - alpha) * b[k]) if a[k].is_floating_point() else a[k]
            for k in a}


def batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def recompute_bn(model: nn.Module, x: torch.Tensor, batch_size: int, batches: int,
                 prepare=None) -> None:
    """Reset BatchNorm running statistics to their cumulative average over training batches.

    The batches are the first ``batches * batch_size`` examples of a fixed permutation (seeded,
    the same for every alpha and pair), without augmentation; weights are untouched.
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


def interpolate(model: nn.Module, a: dict[str, torch.Tensor], b: dict[str, torch.Tensor],
                dataset: data.Data, alphas: int, train_examples: int = 0,
                bn_mode: str = "interpolate", bn_batches: int = 20, batch_size: int = 128
                ) -> pd.DataFrame:
    """One row per alpha and split: alpha, split, loss, error.

    Uses the same evaluation sets as training's final evaluation, so the endpoints reproduce the
    copies' own errors.
    """
    rows = []
    for alpha in torch.linspace(0, 1, alphas).tolist():
        model.load_state_dict(blend(a, b, alpha))
        if bn_mode == "recompute":
            recompute_bn(model, dataset.train_x, batch_size, bn_batches, dataset.prepare)
        for split, (loss, err) in evaluate_splits(model, dataset, train_examples).items():
            rows.append({"alpha": alpha, "split": split, "loss": loss, "error": err})
    return pd.DataFrame(rows, columns=["alpha", "split", "loss", "error"])


def interpolate_files(hp: TrainHParams, ip: InterpHParams, pairs: list[dict[str, str]],
                      device: torch.device, job_start: float | None = None) -> None:
    """The path of every pair ({copy1, copy2, out}) of a cohort, in one process: the data are
    read and the network built once for all of them.

    Each path.csv is followed by its record: the pair's own wall time (reading both copies,
    evaluating the path, writing it) and ``job_wall_s`` since ``job_start`` (a
    ``time.perf_counter()``; default: this call's start)."""
    job_start = time.perf_counter() if job_start is None else job_start
    for pair in pairs:
        provenance.discard_record(pair["out"])
    dataset = data.load(hp.dataset, hp.data_root, device, hp.image_size)
    model = models.build(hp.model, hp.dataset).to(device)
    for pair in pairs:
        began = time.perf_counter()
        a, b = ({k: v.to(device) for k, v in atomic.load_torch(pair[c])["state_dict"].items()}
                for c in ("copy1", "copy2"))
        path = interpolate(model, a, b, dataset, ip.alphas, hp.eval_train_examples, ip.bn_mode,
                           ip.bn_batches, hp.batch_size)
        csvfiles.save_frame(path, pair["out"])
        provenance.write_record(pair["out"], provenance.record(
            "interpolate", device, job_start, time.perf_counter() - began,
            **provenance.data_fields(dataset)))
        print(pair["out"] + ": " + ", ".join(
            f"{row.split} barrier {row.barrier:.4f}" for row in barrier(path).itertuples()))
