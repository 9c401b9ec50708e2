"""The one masked optimiser step both training loops use, and what surrounds it.

``Step`` is a training step as one function of the batch: forward, backward, masked gradients,
the optimiser update, masked weights. Both loops (``single``, ``stacked``) build one, with the
loss of their network. With ``compile`` other than ``none`` (``resources.compile``) the whole
function is compiled by ``torch.compile``, ``reduce-overhead`` adding CUDA graphs on CUDA.
What makes it capturable:

* gradients come from ``torch.autograd.grad``: no ``.grad`` state to zero, free or reallocate;
* the learning rate and Adam's step count are device tensors (``optim``'s capturable form),
  filled between steps without a host sync; every other tensor the step mutates (optimiser
  state, masks) exists before the first call and is marked as a static address;
* the losses are copied into ``LossWatch``'s preallocated buffer, outside the graph;
* nothing in it reads a tensor on the host, so nothing syncs (``torch._dynamo.explain`` finds
  no graph break: ``tests/test_compile.py``);
* an epoch's short last batch has another shape, which compiles a second graph once;
* each Step starts dynamo's cache afresh (a cohort's chunks are Steps one after another).

Also here: the optimiser (``make_optimizer``), the masked update (``masked_step``, used by
micro-batched runs that accumulate ``.grad``) and ``LossWatch``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from lmcpipe import optim
from lmcpipe.errors import Diverged
from lmcpipe.hparams import COMPILE_MODES, TrainHParams


def make_optimizer(hp: TrainHParams, params) -> optim.SGD | optim.Adam:
    if hp.optimizer == "adam":
        return optim.Adam(params, weight_decay=hp.weight_decay)
    if hp.optimizer == "sgd":
        return optim.SGD(params, momentum=hp.momentum, weight_decay=hp.weight_decay)
    raise ValueError(f"unknown optimizer '{hp.optimizer}'")


class Step:
    """``step(xb, yb, at)``: one masked update of ``params`` by ``loss(xb, yb)`` (a scalar, or one
    loss per stacked member, whose sum is differentiated) at the learning rate of step ``at``;
    returns the detached losses. ``masked``: (index into ``params``, float mask) pairs.
    """

    def __init__(self, hp: TrainHParams, loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 params: list[torch.Tensor], masked: list[tuple[int, torch.Tensor]],
                 optimizer: optim.SGD | optim.Adam, compile: str = "none") -> None:
        if compile not in COMPILE_MODES:
            raise ValueError(f"compile must be one of {', '.join(COMPILE_MODES)}, not {compile!r}")
        self.hp, self.loss, self.params, self.optimizer = hp, loss, params, optimizer
        self.index = [i for i, _ in masked]
        self.masks = [m for _, m in masked]
        self.mode = compile
        self.fn = self._step
        if compile != "none":
            # dynamo keys its cache by code object, and every Step's is ``_step``: a cohort's
            # chunks (each a new Step, two graphs with the short batch) would soon pass its
            # recompile limit, which fullgraph makes an error; the earlier Steps are finished
            torch.compiler.reset()
            device = params[0].device
            self.lr = torch.zeros((), dtype=torch.float32, device=device)
            for t in [self.lr, *self.masks, *optimizer.capture()]:
                torch._dynamo.mark_static_address(t)
            self.fn = torch.compile(self._step, mode=compile, dynamic=False, fullgraph=True)

    def _step(self, xb: torch.Tensor, yb: torch.Tensor, lr: float | torch.Tensor
              ) -> torch.Tensor:
        losses = self.loss(xb, yb)
        grads = [same_layout(g, p) for g, p in zip(
            torch.autograd.grad(losses.sum(), self.params, allow_unused=True,
                                materialize_grads=True), self.params, strict=True)]
        with torch.no_grad():
            if self.index:
                torch._foreach_mul_([grads[i] for i in self.index], self.masks)
            self.optimizer.step(lr, grads)
            if self.index:
                torch._foreach_mul_([self.params[i] for i in self.index], self.masks)
        return losses.detach()

    def __call__(self, xb: torch.Tensor, yb: torch.Tensor, at: int) -> torch.Tensor:
        if self.mode == "none":
            return self.fn(xb, yb, self.hp.lr_at(at))
        self.lr.fill_(self.hp.lr_at(at))
        # Tensor.backward / autograd.grad inside a compiled function needs dynamo to trace
        # autograd ops (else a graph break); set for the call, when compilation happens
        with torch._dynamo.config.patch(trace_autograd_ops=True):
            return self.fn(xb, yb, self.lr)


def same_layout(grad: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """``grad`` in ``param``'s memory layout. ``autograd.grad`` returns a gradient as its backward
    made it (vmap's batched matmul gives a weight's gradient transposed), while ``.backward``
    copies it into the parameter's layout; the fused optimiser kernels index parameters and
    gradients alike, so a transposed gradient would update the wrong weights."""
    if grad.stride() == param.stride():
        return grad
    return torch.empty_like(param).copy_(grad)


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


class LossWatch:
    """The training losses since the last check, kept on the device in a buffer allocated once
    (``capacity`` steps of ``members`` losses): ``check`` costs one host sync, so it runs at
    evaluations, checkpoints, the end, and when the buffer is full, instead of every step.

    A loss may be a scalar or one value per stacked member; ``check`` raises ``Diverged`` with
    the first step (and member) whose loss is not finite.
    """

    def __init__(self, step: int, members: int = 1, device: torch.device | str = "cpu",
                 capacity: int = 1000) -> None:
        self.step, self.pending = step, 0
        self.buffer = torch.zeros(capacity, members, dtype=torch.float32, device=device)

    def add(self, loss: torch.Tensor) -> None:
        self.buffer[self.pending].copy_(loss.detach().reshape(-1))
        self.pending += 1
        if self.pending == len(self.buffer):
            self.check()

    def check(self) -> None:
        if not self.pending:
            return
        losses = self.buffer[: self.pending].cpu()
        bad = ~torch.isfinite(losses)
        if bool(bad.any()):
            row, member = (int(i) for i in bad.nonzero()[0])
            raise Diverged(self.step + row, float(losses[row, member]), member=member)
        self.step += self.pending
        self.pending = 0
