"""Building a step's batch: kernel ops of the per-member loop against one gather, and memory-mapped
ImageNet batches read synchronously against read ahead on a thread.

1. Kernel-launching aten ops to build one CIFAR batch of K = 16 members at batch 128 (and K = 1,
   4): the per-member loop that ``training.stacked`` ran before issue 23 (per member: its
   indices, ``index_select``, ``prepare``, a freshly seeded ``torch.Generator`` and three
   ``randint`` draws, flip+crop, its labels; then ``torch.stack``) against ``Streams.batch`` (one
   gather, one prepare, one augmentation with counter-based draws). Counted by ``kernel_ops``
   (torch.profiler, after warm-up): aten ops with no aten op below them, views, allocations and
   detaches excluded (``EXCLUDED``). The same figure on CUDA is the kernel launches.
2. A synthetic memory-mapped uint8 set (default 20,000 images 3x64x64, the layout of
   ``imagefolder``'s cache: a .npy mapped copy-on-write) read by ``Streams`` synchronously and
   with the prefetch thread (``data.prefetch``), under a fake training step of a stated cost (a
   loop of 256x256 matmuls calibrated to about the gather's time): ms per step side by side,
   with the batches checked equal.

    python bench/prefetch.py                  # CPU
    python bench/prefetch.py --device cuda    # pinned buffers and a side-stream copy
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from lmcpipe import augment
from lmcpipe.data.tensors import Data
from lmcpipe.hparams import TrainHParams
from lmcpipe.seeds import derive_seed
from lmcpipe.training.streams import Streams, batch_indices

# aten ops that launch no kernel: views, allocations, detaches, metadata; and ``to``,
# ``contiguous`` and ``reshape`` when they return their input (when they copy, the copy_ below
# them counts)
EXCLUDED = frozenset(f"aten::{n}" for n in (
    "view", "_unsafe_view", "reshape", "_reshape_alias", "as_strided", "slice", "select",
    "expand", "expand_as", "unsqueeze", "squeeze", "t", "transpose", "permute", "alias",
    "detach", "detach_", "lift_fresh", "empty", "empty_strided", "empty_like", "new_empty",
    "resize_", "narrow", "unbind", "split", "chunk", "broadcast_tensors", "result_type",
    "view_as", "unfold", "set_", "to", "contiguous"))


def _counted(event, counts: Counter) -> int:
    """Add to ``counts`` the ops of ``event``'s tree that launch a kernel: an aten op counts
    when it is not in ``EXCLUDED`` and none of the ops below it counts (so a composite op such
    as ``__rshift__`` counts once, ``index_select`` with its ``empty`` counts, ``to`` counts as
    its ``copy_``)."""
    below = sum(_counted(child, counts) for child in event.cpu_children)
    if below or not event.name.startswith("aten::") or event.name in EXCLUDED:
        return below
    counts[event.name] += 1
    return 1


def kernel_ops(fn: Callable[[], object], calls: int = 3, warmup: int = 2) -> Counter:
    """Kernel-launching aten ops per call of ``fn``, by name (``_counted``), averaged over
    ``calls`` calls profiled after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(calls):
            fn()
    counts: Counter = Counter()
    for event in prof.events():
        if event.cpu_parent is None:
            _counted(event, counts)
    return Counter({name: n / calls for name, n in counts.items()})


def cifar_like(n: int, device: torch.device) -> tuple[TrainHParams, Data]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    hp = TrainHParams(model="resnet20", dataset="cifar10", data_root="unused", optimizer="sgd",
                      lr=0.1, batch_size=128, steps=1)
    mean, std = torch.tensor([0.49, 0.48, 0.45]), torch.tensor([0.25, 0.24, 0.26])
    return hp, Data(x, y, x[:8], y[:8], mean=mean, std=std).to(device)


def old_loop(hp: TrainHParams, ds: Data, streams: list[tuple[int, int]]):
    """The per-member batch loop of ``training.stacked`` before issue 23 (its draws from a
    ``torch.Generator`` seeded per (order, copy, step)), as ``f(step) -> (x, y)``."""
    x, y, caches = ds.train_x, ds.train_y, [{} for _ in streams]

    def batch(step: int):
        xs, ys = [], []
        for i, (order, copy) in enumerate(streams):
            idx = batch_indices(len(x), hp.batch_size, order, copy, step, caches[i], x.device)
            xb = ds.prepare(x.index_select(0, idx))
            gen = torch.Generator(device=xb.device)
            gen.manual_seed(derive_seed("augment", order, copy, step))
            dy = torch.randint(0, 9, (len(xb),), generator=gen, device=xb.device)
            dx = torch.randint(0, 9, (len(xb),), generator=gen, device=xb.device)
            flip = torch.randint(0, 2, (len(xb),), generator=gen, device=xb.device).bool()
            xs.append(augment.apply_flip_crop(xb, dy, dx, flip, 4, ds.fill))
            ys.append(y.index_select(0, idx))
        return torch.stack(xs), torch.stack(ys).to(ds.device, non_blocking=True)

    return batch


def op_table(device: torch.device, steps: int, rounds: int) -> None:
    hp, ds = cifar_like(5000, device)
    print(f"\n1. building one CIFAR batch (batch 128) on {device}: kernel ops, and ms (median of "
          f"{rounds} rounds of {steps} steps)")
    print(f"{'K':>4} {'old loop':>9} {'per member':>11} {'Streams':>8} {'per member':>11} "
          f"{'old ms':>8} {'Streams ms':>11}")
    for k in (1, 4, 16):
        streams = [(i // 2, 1 + i % 2) for i in range(k)]
        loop = old_loop(hp, ds, streams)
        old = kernel_ops(lambda loop=loop: loop(5))
        with Streams(hp, ds, streams) as s:
            new = kernel_ops(lambda s=s: s.batch(5))
            ms = medians({"old": loop, "new": s.batch}, steps, rounds, device)
        n_old, n_new = sum(old.values()), sum(new.values())
        print(f"{k:>4} {n_old:>9.0f} {n_old / k:>11.1f} {n_new:>8.0f} {n_new / k:>11.2f} "
              f"{ms['old']:>8.2f} {ms['new']:>11.2f}")
    print("Streams at K = 16, by op: " + ", ".join(
        f"{name.removeprefix('aten::')} {n:.0f}" for name, n in sorted(new.items())))
    print("excluded (no kernel): " + " ".join(sorted(n.removeprefix("aten::") for n in EXCLUDED)))


def memmap_set(path: Path, n: int, side: int, device: torch.device) -> Data:
    """A uint8 (n, 3, side, side) .npy mapped copy-on-write, as ``imagefolder.cached_split``."""
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, 3, side, side))
    rng = np.random.default_rng(0)
    for start in range(0, n, 2000):
        out[start : start + 2000] = rng.integers(0, 256, out[start : start + 2000].shape,
                                                 dtype=np.uint8)
    out.flush()
    del out
    x = torch.from_numpy(np.load(path, mmap_mode="c"))
    x.sum(dtype=torch.int64)  # the whole file in the page cache, as after an epoch
    y = torch.from_numpy(rng.integers(0, 1000, n))
    mean, std = torch.tensor([0.48, 0.46, 0.41]), torch.tensor([0.23, 0.23, 0.23])
    return Data(x, y, x[:8], y[:8], mean=mean, std=std).to(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def per_step(fn: Callable[[int], object], steps: range, device: torch.device) -> float:
    """ms per call of fn(step) over ``steps``."""
    sync(device)
    start = time.perf_counter()
    for step in steps:
        fn(step)
    sync(device)
    return 1000 * (time.perf_counter() - start) / len(steps)


def medians(parts: dict[str, Callable[[int], object]], steps: int, rounds: int,
            device: torch.device, summary=np.median) -> dict[str, float]:
    """Median (or ``summary``) over ``rounds`` of each part's ms per step, the parts taking turns
    (round r times ``steps`` steps of each part), so that a load that comes and goes hits all
    of them alike."""
    for fn in parts.values():  # warm-up
        fn(0)
        fn(1)
    times: dict[str, list[float]] = {name: [] for name in parts}
    for r in range(rounds):
        for name, fn in parts.items():
            times[name].append(per_step(fn, range(2 + r * steps, 2 + (r + 1) * steps), device))
    return {name: float(summary(t)) for name, t in times.items()}


def prefetch_table(args, device: torch.device) -> None:
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        ds = memmap_set(Path(tmp) / "train.npy", args.images, args.side, device)
        hp = TrainHParams(model="resnet50", dataset="imagenet", data_root=tmp, optimizer="sgd",
                          lr=0.1, batch_size=args.batch, steps=1)
        streams = [(i // 2, 1 + i % 2) for i in range(args.k)]
        mb = ds.train_x.numel() / 2**20
        print(f"\n2. memory-mapped set: {args.images:,} images 3x{args.side}x{args.side} uint8 "
              f"({mb:,.0f} MiB, page cache warm), batch {args.batch}, K = {args.k}, {device}; "
              f"median of {args.rounds} rounds of {args.steps} steps")
        # calibration: the fastest round (the least disturbed by other load)
        with Streams(hp, ds, streams, prefetch=False) as s:  # what the thread takes over
            gathered = medians({"g": s.gather}, args.steps, args.rounds, device, min)["g"]
        print("augmentation " + ("on" if args.augment else "off (on a GPU it runs on the device; "
                                 "on this host it would dwarf the gather: --augment); the fake "
                                 "step costs about what the thread takes over"))
        w = torch.randn(256, 256, device=device) / 16
        unit = medians({"mm": lambda t: w @ w}, 20, args.rounds, device, min)["mm"]
        reps = max(1, round(gathered / unit))  # a step as long as the gather and prepare

        def matmuls(x) -> None:  # a step that computes on the host: ``reps`` matmuls
            a = w
            for _ in range(reps):
                a = a @ w

        def wait(x) -> None:  # a step during which the host waits (as for a GPU's kernels)
            time.sleep(gathered / 1000)

        with (Streams(hp, ds, streams, prefetch=False) as sync_s,
              Streams(hp, ds, streams, prefetch=True) as ahead_s):
            assert sync_s._prefetch is None and ahead_s._prefetch is not None
            if not args.augment:
                sync_s.augment = ahead_s.augment = None
            for step in (0, 1, 2, len(ds.train_x) // args.batch):
                # the two paths give the same batches (the last one: an epoch boundary)
                assert all(torch.equal(p, q) for p, q in zip(
                    sync_s.batch(step), ahead_s.batch(step), strict=True))
            ms = medians({
                "gather": lambda t: sync_s.x.index_select(0, sync_s.indices(t)),
                "gathered": sync_s.gather,
                "batch": sync_s.batch,
                "matmuls": matmuls,
                "sync matmuls": lambda t: matmuls(sync_s.batch(t)),
                "ahead matmuls": lambda t: matmuls(ahead_s.batch(t)),
                "wait": wait,
                "sync wait": lambda t: wait(sync_s.batch(t)),
                "ahead wait": lambda t: wait(ahead_s.batch(t)),
            }, args.steps, args.rounds, device)
        prepare, augmenting = ms["gathered"] - ms["gather"], ms["batch"] - ms["gathered"]
        print(f"gather (index_select of the rows from the map) {ms['gather']:.2f}, prepare "
              f"(uint8 -> normalised float) {prepare:.2f}"
              + f", augment {augmenting:.2f}" * args.augment + " ms/step")
        print(f"{'fake train step':<34} {'step':>7} {'sync':>7} {'ahead':>7} {'ideal':>7} "
              f"{'saved':>7}")
        for kind, name in (("matmuls", f"{reps} matmuls 256x256 (host busy)"),
                           ("wait", "sleep (host idle, as under a GPU)")):
            step, synced, ahead = ms[kind], ms[f"sync {kind}"], ms[f"ahead {kind}"]
            ideal = max(ms["gathered"], augmenting + step)  # gather + prepare hidden entirely
            print(f"{name:<34} {step:>7.2f} {synced:>7.2f} {ahead:>7.2f} {ideal:>7.2f} "
                  f"{1 - ahead / synced:>7.0%}")
        print("ms per step. sync: gather, prepare (augment) and the step on one thread; ahead: "
              "step t+1's gather and prepare on the prefetch thread during step t; ideal: "
              "max(gather + prepare, augment + step) (on CUDA the thread gathers and copies, and "
              "prepare runs on the device); batches checked equal")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--images", type=int, default=20_000)
    p.add_argument("--side", type=int, default=64)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--k", type=int, default=1, help="members (the gather is K x batch rows)")
    p.add_argument("--steps", type=int, default=10, help="timed steps per round")
    p.add_argument("--rounds", type=int, default=5, help="rounds (the median is shown)")
    p.add_argument("--tmp", default=None, help="where the memory-mapped file goes")
    p.add_argument("--augment", action="store_true", help="augment in the prefetch figures")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: all)")
    p.add_argument("--skip-ops", action="store_true")
    args = p.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    where = (torch.cuda.get_device_name(device) if device.type == "cuda"
             else f"CPU, {torch.get_num_threads()} threads")
    print(f"batch building on {where}, torch {torch.__version__}")
    if not args.skip_ops:
        op_table(device, args.steps, args.rounds)
    prefetch_table(args, device)


if __name__ == "__main__":
    main()
