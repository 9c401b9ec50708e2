"""Training one network from a start point with a mask and a data-order stream.

Used for the dense run, the rewind points W_k, IMP retraining and the pair copies: they differ only
in start point, mask and data-order stream, which is why one function serves them all.

The data order of step t is a pure function of (order, copy, epoch) (see ``seeds``), the model is
evaluated only at the configured steps, and a resume file holding model, optimiser, step, metrics
and RNG state is written every ``checkpoint_every`` steps, so a killed run restarts where it stopped
and ends with the same weights as an uninterrupted one.

The ``lmcpipe train`` and ``init`` entrypoints (``lmcpipe.stages.train`` / ``.init``) and cohorts
(``lmcpipe.cohort``) call these functions.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import torch
from torch import nn

from lmcpipe import atomic, data, masks, memory, models, optim
from lmcpipe.errors import Diverged
from lmcpipe.evaluate import evaluate_splits
from lmcpipe.hparams import TrainHParams, to_json
from lmcpipe.models import PrunableModel
from lmcpipe.progress import Progress
from lmcpipe.seeds import generator


def make_optimizer(hp: TrainHParams, params) -> optim.SGD | optim.Adam:
    if hp.optimizer == "adam":
        return optim.Adam(params, weight_decay=hp.weight_decay)
    if hp.optimizer == "sgd":
        return optim.SGD(params, momentum=hp.momentum, weight_decay=hp.weight_decay)
    raise ValueError(f"unknown optimizer '{hp.optimizer}'")


def batch_indices(n: int, batch_size: int, order: int, copy: int, step: int,
                  cache: dict | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
    """Example indices of iteration ``step`` of data-order stream (order, copy).

    Each epoch is a fresh permutation seeded by (order, copy, epoch); an epoch has ceil(n / B)
    iterations, the last one possibly short. The permutation is drawn on the CPU (the same on
    every machine) and moved to ``device`` once per epoch, so a step costs no host transfer.
    """
    per_epoch = math.ceil(n / batch_size)
    epoch, i = divmod(step, per_epoch)
    if cache is None or cache.get("epoch") != epoch:
        perm = torch.randperm(n, generator=generator("order", order, copy, epoch)).to(device)
        if cache is None:
            return perm[i * batch_size : (i + 1) * batch_size]
        cache.update(epoch=epoch, perm=perm)
    return cache["perm"][i * batch_size : (i + 1) * batch_size]


def autocast(hp: TrainHParams, device: torch.device):
    """bfloat16 autocast when ``hp.precision == "bf16"`` (fp32 is the reference)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=hp.precision == "bf16")


def repulsion(lam: float, model: PrunableModel, references: list[dict[str, torch.Tensor]],
              mask: masks.Mask | None):
    """Paper B's repellent (λ > 0) / attractive (λ < 0) term J_r = (λ/|Θ|) Σ cos²(θ⊙m, θ_r⊙m)
    over the earlier rounds' optima θ_r, as a function of the current weights.

    θ and θ_r are the prunable weights flattened together, m the run's mask (pruned weights of
    θ are zero already); cos² is invariant to the references' scale, so they are kept as unit
    vectors.
    """
    names = model.prunable_names()
    params = [model.get_parameter(n) for n in names]
    device = params[0].device
    keep = (torch.cat([mask[n].flatten() for n in names]).to(device, params[0].dtype)
            if mask else None)
    rows = []
    for ref in references:
        r = torch.cat([ref[n].flatten() for n in names]).to(device, params[0].dtype)
        r = r * keep if keep is not None else r
        rows.append(r / r.norm().clamp_min(1e-12))
    refs = torch.stack(rows)

    def term() -> torch.Tensor:
        theta = torch.cat([p.flatten() for p in params])
        cos = refs @ theta / theta.norm().clamp_min(1e-12)
        return lam * (cos ** 2).mean()

    return term


def eval_rows(model: nn.Module, dataset: data.Data, hp: TrainHParams, step: int) -> list[dict]:
    """Loss and error on both splits, in chunks that fit beside the run (``memory.eval_batch``:
    5000 examples, fewer on a GPU where they would not)."""
    with autocast(hp, dataset.device):
        metrics = evaluate_splits(model, dataset, hp.eval_train_examples,
                                  memory.eval_batch(hp, dataset))
    return [
        {"step": step, "split": split, "loss": loss, "error": err}
        for split, (loss, err) in metrics.items()
    ]


class LossWatch:
    """The training losses since the last check, kept on the device: ``check`` costs one host
    sync, so it runs at evaluations, checkpoints and the end instead of every step.

    A loss may be a scalar or one value per stacked member; ``check`` raises ``Diverged`` with
    the first step (and member) whose loss is not finite.
    """

    def __init__(self, step: int) -> None:
        self.step, self.pending = step, []

    def add(self, loss: torch.Tensor) -> None:
        self.pending.append(loss.detach())

    def check(self) -> None:
        if not self.pending:
            return
        losses = torch.stack(self.pending).float().reshape(len(self.pending), -1).cpu()
        bad = ~torch.isfinite(losses)
        if bool(bad.any()):
            row, member = (int(i) for i in bad.nonzero()[0])
            raise Diverged(self.step + row, float(losses[row, member]), member=member)
        self.step += len(self.pending)
        self.pending = []


def train(
    hp: TrainHParams,
    model: PrunableModel,
    dataset: data.Data,
    *,
    order: int,
    copy: int,
    start_step: int = 0,
    stop_step: int | None = None,
    mask: masks.Mask | None = None,
    resume_path: str | os.PathLike | None = None,
    fingerprint: str = "",
    record: bool = True,
    references: list[dict[str, torch.Tensor]] | None = None,
    stats: dict | None = None,
) -> list[dict]:
    """Train ``model`` in place from ``start_step`` to ``stop_step`` (default: hp.steps).

    Returns the metrics rows (step, split, loss, error) at the eval steps in (start, stop] —
    and at ``start`` when it is an eval step — plus the final step. The optimiser starts fresh.
    With ``record=False`` nothing is evaluated (rewind points need only the weights).
    Pruned weights (mask False) are zero at the start and stay exactly zero: gradients are masked
    before each step (so momentum/Adam moments stay zero there) and weights after it.
    With ``references`` and ``hp.repel_lambda`` != 0 the loss gets paper B's repellent /
    attractive term (``repulsion``). A NaN or infinite loss raises ``Diverged`` at the next
    evaluation, checkpoint or the end (``LossWatch``), before anything is written.
    Progress lines go to stdout (``lmcpipe.progress``); ``stats``, when given, is filled with
    what this process trained (``run_stats``) and its ``micro_batch`` for the run's provenance
    record.

    Micro-batches (``memory.micro_batch``: ``hp.micro_batch``, or on a GPU the largest divisor of
    the batch that fits): the step's batch, augmented whole (the same draws as unsplit), is cut
    into micro-batches whose losses are scaled by their share of the batch, so the summed
    gradient is the batch's mean-loss gradient. BatchNorm normalises over each micro-batch and
    updates its running statistics once per micro-batch. A step is never checkpointed halfway,
    so a resumed run repeats whole steps; it keeps the micro-batch it began with where that
    fits (the checkpoint holds it).
    """
    stop = hp.steps if stop_step is None else stop_step
    device = dataset.device
    model.to(device).train()
    conv = dataset.train_x.dim() == 4 and hp.channels_last
    if conv:
        model.to(memory_format=torch.channels_last)
    params = dict(model.named_parameters())
    masked = [(params[n], m.to(device)) for n, m in (mask or {}).items()]
    mparams, mtensors = [p for p, _ in masked], [m.to(p.dtype) for p, m in masked]
    optimizer = make_optimizer(hp, list(model.parameters()))
    step, rows = start_step, []

    state = read_resume(resume_path, fingerprint, optimizer)
    if state is not None:
        model.load_state_dict(state["model"])
        step, rows = state["step"], [dict(r) for r in json.loads(state["rows"])]
        print(f"resumed at step {step} from {resume_path}")
    micro = memory.micro_batch(hp, dataset, state.get("micro_batch") if state else None)
    if micro < hp.batch_size:
        print(f"micro-batches of {micro} examples ({hp.batch_size // micro} per step of "
              f"{hp.batch_size}): " + ("train.micro_batch" if hp.micro_batch else
                                       f"the whole batch does not fit {device}"), flush=True)
    if stats is not None:
        stats.update(run_stats(start_step, stop, step, state is not None), micro_batch=micro)
    if masked:
        with torch.no_grad():
            torch._foreach_mul_(mparams, mtensors)

    eval_at = {s for s in hp.eval_steps if start_step <= s < stop} if record else set()
    done = {r["step"] for r in rows}
    x, y = dataset.train_x, dataset.train_y
    if conv and not dataset.host_resident:  # a memory-mapped set is never copied whole
        x = x.contiguous(memory_format=torch.channels_last)
    augment = augmenter(hp.dataset, dataset)
    reg = (repulsion(hp.repel_lambda, model, references, mask)
           if references and hp.repel_lambda else None)
    cache: dict = {}
    watch = LossWatch(step)
    progress = Progress(step, stop, "train", origin=start_step)
    while step < stop:
        if step in eval_at and step not in done:
            watch.check()
            rows += eval_rows(model, dataset, hp, step)
            done.add(step)
        # indices live with the images (on the host for memory-mapped ImageNet); index_select
        # is several times faster than x[idx] for a batch of rows on the CPU
        idx = batch_indices(len(x), hp.batch_size, order, copy, step, cache, x.device)
        xb = dataset.prepare(x.index_select(0, idx))
        if augment:
            xb = augment(xb, order, copy, step)
        yb = y.index_select(0, idx).to(device, non_blocking=True)
        if micro < len(idx):
            loss = accumulate(model, xb, yb, micro, hp, reg)
        else:
            with autocast(hp, device):
                loss = model.training_loss(xb, yb)
            if reg is not None:
                loss = loss + reg()
            model.zero_grad(set_to_none=True)
            loss.backward()
        watch.add(loss)
        masked_step(optimizer, hp.lr_at(step), mparams, mtensors)
        step += 1
        progress.tick(step, loss)
        if resume_path and hp.checkpoint_every and step % hp.checkpoint_every == 0 and step < stop:
            watch.check()
            atomic.save_torch(
                {
                    "fingerprint": fingerprint,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "step": step,
                    "rows": json.dumps(rows),
                    "rng": torch.get_rng_state(),
                    "micro_batch": micro,
                },
                resume_path,
            )
    watch.check()
    if record and stop not in done:
        rows += eval_rows(model, dataset, hp, stop)
    return rows


def accumulate(model: PrunableModel, xb: torch.Tensor, yb: torch.Tensor, micro: int,
               hp: TrainHParams, reg=None) -> torch.Tensor:
    """The gradients of the batch (``xb``, ``yb``) summed over micro-batches of ``micro``
    examples into the model's ``.grad``; returns the batch's loss (detached).

    The network's loss is a mean over its examples (cross-entropy; Inception-v3 adds its
    auxiliary head's mean), so scaling micro-batch j's loss by n_j / n makes the summed
    gradient that of the whole batch's mean loss; paper B's term ``reg`` (a function of the
    weights only) is added once, to the first micro-batch.
    """
    model.zero_grad(set_to_none=True)
    n, total = len(xb), None
    for j, (xm, ym) in enumerate(zip(xb.split(micro), yb.split(micro), strict=True)):
        with autocast(hp, xb.device):
            part = model.training_loss(xm, ym) * (len(xm) / n)
        if reg is not None and j == 0:
            part = part + reg()
        part.backward()
        total = part.detach() if total is None else total + part.detach()
    return total


def run_stats(start_step: int, stop_step: int, first_step: int, resumed: bool) -> dict:
    """What a training process did, for its provenance record: the run's schedule range, the
    steps trained here (fewer after a resume) and the step it resumed at (None: from the start)."""
    return {"start_step": start_step, "stop_step": stop_step,
            "steps": max(stop_step - first_step, 0), "resumed_at": first_step if resumed else None}


def read_resume(path: str | os.PathLike | None, fingerprint: str,
                optimizer: optim.SGD | optim.Adam) -> dict | None:
    """A resume checkpoint written under ``fingerprint``, with the optimiser and the RNG state
    already restored from it; None when there is none or it belongs to other inputs (stale)."""
    if not path or not os.path.exists(path):
        return None
    state = atomic.load_torch(path)
    if state["fingerprint"] != fingerprint:
        print(f"ignoring stale resume file {path}")
        return None
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"])
    return state


def masked_step(optimizer: optim.SGD | optim.Adam, lr: float, mparams: list[torch.Tensor],
                mtensors: list[torch.Tensor]) -> None:
    """One update that keeps pruned weights exactly zero: gradients are masked before the step
    (so momentum / Adam moments stay zero there) and weights after it. ``mparams`` are the masked
    parameters, ``mtensors`` their masks as float tensors (stacked ones work the same way)."""
    if mparams:
        torch._foreach_mul_([p.grad for p in mparams], mtensors)
    optimizer.step(lr)
    if mparams:
        with torch.no_grad():
            torch._foreach_mul_(mparams, mtensors)


def augmenter(dataset_name: str, dataset: data.Data):
    """The dataset's training augmentation as ``f(batch, order, copy, step)``, or None.

    Draws come from a generator seeded by (order, copy, step): the two copies of a pair see
    different draws, and a resumed run sees the same draws as an uninterrupted one.
    """
    name = data.DATASETS[dataset_name].augment
    if name == "none":
        return None
    from lmcpipe import augment

    fn = augment.AUGMENTATIONS[name]
    return lambda x, order, copy, step: fn(
        x, augment.augmentation_generator(order, copy, step, x.device), dataset.fill)


def model_record(model: PrunableModel, name: str, step: int) -> dict:
    """What a model artifact holds: CPU weights, the step reached, the prunable names and the
    never-pruned conv/linear weights (``masks.frozen_count``)."""
    return {
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "step": step,
        "model": name,
        "prunable": model.prunable_names(),
        "frozen": model.frozen_names(),
    }


def load_model(hp: TrainHParams, path: str) -> tuple[PrunableModel, int]:
    """A network of ``hp.model`` with the weights of a model artifact, and its step."""
    record = atomic.load_torch(path)
    model = models.build(hp.model, hp.dataset)
    model.load_state_dict(record["state_dict"])
    return model, record["step"]


def _file_digest(path: str | None) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest() if path else ""


def run_fingerprint(hp: TrainHParams, seed: int, start_step: int, stop_step: int | None,
                    level: int, order: int, copy: int, start: str | None, mask: str | None,
                    references: list[str] | tuple[str, ...] = ()) -> str:
    """What a run's result depends on (hparams, seeds, the bytes of its start point, mask and
    references; no start point = the random-reinit baseline): a resume or partial file written
    under another fingerprint is stale."""
    identity = [to_json(hp), seed, not start, start_step, stop_step, level, order, copy,
                _file_digest(start), _file_digest(mask)]
    identity += [_file_digest(r) for r in references]
    return hashlib.sha256(json.dumps(identity).encode()).hexdigest()


def start_model(hp: TrainHParams, start: str | None, seed: int, start_step: int,
                level: int) -> PrunableModel:
    """The network a run starts from: the weights of ``start`` (W_k), or without one the
    random-reinit baseline's fresh init seeded by (seed, k, level)."""
    if start:
        return load_model(hp, start)[0]
    return models.build_initialised(hp.model, hp.dataset, "reinit", seed, start_step, level,
                                    bias=hp.bias_init)
