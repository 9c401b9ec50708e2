"""Interpolation's two routes side by side: the per-alpha loop against the stacked pass.

One pair's path (``lmcpipe.interpolate.interpolate``) timed both ways in one run, on the same data
and weights: the loop loads each alpha's weights into one network and reads the data once per
alpha; the stacked route makes the alpha points the members of one grouped network
(``lmcpipe.training.grouped``) and reads each split once. ``interpolate.default_stacked`` picks the
route from these figures (the CPU keeps the loop where it is faster).

Data: random images of MNIST size (LeNet-300-100) and CIFAR size (ResNet-20), held as normalised
float32 tensors like the real loaders' (the time does not depend on pixel values):
``--eval-examples`` training examples evaluated (``train.eval_train_examples``) and as many test
examples. The pair: two different initialisations with random BatchNorm statistics. Each figure is
the fastest of ``--repeats`` runs after a warm-up; the agreement columns compare the two routes'
paths (largest relative loss difference, and whether every error is equal).

A second table times one network's evaluation of the same examples (``evaluate.evaluate``, no
autocast) at several chunk sizes (``--chunks``): the loop evaluates in training's chunks
(``memory.eval_batch``, 5000 on the CPU), the stacked route in 5000 / k, and on the CPU the chunk
alone changes the time several-fold (activations of over 32 MB are fresh ``mmap``s, page-faulted
and zeroed on every call), which the route comparison must be read with.

    python bench/eval_stacked.py                       # CPU, 1 thread (the CLI's default)
    python bench/eval_stacked.py --device cuda --alphas 30 30
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

import torch

from lmcpipe import data, models
from lmcpipe.evaluate import evaluate
from lmcpipe.hparams import InterpHParams, TrainHParams
from lmcpipe.interpolate import interpolate

NETWORKS = {  # name: (model, dataset, input shape, bn modes)
    "lenet": ("lenet_300_100", "fashion_mnist", (1, 28, 28), ("interpolate",)),
    "resnet20": ("resnet20", "cifar10", (3, 32, 32), ("interpolate", "recompute")),
}


def synthetic(shape: tuple[int, ...], n: int, device: torch.device) -> data.Data:
    gen = torch.Generator().manual_seed(0)
    return data.Data(train_x=torch.randn(n, *shape, generator=gen),
                     train_y=torch.randint(0, 10, (n,), generator=gen),
                     test_x=torch.randn(n, *shape, generator=gen),
                     test_y=torch.randint(0, 10, (n,), generator=gen)).to(device)


def pair(model: str, dataset: str, device: torch.device) -> list[dict[str, torch.Tensor]]:
    states = []
    for seed in (0, 1):
        state = models.build_initialised(model, dataset, seed).state_dict()
        gen = torch.Generator().manual_seed(10 + seed)
        for key, t in state.items():
            if key.endswith("running_mean"):
                state[key] = 0.1 * torch.randn(t.shape, generator=gen)
            elif key.endswith("running_var"):
                state[key] = 0.5 + torch.rand(t.shape, generator=gen)
        states.append({k: v.to(device) for k, v in state.items()})
    return states


def timed(run, device: torch.device, repeats: int):
    """The fastest of ``repeats`` calls of ``run`` (seconds) and its last result."""
    best, out = float("inf"), None
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = run()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best, out


def network(name: str, alphas: int, args: argparse.Namespace, device: torch.device
            ) -> tuple[str, int, list[float]]:
    """Prints the route table's rows of one network; returns its chunk-size row."""
    model, dataset, shape, bn_modes = NETWORKS[name]
    hp = TrainHParams(model=model, dataset=dataset, data_root="", optimizer="sgd", lr=0.1,
                      steps=1, batch_size=args.batch_size,
                      eval_train_examples=args.eval_examples, precision=args.precision)
    d = synthetic(shape, args.eval_examples, device)
    a, b = pair(model, dataset, device)
    net = models.build(model, dataset).to(device)
    for bn_mode in bn_modes:
        ip = InterpHParams(alphas=alphas, bn_mode=bn_mode, bn_batches=args.bn_batches)
        warm = dataclasses.replace(ip, alphas=2)
        times, paths = [], []
        for stacked in (False, True):
            interpolate(net, a, b, d, hp, warm, stacked=stacked)
            seconds, path = timed(
                lambda stacked=stacked, ip=ip: interpolate(net, a, b, d, hp, ip, stacked=stacked),
                device, args.repeats)
            times.append(seconds)
            paths.append(path)
        loop, stacked = paths
        rel = ((stacked["loss"] - loop["loss"]).abs() / loop["loss"].abs()).max()
        same = bool((stacked["error"] == loop["error"]).all())
        print(f"{name:<10} {bn_mode:<12} {alphas:>6} {times[0]:>8.2f} {times[1]:>10.2f} "
              f"{times[1] / times[0]:>12.2f} {rel:>14.1e} {str(same):>13}", flush=True)
    net.load_state_dict(a)
    x, y = torch.cat([d.train_x, d.test_x]), torch.cat([d.train_y, d.test_y])
    evaluate(net, x[:64], y[:64], 64)  # warm-up
    return name, len(x), [timed(lambda c=c: evaluate(net, x, y, c), device, args.repeats)[0]
                          for c in args.chunks]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    p.add_argument("--alphas", nargs="+", type=int, default=[30, 5],
                   help="points per path, one per network (in --networks order)")
    p.add_argument("--eval-examples", type=int, default=2000)
    p.add_argument("--bn-batches", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--chunks", nargs="*", type=int, default=[5000, 1000, 250, 50],
                   help="chunk sizes of the second table (none: skip it)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"device {device}, {torch.get_num_threads()} thread(s), precision {args.precision}, "
          f"{args.eval_examples} train-eval + {args.eval_examples} test examples, "
          f"load average {os.getloadavg()[0]:.2f} at the start")
    print(f"{'network':<10} {'bn_mode':<12} {'alphas':>6} {'loop s':>8} {'stacked s':>10} "
          f"{'stacked/loop':>12} {'max rel dloss':>14} {'errors equal':>13}")
    chunk_rows = [network(name, alphas, args, device)
                  for name, alphas in zip(args.networks, args.alphas, strict=True)]
    if args.chunks:
        print(f"\none network's evaluation, seconds by chunk size ({device})")
        print(f"{'network':<10} {'examples':>8} " + " ".join(f"{c:>8}" for c in args.chunks))
        for name, n, times in chunk_rows:
            print(f"{name:<10} {n:>8} " + " ".join(f"{t:>8.2f}" for t in times))
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
