"""Several runs of one architecture trained as one stacked model: one forward/backward per step.

The members of a cohort (``training.cohort``) share architecture, hyperparameters and schedule and
differ in start point, mask, data order and augmentation draws. Here their parameters and
BatchNorm buffers are stacked along a leading member dimension and one step trains all of them.

Route: ``torch.func.functional_call`` under ``torch.func.vmap``, over the stacked parameters
*and* buffers. vmap turns a linear layer into a batched matmul and a convolution into a grouped
convolution (its batching rule), so this is the grouped-convolution route without rewriting each
network by hand; and because the running statistics are vmapped too, BatchNorm's in-place
running-stat update is per member and needs no functional BatchNorm. The alternative — a
hand-written grouped model per network — would duplicate every file of ``models/`` for no speed
vmap does not already get (``bench/cohort_throughput.py`` measures vmap against the one-after-
another loop; on a 2-core CPU the loop wins, which is why the CPU default stack is 1).

What stays per member, as in ``single.train``: the mask (gradients masked before the step,
weights after it), the start point, the data-order stream (order, copy) and the augmentation
stream (order, copy, step), and the evaluation rows (each member is evaluated alone by the
unstacked network, so evaluation is that of a single run). The optimiser update is elementwise,
so ``optim.Adam``/``optim.SGD`` act on the stacked tensors unchanged. The members' losses are
summed: member k's gradient is that of its own loss.

Numerics: a stacked matmul/conv sums in another order than a single run's, so stacked weights
differ from solo-trained ones by float rounding that training amplifies; the equivalence tests
(``tests/test_cohort.py``) state and check the tolerance. Runs with paper B's repellent term are
trained one after another (``training.cohort``), not stacked.
"""


from __future__ import annotations

import json
import os
import warnings

import torch
from torch import nn
from torch.func import functional_call, vmap

from lmcpipe import atomic, data, masks
from lmcpipe.hparams import TrainHParams
from lmcpipe.models import PrunableModel
from lmcpipe.progress import Progress
from lmcpipe.training.checkpoint import read_resume, run_stats
from lmcpipe.training.single import eval_rows
from lmcpipe.training.step import LossWatch, Step, autocast, make_optimizer
from lmcpipe.training.streams import augmenter, batch_indices


class _Loss(nn.Module):
    """The network's training loss as a module, so functional_call can run it (it is a method,
    not ``forward``: Inception-v3 adds its auxiliary head's term)."""

    def __init__(self, net: PrunableModel):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.net.training_loss(x, y)


def stack_states(states: list[dict[str, torch.Tensor]], device: torch.device
                 ) -> dict[str, torch.Tensor]:
    """Member state dicts stacked along a new leading dimension, on ``device``."""
    return {k: torch.stack([s[k] for s in states]).to(device) for k in states[0]}


def member_state(stacked: dict[str, torch.Tensor], i: int) -> dict[str, torch.Tensor]:
    """Member ``i``'s state dict, detached, on the CPU."""
    return {k: v[i].detach().cpu().clone() for k, v in stacked.items()}


def train_stacked(hp: TrainHParams, *args, **kwargs):
    """``_train_stacked`` on the CPU without oneDNN (mkldnn): its grouped-convolution backward —
    what vmap makes of a batched conv — gave ResNet-20 gradients 3–7e-3 off the float64 values
    for some members, where the plain CPU kernels (and single runs with oneDNN) are within 1e-6.
    """
    with warnings.catch_warnings():  # the flag's notice about TF32 on Intel GPUs is noise here
        warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")
        with torch.backends.mkldnn.flags(enabled=False):
            return _train_stacked(hp, *args, **kwargs)


def _train_stacked(
    hp: TrainHParams,
    template: PrunableModel,
    starts: list[dict[str, torch.Tensor]],
    dataset: data.Data,
    streams: list[tuple[int, int]],
    member_masks: list[masks.Mask | None],
    *,
    start_step: int = 0,
    resume_path: str | os.PathLike | None = None,
    fingerprint: str = "",
    record: bool = True,
    stats: dict | None = None,
    compile: str = "none",
) -> tuple[list[dict[str, torch.Tensor]], list[list[dict]]]:
    """Train K members from ``starts`` (state dicts) to ``hp.steps``; member k draws data and
    augmentation from ``streams[k]`` = (order, copy) and keeps ``member_masks[k]``.

    Returns each member's final state dict (CPU) and its metrics rows, as ``train.train`` would
    with ``record=True``. ``template`` is an instance of the architecture (its weights are
    overwritten when members are evaluated). A resume file with the stacked state is written
    every ``hp.checkpoint_every`` steps and picked up when its fingerprint matches. With
    ``record=False`` nothing is evaluated (benchmarks). Progress lines (the members' mean loss
    and its range) go to stdout; ``stats`` is filled as by ``train.train``.
    """
    k_members, stop, device = len(starts), hp.steps, dataset.device
    template.to(device).train()
    names_p = [n for n, _ in template.named_parameters()]
    params = {n: t.requires_grad_() for n, t in stack_states(
        [{n: s[n] for n in names_p} for s in starts], device).items()}
    buffers = stack_states([{n: s[n] for n, _ in template.named_buffers()} for s in starts],
                           device)
    prunable = template.prunable_names()
    masked = [n for n in prunable if any(m is not None for m in member_masks)]
    mstack = {n: torch.stack([(m[n] if m is not None else torch.ones(params[n].shape[1:],
                                                                     dtype=torch.bool)).cpu()
                              for m in member_masks]).to(device, params[n].dtype)
              for n in masked}
    mparams, mtensors = [params[n] for n in masked], [mstack[n] for n in masked]
    optimizer = make_optimizer(hp, list(params.values()))
    step, rows = start_step, [[] for _ in range(k_members)]

    state = read_resume(resume_path, fingerprint, optimizer)
    if state is not None:
        with torch.no_grad():
            for n, t in state["params"].items():
                params[n].copy_(t)
            for n, t in state["buffers"].items():
                buffers[n].copy_(t)
        step, rows = state["step"], json.loads(state["rows"])
        print(f"resumed stacked members at step {step} from {resume_path}")
    if stats is not None:
        stats.update(run_stats(start_step, stop, step, state is not None))
    if masked:
        with torch.no_grad():
            torch._foreach_mul_(mparams, mtensors)

    loss_module = _Loss(template)

    def member_loss(p: dict, b: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        state = {f"net.{n}": t for n, t in p.items()} | {f"net.{n}": t for n, t in b.items()}
        return functional_call(loss_module, state, (x, y))

    stacked_loss = vmap(member_loss, in_dims=(0, 0, 0, 0), randomness="different")

    def evaluate(at: int) -> None:
        for i in range(k_members):
            if any(r["step"] == at for r in rows[i]):
                continue
            template.load_state_dict({**member_state(params, i), **member_state(buffers, i)})
            rows[i] += eval_rows(template, dataset, hp, at)
        template.train()

    eval_at = {s for s in hp.eval_steps if start_step <= s < stop} if record else set()
    x, y = dataset.train_x, dataset.train_y
    augment = augmenter(hp.dataset, dataset)
    caches: list[dict] = [{} for _ in range(k_members)]
    names = list(params)
    position = {n: i for i, n in enumerate(names)}

    def loss_of(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        with autocast(hp, device):
            return stacked_loss(params, buffers, xb, yb)

    update = Step(hp, loss_of, [params[n] for n in names],
                  [(position[n], mstack[n]) for n in masked], optimizer, compile)
    # raises Diverged(member=i) before anything is written
    watch = LossWatch(step, k_members, device)
    progress = Progress(step, stop, f"stacked ({k_members} members)", origin=start_step)
    while step < stop:
        if step in eval_at:
            watch.check()
            evaluate(step)
        xs, ys = [], []
        for i, (order, copy) in enumerate(streams):
            idx = batch_indices(len(x), hp.batch_size, order, copy, step, caches[i], x.device)
            xb = dataset.prepare(x.index_select(0, idx))
            xs.append(augment(xb, order, copy, step) if augment else xb)
            ys.append(y.index_select(0, idx))
        xb, yb = torch.stack(xs), torch.stack(ys).to(device, non_blocking=True)
        losses = update(xb, yb, step)
        watch.add(losses)
        step += 1
        progress.tick(step, losses)
        if resume_path and hp.checkpoint_every and step % hp.checkpoint_every == 0 and step < stop:
            watch.check()
            atomic.save_torch({
                "fingerprint": fingerprint,
                "params": {n: t.detach() for n, t in params.items()},
                "buffers": buffers,
                "optimizer": optimizer.state_dict(),
                "step": step,
                "rows": json.dumps(rows),
                "rng": torch.get_rng_state(),
            }, resume_path)
    watch.check()
    if record:
        evaluate(stop)
    finals = [{**member_state(params, i), **member_state(buffers, i)} for i in range(k_members)]
    return [{n: s[n] for n in starts[0]} for s in finals], rows
