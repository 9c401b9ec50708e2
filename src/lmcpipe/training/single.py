"""Training one network from a start point with a mask and a data-order stream.

Used for the dense run, the rewind points W_k, IMP retraining and the pair copies: they differ only
in start point, mask and data-order stream, which is why one function serves them all.

The data order of step t is a pure function of (order, copy, epoch) (see ``seeds``), the model is
evaluated only at the configured steps, and a resume file holding model, optimiser, step, metrics
and RNG state is written every ``checkpoint_every`` steps, so a killed run restarts where it stopped
and ends with the same weights as an uninterrupted one.

The ``lmcpipe train`` entrypoint (``lmcpipe.stages.train``) and cohorts (``training.cohort``)
call it.
"""

from __future__ import annotations

import json
import os

import torch
from torch import nn

from lmcpipe import atomic, data, masks, memory
from lmcpipe.devices import autocast
from lmcpipe.evaluate import evaluate_splits
from lmcpipe.hparams import TrainHParams
from lmcpipe.models import PrunableModel
from lmcpipe.progress import Progress
from lmcpipe.training.checkpoint import checkpoint_due, read_resume, run_stats
from lmcpipe.training.step import LossWatch, Step, make_optimizer, masked_step
from lmcpipe.training.streams import Streams


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
    compile: str = "none",
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
    record. ``compile``: how the step runs (``step.Step``: eager, or compiled whole).

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
    reg = (repulsion(hp.repel_lambda, model, references, mask)
           if references and hp.repel_lambda else None)

    def loss_of(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        with autocast(hp, device):
            loss = model.training_loss(xb, yb)
        return loss + reg() if reg is not None else loss

    params_list = list(model.parameters())
    position = {id(p): i for i, p in enumerate(params_list)}
    update = Step(hp, loss_of, params_list,
                  [(position[id(p)], m) for p, m in zip(mparams, mtensors, strict=True)],
                  optimizer, compile)
    watch = LossWatch(step, device=device)
    progress = Progress(step, stop, "train", origin=start_step)
    with Streams(hp, dataset, [(order, copy)]) as batches:
        while step < stop:
            if step in eval_at and step not in done:
                watch.check()
                rows += eval_rows(model, dataset, hp, step)
                done.add(step)
            xb, yb = batches.batch(step)
            if conv:  # the batch, not the stored set: augmentation writes a fresh tensor
                xb = xb.contiguous(memory_format=torch.channels_last)
            if micro < len(yb):
                loss = accumulate(model, xb, yb, micro, hp, reg)
                masked_step(optimizer, hp.lr_at(step), mparams, mtensors)
            else:
                loss = update(xb, yb, step)
            watch.add(loss)
            step += 1
            progress.tick(step, loss)
            if checkpoint_due(hp, step, stop, resume_path):
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
