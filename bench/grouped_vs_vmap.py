"""The grouped route against the vmap route and K solo networks: time per step and accuracy.

One forward + backward (no optimiser) of K ResNet-20 members at batch 128, CPU, fp32:

* ``solo``: the K networks one after another (``nn`` layers; oneDNN on, as ``training.single``);
* ``vmap``: ``training.stacked``'s route, ``functional_call`` under ``vmap`` (oneDNN off, as
  ``train_stacked`` runs it);
* ``grouped``: ``training.grouped.group(template, K)``, with oneDNN off and on, and on
  channels-last input.

Then the accuracy behind ``train_stacked``'s oneDNN switch: each route's gradients at K = 4
against float64 (the members' own networks in float64), per tensor
``max ‖g − g64‖ / ‖g64‖`` (a tensor below 1e-3 of the member's largest gradient norm is
measured against that floor), beside the problem's own conditioning: how far the float64
gradient moves when the input is nudged by 1e-7 (relative). A route is as accurate as fp32
allows when its error is of that order; and one grouped convolution's backward alone, per
kernel, against float64.

Every figure is measured in the same run; the machine's load distorts them alike.

    python bench/grouped_vs_vmap.py                  # K = 1 4 8, 1 thread
    python bench/grouped_vs_vmap.py --ks 1 4 --reps 5 --threads 2
"""

from __future__ import annotations

import argparse
import contextlib
import time
import warnings

import torch
import torch.nn.functional as F
from torch.func import functional_call, vmap

from lmcpipe import models
from lmcpipe.training import grouped, stacked

CPU = torch.device("cpu")
SHAPE = (3, 32, 32)


def onednn(enabled: bool) -> contextlib.AbstractContextManager:
    warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")
    return torch.backends.mkldnn.flags(enabled=enabled)


def members(k: int) -> list[dict[str, torch.Tensor]]:
    return [models.build_initialised("resnet20", "cifar10", s).state_dict() for s in range(k)]


def inputs(k: int, b: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(B*K, C, H, W) b-major, as the streams deliver a stacked batch, and labels (B, K)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(b * k, *SHAPE, generator=gen), torch.randint(0, 10, (b, k), generator=gen)


def solo_step(states, x, y, dtype=torch.float32):
    """K plain networks one after another; returns a step function and the gradients."""
    k, b = len(states), y.shape[0]
    nets = []
    for s in states:
        net = models.build("resnet20", "cifar10").to(dtype).train()
        net.load_state_dict(s)
        nets.append(net)
    xs = [x.view(b, k, *SHAPE)[:, j].contiguous().to(dtype) for j in range(k)]

    def step():
        logits = []
        for j, net in enumerate(nets):
            net.zero_grad(set_to_none=True)
            logits.append(net(xs[j]))
            F.cross_entropy(logits[-1], y[:, j]).backward()
        return (torch.stack(logits, 1).detach(),
                [{n: p.grad for n, p in net.named_parameters()} for net in nets])
    return step


def vmap_step(states, x, y):
    k, b = len(states), y.shape[0]
    template = models.build("resnet20", "cifar10").train()
    st = stacked.stack_states(states, CPU)
    names = [n for n, _ in template.named_parameters()]
    params = {n: st[n].clone().requires_grad_() for n in names}
    buffers = {n: st[n].clone() for n, _ in template.named_buffers()}
    loss = stacked._Loss(template)

    def member_loss(p, bufs, xm, ym):
        state = {f"net.{n}": t for n, t in {**p, **bufs}.items()}
        logits = functional_call(loss.net, {n[4:]: t for n, t in state.items()}, (xm,))
        return F.cross_entropy(logits, ym), logits  # what _Loss computes, and the logits

    f = vmap(member_loss, randomness="different")
    xs = x.view(b, k, *SHAPE).transpose(0, 1).contiguous()  # (K, B, ...) as torch.stack gives

    def step():
        for p in params.values():
            p.grad = None
        losses, logits = f(params, buffers, xs, y.t())
        losses.sum().backward()
        return (logits.detach().transpose(0, 1),
                [{n: params[n].grad[j] for n in names} for j in range(k)])
    return step


def grouped_step(states, x, y, channels_last=False):
    k, b = len(states), y.shape[0]
    net = grouped.group(models.build("resnet20", "cifar10"), k).train()
    net.load_state_dict(stacked.stack_states(states, CPU))
    xin = x.view(b, k * SHAPE[0], *SHAPE[1:])
    if channels_last:
        xin = xin.contiguous(memory_format=torch.channels_last)

    def step():
        for p in net.parameters():
            p.grad = None
        logits = net(xin)
        grouped.member_losses(logits, y).sum().backward()
        return (grouped.split_logits(logits.detach(), k),
                [{n: p.grad[j] for n, p in net.named_parameters()} for j in range(k)])
    return step


ROUTES = {  # name: (builder, oneDNN)
    "solo": (solo_step, True),
    "vmap": (vmap_step, False),
    "grouped, oneDNN off": (grouped_step, False),
    "grouped, oneDNN on": (grouped_step, True),
    "grouped, channels-last": (lambda s, x, y: grouped_step(s, x, y, True), True),
}


def time_table(ks: list[int], batch: int, reps: int) -> None:
    """The routes take turns, one step each per round, so a change in the machine's load
    falls on all of them; each route's fastest step is reported (the least disturbed)."""
    print(f"forward + backward per step, ResNet-20, batch {batch}, fp32, "
          f"{torch.get_num_threads()} thread(s); fastest of {reps} rounds")
    print(f"{'K':>3}  {'route':<24}{'ms / step':>11}{'ms / member':>13}{'vs solo':>9}")
    for k in ks:
        states, (x, y) = members(k), inputs(k, batch)
        steps = {name: (build(states, x, y), mkldnn) for name, (build, mkldnn) in ROUTES.items()}
        times: dict[str, list[float]] = {name: [] for name in steps}
        for r in range(reps + 1):  # round 0 warms up
            for name, (step, mkldnn) in steps.items():
                with onednn(mkldnn):
                    start = time.perf_counter()
                    step()
                    if r:
                        times[name].append(time.perf_counter() - start)
        base = min(times["solo"])
        for name, ts in times.items():
            t = min(ts)
            print(f"{k:>3}  {name:<24}{1e3 * t:>11.0f}{1e3 * t / k:>13.0f}{base / t:>8.2f}x",
                  flush=True)


def out_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got.double() - want).abs().max() / want.abs().max())


def error(got: list[dict], want: list[dict]) -> float:
    worst = 0.0
    for g, w in zip(got, want, strict=True):
        floor = 1e-3 * max(t.norm() for t in w.values())
        worst = max(worst, *(float((g[n].double() - t).norm() / max(t.norm(), floor))
                             for n, t in w.items()))
    return worst


def accuracy_table(k: int, batch: int) -> None:
    states, (x, y) = members(k), inputs(k, batch, seed=1)
    with onednn(False):
        ref_logits, ref = solo_step(states, x.double(), y, torch.float64)()
        nudged = x.double() * (1 + 1e-7 * torch.randn(x.shape, dtype=torch.float64,
                                                      generator=torch.Generator().manual_seed(2)))
        moved_logits, moved = solo_step(states, nudged, y, torch.float64)()
    print(f"\nerror against float64, ResNet-20, K = {k}, batch {batch} (max over members; "
          "gradients: max over tensors too)")
    print(f"  {'':<34}{'logits':>10}{'gradients':>11}")
    print(f"  {'float64, input nudged by 1e-7':<34}{out_error(moved_logits, ref_logits):>10.1e}"
          f"{error(moved, ref):>11.1e}   (the problem's conditioning)")
    for name, (build, mkldnn) in ROUTES.items():
        for on in ((True, False) if name == "solo" else (mkldnn,)):
            with onednn(on):
                logits, got = build(states, x, y)()
            label = f"{name}{', oneDNN off' if name == 'solo' and not on else ''}"
            print(f"  {label:<34}{out_error(logits, ref_logits):>10.1e}{error(got, ref):>11.1e}",
                  flush=True)

    print("\none grouped convolution's backward, fp32 against float64, relative error "
          "(output, input grad, weight grad)")
    gen = torch.Generator().manual_seed(3)
    for b, kk, c, h in ((batch, k, 16, 32), (batch, k, 64, 8)):
        xx = torch.randn(b, kk * c, h, h, generator=gen, dtype=torch.float64)
        ww = torch.randn(kk * c, c, 3, 3, generator=gen, dtype=torch.float64) / 12
        go = torch.randn(b, kk * c, h, h, generator=gen, dtype=torch.float64)
        results = {}
        for label, dtype, on in (("f64", torch.float64, False), ("off", torch.float32, False),
                                 ("on", torch.float32, True)):
            xi, wi = (t.to(dtype).clone().requires_grad_() for t in (xx, ww))
            with onednn(on):
                out = F.conv2d(xi, wi, None, 1, 1, 1, kk)
                out.backward(go.to(dtype))
            results[label] = (out.detach(), xi.grad, wi.grad)
        for label in ("off", "on"):
            errs = [float((a.double() - r).norm() / r.norm())
                    for a, r in zip(results[label], results["f64"], strict=True)]
            print(f"  {f'{kk} groups of {c} ch, {h}x{h}, oneDNN {label}':<40}"
                  + "".join(f"{e:>10.1e}" for e in errs))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ks", type=int, nargs="+", default=[1, 4, 8])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--accuracy-k", type=int, default=4)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    time_table(args.ks, args.batch, args.reps)
    accuracy_table(args.accuracy_k, args.batch)


if __name__ == "__main__":
    main()
