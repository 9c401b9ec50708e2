"""Several runs of one architecture trained as one stacked model: one forward/backward per step.

The members of a cohort (``training.cohort``) share architecture, hyperparameters and schedule and
differ in start point, mask, data order and augmentation draws. Here their parameters and
BatchNorm buffers are stacked along a leading member dimension and one step trains all of them.

Two routes, one per kind of network (``Members``):

* grouped (``training.grouped``; every network lmcpipe ships except Inception-v3): the K members
  are one ordinary network whose layers hold their tensors, a grouped convolution, one
  BatchNorm over the K*C channels and one batched matmul per layer. A step costs the kernel
  launches of a single run, whatever K, and a member moves the bytes a single run moves.
* vmap (``torch.func.functional_call`` under ``torch.func.vmap``): for a network whose forward
  mixes channels (Inception-v3 concatenates its branches). vmap's BatchNorm rule splits the
  affine step into separate ops, so a member moves more than a single run
  (``bench/step_profile.py``).

Both take a step's batch from ``streams.Streams``: one gather and one augmentation call for all
members, member j's images bit for bit those of its single run. The step itself is
``step.Step``, the one the single-run loop uses (compiled whole with ``resources.compile``).

What stays per member, as in ``single.train``: the mask (gradients masked before the step,
weights after it), the start point, the data-order stream (order, copy), the augmentation draws
(order, copy, step) and the metrics rows. Evaluation runs all members together through the
grouped network (``evaluate.evaluate_members_splits``) or, on the vmap route, one member at a
time through the template. The optimiser update is elementwise, so ``optim.Adam``/``optim.SGD``
act on the stacked tensors unchanged; the members' losses are summed, so member k's gradient is
that of its own loss.

Numerics: a grouped conv/matmul sums in another order than a single run's, so stacked weights
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
from lmcpipe.devices import autocast
from lmcpipe.evaluate import evaluate_members_splits, member_batch
from lmcpipe.hparams import TrainHParams
from lmcpipe.models import PrunableModel
from lmcpipe.progress import Progress
from lmcpipe.training import grouped
from lmcpipe.training.checkpoint import checkpoint_due, read_resume, run_stats
from lmcpipe.training.single import eval_rows
from lmcpipe.training.step import LossWatch, Step, make_optimizer
from lmcpipe.training.streams import Streams


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


class Members:
    """K members of ``template``'s architecture as one model: ``params`` and ``buffers`` hold
    their tensors stacked on a leading dimension under the template's names (so checkpoints are
    the same on both routes), ``loss(xb, yb)`` their K losses for a ``Streams`` batch (xb
    ``(B*K, ...)`` b-major, yb ``(B, K)``), ``evaluate`` their metrics rows.
    """

    def __init__(self, hp: TrainHParams, template: PrunableModel,
                 starts: list[dict[str, torch.Tensor]], device: torch.device) -> None:
        self.hp, self.template, self.k, self.device = hp, template, len(starts), device
        self.route = "grouped" if grouped.groupable(template) else "vmap"
        template.to(device).train()
        if self.route == "grouped":
            self.net = grouped.group(template, self.k).to(device)
            self.net.load_state_dict(stack_states(starts, device))
            self.net.train()
            self.params = dict(self.net.named_parameters())
            self.buffers = dict(self.net.named_buffers())
            return
        names = [n for n, _ in template.named_parameters()]
        self.params = {n: t.requires_grad_() for n, t in stack_states(
            [{n: s[n] for n in names} for s in starts], device).items()}
        self.buffers = stack_states([{n: s[n] for n, _ in template.named_buffers()}
                                     for s in starts], device)
        module = _Loss(template)

        def member_loss(p: dict, b: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            state = {f"net.{n}": t for n, t in p.items()} | {f"net.{n}": t for n, t in b.items()}
            return functional_call(module, state, (x, y))

        # the batch's members are its dim 1 (b-major rows): a view, no copy
        self._vmapped = vmap(member_loss, in_dims=(0, 0, 1, 1), randomness="different")

    def loss(self, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        rows = yb.shape[0]
        yb = yb.view(rows, self.k)
        with autocast(self.hp, self.device):
            if self.route == "vmap":
                return self._vmapped(self.params, self.buffers,
                                     xb.view(rows, self.k, *xb.shape[1:]), yb)
            x = xb.view(rows, self.k * xb.shape[1], *xb.shape[2:])
            if self.hp.channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            return grouped.member_losses(self.net(x), yb)

    def states(self) -> list[dict[str, torch.Tensor]]:
        """Each member's state dict (CPU), keyed as the template's."""
        both = {**self.params, **self.buffers}
        return [member_state(both, i) for i in range(self.k)]

    def evaluate(self, dataset: data.Data, at: int, which: list[int]) -> list[list[dict]]:
        """The metrics rows at step ``at`` of the members ``which`` (``single.eval_rows``'s)."""
        if self.route == "vmap":
            out = []
            for i in which:
                self.template.load_state_dict({**member_state(self.params, i),
                                               **member_state(self.buffers, i)})
                out.append(eval_rows(self.template, dataset, self.hp, at))
            self.template.train()
            return out
        with autocast(self.hp, self.device):
            metrics = evaluate_members_splits(self.net, self.k, dataset,
                                              self.hp.eval_train_examples,
                                              member_batch(self.hp, dataset, self.k))
        self.net.train()
        return [[{"step": at, "split": split, "loss": loss, "error": err}
                 for split, (loss, err) in metrics[i].items()] for i in which]


def train_stacked(hp: TrainHParams, template: PrunableModel, *args, **kwargs):
    """``_train_stacked``; on the vmap route without oneDNN (mkldnn) on the CPU, as before the
    grouped route existed (its ResNet-20 gradients were 3–7e-3 off the float64 values, which was
    put down to oneDNN's grouped-convolution backward). The grouped route keeps oneDNN: measured
    (``bench/grouped_vs_vmap.py``), its grouped convolution is within 2e-7 (forward) and 6e-6
    (backward) of float64, the plain CPU kernel's forward 10x further off, and the network-level
    3e-3 is fp32 rounding flipping ReLUs whose input lies within ~1e-7 of zero (a 1e-7 nudge of
    the input moves the float64 gradient as much); without oneDNN torch also runs one
    convolution per group (784 kernel ops per ResNet-20 step at K = 4 instead of 188).
    """
    if grouped.groupable(template):
        return _train_stacked(hp, template, *args, **kwargs)
    with warnings.catch_warnings():  # the flag's notice about TF32 on Intel GPUs is noise here
        warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")
        with torch.backends.mkldnn.flags(enabled=False):
            return _train_stacked(hp, template, *args, **kwargs)


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

    Returns each member's final state dict (CPU) and its metrics rows, as ``single.train`` would
    with ``record=True``. ``template`` is an instance of the architecture (the vmap route
    evaluates members in it, overwriting its weights). A resume file with the stacked state is
    written every ``hp.checkpoint_every`` steps and picked up when its fingerprint matches.
    With ``record=False`` nothing is evaluated (benchmarks). Progress lines (the members' mean
    loss and its range) go to stdout; ``stats`` is filled as by ``single.train``; ``compile``:
    how the step runs (``step.Step``).
    """
    k_members, stop, device = len(starts), hp.steps, dataset.device
    members = Members(hp, template, starts, device)
    params, buffers = members.params, members.buffers
    names = list(params)
    masked = [n for n in template.prunable_names() if any(m is not None for m in member_masks)]
    mstack = {n: torch.stack([(m[n] if m is not None else torch.ones(params[n].shape[1:],
                                                                     dtype=torch.bool)).cpu()
                              for m in member_masks]).to(device, params[n].dtype)
              for n in masked}
    optimizer = make_optimizer(hp, [params[n] for n in names])
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
            torch._foreach_mul_([params[n] for n in masked], [mstack[n] for n in masked])

    def evaluate(at: int) -> None:
        todo = [i for i in range(k_members) if not any(r["step"] == at for r in rows[i])]
        for i, new in zip(todo, members.evaluate(dataset, at, todo) if todo else [],
                          strict=True):
            rows[i] += new

    position = {n: i for i, n in enumerate(names)}
    update = Step(hp, members.loss, [params[n] for n in names],
                  [(position[n], mstack[n]) for n in masked], optimizer, compile)
    eval_at = {s for s in hp.eval_steps if start_step <= s < stop} if record else set()
    watch = LossWatch(step, k_members, device)  # Diverged(member=i) before anything is written
    progress = Progress(step, stop, f"stacked ({k_members} members)", origin=start_step)
    with Streams(hp, dataset, streams) as batches:
        while step < stop:
            if step in eval_at:
                watch.check()
                evaluate(step)
            losses = update(*batches.batch(step), step)
            watch.add(losses)
            step += 1
            progress.tick(step, losses)
            if checkpoint_due(hp, step, stop, resume_path):
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
    finals = members.states()
    return [{n: s[n] for n in starts[0]} for s in finals], rows
