"""Optimiser step cost: the private fused kernels vs torch.optim's public fused / foreach paths.

Measures, in one run and on the same tensors, the per-step time of

* ``private``  — ``torch._fused_adam_`` / ``torch._fused_sgd_`` called directly (the
  implementation lmcpipe.optim used before it wrapped torch.optim; a copy lives below);
* ``lmcpipe``  — ``lmcpipe.optim.Adam`` / ``SGD`` as they are now (``step(lr)``);
* ``t.fused``  — ``torch.optim.Adam/SGD(fused=True)``, lr set on the group, then ``step()``;
* ``t.foreach`` — the same with ``foreach=True``;
* ``t.func``   — the public functional ``torch.optim.adam.adam`` / ``torch.optim.sgd.sgd``
  (``fused=True``) on state held by a thin wrapper: no Optimizer object, no ``torch._dynamo``;

for Adam and SGD (momentum 0.9, weight decay 1e-4) on LeNet-300-100- and ResNet-20-shaped
parameters, alone and stacked K=8 along a new leading dimension, with 1 and 2 threads. Also the
one-off cost of torch.optim (its construction imports ``torch._dynamo``) in a fresh process, and
how the per-step differences compare with a training step (LeNet ~1.9 ms at batch 60, ResNet-20
~400 ms at batch 128 on the development CPU).

    python bench/optim_step.py            # CPU
    python bench/optim_step.py --device cuda

About 15 minutes on the (shared, loaded) 2-core development CPU; 2-thread rows on a 2-core
machine shared with other work mostly measure the contention.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import torch

from lmcpipe import models
from lmcpipe import optim as lm_optim

TRAIN_STEP_S = {"lenet": 1.9e-3, "resnet20": 400e-3}  # measured training steps on this CPU


class PrivateSGD:
    """lmcpipe.optim.SGD's fused path before the switch: one ``torch._fused_sgd_`` call."""

    def __init__(self, params, momentum=0.0, weight_decay=0.0):
        self.params, self.momentum, self.weight_decay = list(params), momentum, weight_decay
        self.buffers: list[torch.Tensor] = []

    @torch.no_grad()
    def step(self, lr: float) -> None:
        first = self.momentum != 0 and not self.buffers
        if first:
            self.buffers = [torch.empty_like(p) for p in self.params]
        torch._fused_sgd_(self.params, [p.grad for p in self.params],
                          self.buffers if self.momentum else [],
                          weight_decay=self.weight_decay, momentum=self.momentum, lr=lr,
                          dampening=0.0, nesterov=False, maximize=False, is_first_step=first)


class PrivateAdam:
    """lmcpipe.optim.Adam's fused path before the switch: one ``torch._fused_adam_`` call."""

    def __init__(self, params, weight_decay=0.0):
        self.params, self.weight_decay = list(params), weight_decay
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self.t = 0
        self._step = torch.zeros((), dtype=torch.float32, device=self.params[0].device)

    @torch.no_grad()
    def step(self, lr: float) -> None:
        self.t += 1
        self._step.fill_(self.t)
        torch._fused_adam_(self.params, [p.grad for p in self.params], self.exp_avg,
                           self.exp_avg_sq, [], [self._step] * len(self.params), lr=lr,
                           beta1=0.9, beta2=0.999, weight_decay=self.weight_decay, eps=1e-8,
                           amsgrad=False, maximize=False)


class TorchStep:
    """torch.optim with lmcpipe's calling convention: ``step(lr)``."""

    def __init__(self, opt: torch.optim.Optimizer):
        self.opt = opt

    def step(self, lr: float) -> None:
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.opt.step()


class FunctionalSGD:
    """``torch.optim.sgd.sgd(fused=True)`` on our own momentum buffers."""

    def __init__(self, params, momentum=0.0, weight_decay=0.0):
        self.params, self.momentum, self.weight_decay = list(params), momentum, weight_decay
        self.buffers: list[torch.Tensor | None] = [None] * len(self.params)

    @torch.no_grad()
    def step(self, lr: float) -> None:
        from torch.optim.sgd import sgd

        sgd(self.params, [p.grad for p in self.params], self.buffers, fused=True,
            weight_decay=self.weight_decay, momentum=self.momentum, lr=lr, dampening=0.0,
            nesterov=False, maximize=False)


class FunctionalAdam:
    """``torch.optim.adam.adam(fused=True)`` on our own moments and step tensors."""

    def __init__(self, params, weight_decay=0.0):
        self.params, self.weight_decay = list(params), weight_decay
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self.steps = [torch.zeros((), dtype=torch.float32, device=p.device) for p in self.params]

    @torch.no_grad()
    def step(self, lr: float) -> None:
        from torch.optim.adam import adam

        adam(self.params, [p.grad for p in self.params], self.exp_avg, self.exp_avg_sq, [],
             self.steps, fused=True, amsgrad=False, beta1=0.9, beta2=0.999, lr=lr,
             weight_decay=self.weight_decay, eps=1e-8, maximize=False)


def shapes(net: str) -> list[tuple[int, ...]]:
    if net == "lenet":
        return [(300, 784), (300,), (100, 300), (100,), (10, 100), (10,)]
    return [tuple(p.shape) for p in models.build("resnet20", "cifar10").parameters()]


def make(kind: str, impl: str, params: list[torch.Tensor]):
    sgd = kind == "sgd"
    kw = {"momentum": 0.9, "weight_decay": 1e-4} if sgd else {"weight_decay": 1e-4}
    if impl == "private":
        return PrivateSGD(params, **kw) if sgd else PrivateAdam(params, **kw)
    if impl == "t.func":
        return FunctionalSGD(params, **kw) if sgd else FunctionalAdam(params, **kw)
    if impl == "lmcpipe":
        return lm_optim.SGD(params, **kw) if sgd else lm_optim.Adam(params, **kw)
    flag = {"fused": True} if impl == "t.fused" else {"foreach": True}
    cls = torch.optim.SGD if sgd else torch.optim.Adam
    return TorchStep(cls(params, lr=0.01, **kw, **flag))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_step(opt, device: torch.device, steps: int) -> float:
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        opt.step(1e-3)
    sync(device)
    return (time.perf_counter() - start) / steps


IMPLS = ["private", "lmcpipe", "t.fused", "t.func", "t.foreach"]


def bench_case(net: str, k: int, kind: str, device: torch.device, steps: int,
               repeats: int) -> dict[str, float]:
    """Per-step seconds for each implementation: the fastest of ``repeats`` interleaved runs
    (the least disturbed by other load on a shared machine)."""
    gen = torch.Generator().manual_seed(0)
    lead = (k,) if k > 1 else ()
    opts = {}
    for impl in IMPLS:
        ps = [torch.randn(lead + s, generator=gen).to(device).requires_grad_()
              for s in shapes(net)]
        for p in ps:
            p.grad = torch.randn(p.shape, generator=gen).to(device) * 1e-3
        opts[impl] = make(kind, impl, ps)
        time_step(opts[impl], device, 3)  # warm-up, and past the first (buffer-making) step
    times: dict[str, list[float]] = {impl: [] for impl in IMPLS}
    for _ in range(repeats):
        for impl in IMPLS:
            times[impl].append(time_step(opts[impl], device, steps))
    return {impl: min(ts) for impl, ts in times.items()}


def import_cost(repeats: int) -> tuple[float, float]:
    """Fastest wall seconds of a fresh ``import torch`` and of that plus a torch.optim.Adam."""
    plain = "import torch"
    full = ("import torch; import torch.optim; "
            "torch.optim.Adam([torch.zeros(1, requires_grad=True)])")
    runs: dict[str, list[float]] = {plain: [], full: []}
    for _ in range(repeats):
        for code in runs:
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True)
            runs[code].append(time.perf_counter() - start)
    return min(runs[plain]), min(runs[full])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--import-repeats", type=int, default=5)
    args = ap.parse_args()
    device = torch.device(args.device)

    print(f"torch {torch.__version__}, device {device}; per-step time in µs "
          f"(fastest of {args.repeats} runs); Δ = t.fused − private and\n"
          f"t.func − private, as µs and as a share of a training step")
    header = (f"{'params':<14}{'thr':>4} {'opt':<5}" + "".join(f"{i:>11}" for i in IMPLS)
              + f"{'Δfused':>9}{'/step':>7}{'Δfunc':>8}{'/step':>7}")
    print(header)
    print("-" * len(header))
    for net in ["lenet", "resnet20"]:
        for k in [1, 8]:
            for threads in args.threads:
                torch.set_num_threads(threads)
                for kind in ["adam", "sgd"]:
                    # fewer steps on the big stacked ResNet-20 set: ~2 M elements x 4 tensors
                    steps = {("lenet", 1): 200, ("lenet", 8): 40, ("resnet20", 1): 100,
                             ("resnet20", 8): 20}[net, k]
                    t = bench_case(net, k, kind, device, steps, args.repeats)
                    # a stacked set is K members trained in one step: compare with K steps
                    train = TRAIN_STEP_S[net] * k
                    d_fused, d_func = t["t.fused"] - t["private"], t["t.func"] - t["private"]
                    name = net if k == 1 else f"{net} K={k}"
                    print(f"{name:<14}{threads:>4} {kind:<5}"
                          + "".join(f"{t[i] * 1e6:>11.1f}" for i in IMPLS)
                          + f"{d_fused * 1e6:>9.1f}{d_fused / train:>7.1%}"
                          + f"{d_func * 1e6:>8.1f}{d_func / train:>7.1%}")
    plain, full = import_cost(args.import_repeats)
    print(f"\nfresh process: `import torch` {plain:.2f} s; + torch.optim.Adam(...) {full:.2f} s "
          f"→ one-off torch.optim cost {full - plain:.2f} s per process")
    for net, s in TRAIN_STEP_S.items():
        print(f"  = {(full - plain) / s:,.0f} {net} training steps ({s * 1e3:g} ms each)")


if __name__ == "__main__":
    main()
