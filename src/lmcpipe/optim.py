"""SGD with momentum and Adam, one fused kernel per step where torch has one.

Why fused: the elementwise update reads and writes every parameter, gradient and moment several
times per step; on LeNet-300-100 on a CPU the foreach Adam (eight passes, one of them a slow
``sqrt``) cost as much as the network's matmuls. ``torch._fused_adam_`` / ``torch._fused_sgd_``
(CPU and CUDA) do it in one pass; the foreach version is the fallback for other devices, and for
a torch that no longer has the private calls.

Why the private calls and not ``torch.optim.Adam/SGD(fused=True)``, which run the same kernels
(bit-identical results, checked in ``tests/test_optim.py``): once a process trains a cohort of
runs, torch.optim's one-off cost (constructing an Optimizer imports ``torch._dynamo``: 2.6 s in a
fresh process on the development CPU) is amortised, but its per-step Python overhead is not.
``bench/optim_step.py``, 1 thread, torch 2.14, per-step µs (private / torch.optim fused):

    LeNet-300-100 Adam  175 / 311 (+136 µs = 7.1% of a 1.9 ms batch-60 training step)
    LeNet-300-100 SGD    71 / 140 (+69 µs = 3.6%)
    LeNet K=8 stacked Adam 2806 / 3647 (+5.5% of 8 steps); ResNet-20 Adam/SGD +0.1% / +0.04%

LeNet trains with Adam, so that is ~3.3 s more per 24 K-iteration run, every run: more than the
one-off import. The public functional ``torch.optim.adam.adam`` / ``torch.optim.sgd.sgd``
(``fused=True``, no Optimizer, no ``torch._dynamo``) costs +41 / +31 µs (2.2% / 1.6%) and is the
way out if the private calls change.

The update rules are those of ``torch.optim.SGD`` (dampening 0, no Nesterov) and
``torch.optim.Adam`` (L2 weight decay added to the gradient, bias-corrected moments);
``tests/test_optim.py`` checks both paths bit for bit against torch.optim's fused and foreach
implementations. The update is elementwise, so stacked parameters (a leading member dimension)
are updated as K independent runs.

A learning rate given as a tensor selects the capturable form (``_capturable_step``): plain
foreach ops that read the learning rate and Adam's step count from device tensors, so
``torch.compile`` traces the update into the step's graph and CUDA graphs can replay it (the fused
kernels have no fake implementation for a tensor learning rate, so the compiler cannot trace them,
and a Python float that changes every step would recompile). Its results equal the fused ones up
to float rounding (``tests/test_optim.py`` states the tolerance).
"""

from __future__ import annotations

import torch

FUSED_DEVICES = {"cpu", "cuda"}


def fusable(params: list[torch.Tensor], fused: bool | None, kernel: str) -> bool:
    """Use the fused kernel unless told not to, this torch lacks it, or a parameter lives where
    it does not exist."""
    if fused is False or not hasattr(torch, kernel):
        return False
    return all(p.device.type in FUSED_DEVICES and p.dtype.is_floating_point for p in params)


class SGD:
    def __init__(self, params: list[torch.Tensor], momentum: float = 0.0,
                 weight_decay: float = 0.0, fused: bool | None = None):
        self.params, self.momentum, self.weight_decay = list(params), momentum, weight_decay
        self.fused = fusable(self.params, fused, "_fused_sgd_")
        self.buffers: list[torch.Tensor] = []

    def capture(self) -> list[torch.Tensor]:
        """Ready the state for capturable steps and return the tensors they mutate besides the
        parameters: allocated here, before any compiled step, as a graph must not allocate state
        it keeps."""
        if self.momentum and not self.buffers:
            # zeros: the first update m * 0 + g = g is exactly torch's first step (buffer = g)
            self.buffers = [torch.zeros_like(p) for p in self.params]
        return list(self.buffers)

    @torch.no_grad()
    def step(self, lr: float | torch.Tensor, grads: list[torch.Tensor] | None = None) -> None:
        """One update with ``grads`` (default: the parameters' ``.grad``)."""
        grads = [p.grad for p in self.params] if grads is None else list(grads)
        if isinstance(lr, torch.Tensor):
            self._capturable_step(lr, grads)
            return
        if self.fused:
            first = self.momentum != 0 and not self.buffers
            if first:
                self.buffers = [torch.empty_like(p) for p in self.params]
            torch._fused_sgd_(self.params, grads, self.buffers if self.momentum else [],
                              weight_decay=self.weight_decay, momentum=self.momentum, lr=lr,
                              dampening=0.0, nesterov=False, maximize=False, is_first_step=first)
            return
        if self.weight_decay:
            grads = torch._foreach_add(grads, self.params, alpha=self.weight_decay)
        if self.momentum:
            if not self.buffers:
                self.buffers = [g.clone() for g in grads]
            else:
                torch._foreach_mul_(self.buffers, self.momentum)
                torch._foreach_add_(self.buffers, grads)
            grads = self.buffers
        torch._foreach_add_(self.params, grads, alpha=-lr)

    def _capturable_step(self, lr: torch.Tensor, grads: list[torch.Tensor]) -> None:
        if self.weight_decay:
            grads = torch._foreach_add(grads, self.params, alpha=self.weight_decay)
        if self.momentum:
            torch._foreach_mul_(self.buffers, self.momentum)
            torch._foreach_add_(self.buffers, grads)
            grads = self.buffers
        torch._foreach_sub_(self.params, torch._foreach_mul(grads, lr))

    def state_dict(self) -> dict:
        return {"buffers": self.buffers}

    def load_state_dict(self, state: dict) -> None:
        buffers = state["buffers"]  # empty until the first step, and always without momentum
        if buffers:
            self.buffers = [b.to(p.device) for b, p in zip(buffers, self.params, strict=True)]


class Adam:
    def __init__(self, params: list[torch.Tensor], betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, fused: bool | None = None):
        self.params, self.betas, self.eps = list(params), betas, eps
        self.weight_decay = weight_decay
        self.fused = fusable(self.params, fused, "_fused_adam_")
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self.t = 0
        # the fused kernel reads the step count from a tensor on the parameters' device
        device = self.params[0].device if self.params else "cpu"
        self._step = torch.zeros((), dtype=torch.float32, device=device)
        self._captured = False  # the step count lives in ``_step`` only (no host sync per step)

    def capture(self) -> list[torch.Tensor]:
        """Ready the state for capturable steps (the step count moves to ``_step``) and return the
        tensors they mutate besides the parameters."""
        if not self._captured:
            self._step.fill_(self.t)
            self._captured = True
        return [*self.exp_avg, *self.exp_avg_sq, self._step]

    @torch.no_grad()
    def step(self, lr: float | torch.Tensor, grads: list[torch.Tensor] | None = None) -> None:
        """One update with ``grads`` (default: the parameters' ``.grad``)."""
        grads = [p.grad for p in self.params] if grads is None else list(grads)
        if isinstance(lr, torch.Tensor):
            self._capturable_step(lr, grads)
            return
        b1, b2 = self.betas
        self._sync_step()
        self.t += 1
        if self.fused:
            self._step.fill_(self.t)
            torch._fused_adam_(self.params, grads, self.exp_avg, self.exp_avg_sq, [],
                               [self._step] * len(self.params), lr=lr, beta1=b1, beta2=b2,
                               weight_decay=self.weight_decay, eps=self.eps, amsgrad=False,
                               maximize=False)
            return
        if self.weight_decay:
            grads = torch._foreach_add(grads, self.params, alpha=self.weight_decay)
        torch._foreach_lerp_(self.exp_avg, grads, 1 - b1)
        torch._foreach_mul_(self.exp_avg_sq, b2)
        torch._foreach_addcmul_(self.exp_avg_sq, grads, grads, 1 - b2)
        bias1, bias2 = 1 - b1**self.t, 1 - b2**self.t
        denom = torch._foreach_sqrt(self.exp_avg_sq)
        torch._foreach_div_(denom, bias2**0.5)
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(self.params, self.exp_avg, denom, -lr / bias1)

    def _capturable_step(self, lr: torch.Tensor, grads: list[torch.Tensor]) -> None:
        b1, b2 = self.betas
        self._step.add_(1)  # after ``capture``
        if self.weight_decay:
            grads = torch._foreach_add(grads, self.params, alpha=self.weight_decay)
        torch._foreach_lerp_(self.exp_avg, grads, 1 - b1)
        torch._foreach_mul_(self.exp_avg_sq, b2)
        torch._foreach_addcmul_(self.exp_avg_sq, grads, grads, 1 - b2)
        bias1, bias2 = 1 - b1 ** self._step, 1 - b2 ** self._step
        denom = torch._foreach_div(torch._foreach_sqrt(self.exp_avg_sq), bias2.sqrt())
        torch._foreach_add_(denom, self.eps)
        update = torch._foreach_div(self.exp_avg, denom)
        torch._foreach_mul_(update, lr / bias1)
        torch._foreach_sub_(self.params, update)

    def _sync_step(self) -> None:
        """Take the step count back from the device after capturable steps (one host sync)."""
        if self._captured:
            self.t, self._captured = int(self._step), False

    def state_dict(self) -> dict:
        t = int(self._step) if self._captured else self.t  # a host sync, at checkpoints only
        return {"exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq, "t": t}

    def load_state_dict(self, state: dict) -> None:
        self.exp_avg = [s.to(p.device) for s, p in zip(state["exp_avg"], self.params, strict=True)]
        self.exp_avg_sq = [s.to(p.device)
                           for s, p in zip(state["exp_avg_sq"], self.params, strict=True)]
        self.t, self._captured = state["t"], False
