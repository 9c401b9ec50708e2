"""One member's training memory: ``lmcpipe.memory``'s meta-device estimate against a measured CPU
peak, and the stacks and micro-batches the rules give on 40 / 80 / 141 GB GPUs.

Measured: per row, the network (or K stacked members, through ``training.stacked``'s
route), lmcpipe's SGD with momentum and a random batch train one warm-up step as
``training.single.train`` does
(forward, old gradients dropped, backward, update); then the peak of two more steps over the
state between steps is taken. On the CPU each row runs in a fresh process (1 thread) whose peak
RSS is reset (``/proc/self/clear_refs``) after the warm-up; glibc returns freed blocks of 64 KiB
and more to the system (``MALLOC_MMAP_THRESHOLD_=65536``), so the RSS follows the live tensors.
On CUDA: ``torch.cuda.max_memory_allocated`` (cuDNN workspaces included), fp32 and bf16
autocast, all rows in one process. Estimated: what a step adds to the resting state (``saved``
+ ``transient`` + bf16 weight copies; weights, gradients, momentum and the batch are sizes the
estimate knows exactly).

    python bench/member_memory.py                 # the table of measured against estimated
    python bench/member_memory.py --device cuda   # the same on a GPU, fp32 and bf16
    python bench/member_memory.py --rules-only    # only the stack / micro-batch table
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from lmcpipe import memory

ROWS = [  # network, dataset, batch, image size, members stacked (0: the plain network)
    # (LeNet's 0.6 MiB step is below what RSS resolves; tests/test_memory.py counts it exactly)
    ("resnet20", "cifar10", 128, 0, 0),
    ("resnet20", "cifar10", 512, 0, 0),
    ("resnet20", "cifar10", 128, 0, 4),
    ("vgg16", "cifar10", 128, 0, 0),
    ("vgg16", "cifar10", 128, 0, 2),
    ("resnet50", "imagenet", 16, 0, 0),
    ("inceptionv3", "imagenet", 8, 299, 0),
]
CUDA_ROWS = [  # paper-scale members, on a GPU only
    ("resnet50", "imagenet", 256, 0, 0),
    ("inceptionv3", "imagenet", 128, 299, 0),
    ("resnet20", "cifar10", 128, 0, 16),
]
RULES = [  # network, dataset, batch, precision, image size (paper A's Table 1 recipes)
    ("lenet_300_100", "mnist", 60, "fp32", 0, "adam"),
    ("resnet20", "cifar10", 128, "fp32", 0, "sgd"),
    ("vgg16", "cifar10", 128, "fp32", 0, "sgd"),
    ("resnet50", "imagenet", 1024, "fp32", 0, "sgd"),
    ("resnet50", "imagenet", 1024, "bf16", 0, "sgd"),
    ("inceptionv3", "imagenet", 1024, "fp32", 299, "sgd"),
    ("inceptionv3", "imagenet", 1024, "bf16", 299, "sgd"),
]
DEVICES_GB = (40, 80, 141)
def status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def step_peak(name: str, dataset: str, batch: int, size: int, k: int, device: str,
              precision: str) -> int:
    """What a training step adds to the resting state, at its peak: the RSS on the CPU (run it
    in a fresh process), ``torch.cuda.max_memory_allocated`` on CUDA."""
    import torch

    from lmcpipe import models, optim
    from lmcpipe.training import grouped

    shape = memory.Workload(name, dataset, batch, image_size=size).input_shape
    route = memory.stacked_route(name, dataset) if k else "solo"
    torch.manual_seed(0)
    with torch.device(device):
        net = models.build(name, dataset)
        if route == "grouped":  # training.stacked's route for every network but Inception-v3
            net = grouped.group(net, k)
            x = torch.randn(batch * k, *shape).view(batch, k * shape[0], *shape[1:])
            y = torch.randint(0, 10, (batch, k))
            opt = optim.SGD(list(net.parameters()), momentum=0.9)
        elif k:  # the vmap route (memory._stacked_loss is its copy)
            params = {n: torch.stack([p.detach()] * k).requires_grad_()
                      for n, p in net.named_parameters()}
            buffers = {n: torch.stack([b] * k) for n, b in net.named_buffers()}
            x, y = torch.randn(k, batch, *shape), torch.randint(0, 10, (k, batch))
            opt, f = optim.SGD(list(params.values()), momentum=0.9), memory._stacked_loss(net)
        else:
            opt = optim.SGD(list(net.parameters()), momentum=0.9)
            x, y = torch.randn(batch, *shape), torch.randint(0, 10, (batch,))

    def step() -> None:
        with torch.autocast(device, torch.bfloat16, enabled=precision == "bf16"):
            if route == "grouped":
                loss = grouped.member_losses(net(x), y).sum()
            else:
                loss = f(params, buffers, x, y).sum() if k else net.training_loss(x, y)
        if route == "vmap":  # as training.single.train: the old gradients go after the forward
            for t in params.values():
                t.grad = None
        else:
            net.zero_grad(set_to_none=True)
        loss.backward()
        opt.step(0.01)

    # as training.stacked.train_stacked: oneDNN off on the vmap route only
    with torch.backends.mkldnn.flags(enabled=route != "vmap"):
        step()  # warm-up: libraries' one-off allocations; gradients and momentum now exist
        if device == "cuda":
            torch.cuda.synchronize()
            rest = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        else:
            rest = status("VmRSS")
            Path("/proc/self/clear_refs").write_text("5")  # resets the peak (VmHWM) to now
        step()
        step()
    return (torch.cuda.max_memory_allocated() if device == "cuda" else status("VmHWM")) - rest


def measured(name: str, dataset: str, batch: int, size: int, k: int, device: str = "cpu",
             precision: str = "fp32") -> int:
    args = [name, dataset, str(batch), str(size), str(k), device, precision]
    if device == "cuda":  # the allocator's own figures: one process serves every row
        return step_peak(name, dataset, batch, size, k, device, precision)
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, __file__, "--child", *args], env=env,
                         capture_output=True, text=True, check=True).stdout
    return int(out.strip().splitlines()[-1])


def comparable(name: str, dataset: str, batch: int, size: int, k: int,
               precision: str = "fp32") -> int:
    """The estimate of what a step adds to the resting state (weights, gradients, momentum and
    the batch, which the estimate counts exactly): saved activations and the transient, and
    autocast's bf16 weight copies."""
    f = memory.footprint(memory.Workload(name, dataset, batch, precision, size, "sgd", 0.9),
                         stacked=bool(k))
    return max(k, 1) * (f.saved + f.transient + f.cast)


def measure_table(device: str) -> None:
    """On CUDA: the peak of ``torch.cuda.max_memory_allocated`` over the allocation at rest
    (cuDNN workspaces included), in fp32 and in bf16 autocast."""
    mib = 2**20
    print(f"{'network':<14}{'batch':>6}{'px':>5}{'stack':>6}{'prec':>6}{'estimate MiB':>14}"
          f"{'measured MiB':>14}{'est/meas':>10}   ({device})")
    rows = ROWS if device == "cpu" else ROWS + CUDA_ROWS
    for name, dataset, batch, size, k in rows:
        for precision in ("fp32",) if device == "cpu" else ("fp32", "bf16"):
            est = comparable(name, dataset, batch, size, k, precision)
            got = measured(name, dataset, batch, size, k, device, precision)
            px = size or memory.Workload(name, dataset, batch).input_shape[-1]
            print(f"{name:<14}{batch:>6}{px:>5}{k or '-':>6}{precision:>6}{est / mib:>14.1f}"
                  f"{got / mib:>14.1f}{est / got:>10.2f}", flush=True)


def rules_table() -> None:
    gb = 10**9
    head = "".join(f"{f'{d} GB: stack / micro':>22}" for d in DEVICES_GB)
    print(f"{'network':<14}{'batch':>6}{'prec':>6}{'px':>5}{'solo GB':>9}{'stacked GB':>12}"
          f"{'fixed GB':>10}" + head)
    for name, dataset, batch, precision, size, opt in RULES:
        w = memory.Workload(name, dataset, batch, precision, size, opt, 0.9)
        solo, stacked = memory.footprint(w).total, memory.footprint(w, stacked=True).total
        fixed = memory.fixed_bytes(memory.dataset_bytes(dataset))
        cells = []
        for d in DEVICES_GB:
            stack = memory.stack_size(d * gb, stacked, fixed, members=10**6)
            try:
                micro = str(memory.fitting_micro_batch(w, d * gb, fixed))
            except memory.InputError:
                micro = "-"
            cells.append(f"{f'{stack} / {micro}':>22}")
        px = size or w.input_shape[-1]
        print(f"{name:<14}{batch:>6}{precision:>6}{px:>5}{solo / gb:>9.2f}{stacked / gb:>12.2f}"
              f"{fixed / gb:>10.2f}" + "".join(cells), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rules-only", action="store_true")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--child", nargs=7, help=argparse.SUPPRESS)  # one CPU row, in its own process
    args = p.parse_args()
    if args.child:
        import torch

        torch.set_num_threads(1)
        name, dataset, batch, size, k, device, precision = args.child
        print(step_peak(name, dataset, int(batch), int(size), int(k), device, precision))
        return
    if not args.rules_only:
        measure_table(args.device)
        print()
    rules_table()
    print(json.dumps({"margin": memory.MARGIN, "allowance": memory.ALLOWANCE,
                      "cuda_context_gib": memory.CUDA_CONTEXT / memory.GiB}))


if __name__ == "__main__":
    main()
