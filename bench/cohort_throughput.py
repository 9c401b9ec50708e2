"""Cohort throughput: per-member img/s of K runs trained as one stacked model, against K = 1.

K = 1 is the single-run loop (``training.single.train``, what a cohort at ``stack`` 1 runs for each
member); K >= 2 is ``training.stacked.train_stacked`` with K members, each with its own data order
(order, copy) and, for ResNet-20, its own mask. Every figure of a table is measured in the same
run, after a warm-up, with no evaluation; the ratio is per-member img/s over K = 1's.

Data: random pixels in the real on-disk formats (IDX, CIFAR pickles); throughput does not depend
on the pixel values.

    python bench/cohort_throughput.py                       # CPU: fp32, K = 1 2 4 8
    python bench/cohort_throughput.py --device cuda --ks 1 2 4 8 16 32 --precisions fp32 bf16
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lmcpipe import data, masks, models
from lmcpipe.data import IDX_FILES
from lmcpipe.data.testing import write_cifar, write_idx
from lmcpipe.hparams import TrainHParams
from lmcpipe.training import stacked
from lmcpipe.training.single import train

NETWORKS = {
    # name: (dataset, batch, optimiser settings, default timed steps on cpu / cuda)
    "lenet": ("fashion_mnist", 60, {"optimizer": "adam", "lr": 1.2e-3}, (200, 400)),
    "resnet20": ("cifar10", 128, {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9,
                                  "weight_decay": 1e-4}, (4, 100)),
}
MODELS = {"lenet": "lenet_300_100", "resnet20": "resnet20"}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def write_data(root: Path, rng: np.random.Generator) -> None:
    raw = root / "fashion_mnist"
    raw.mkdir(parents=True)
    for key, n in (("train", 6000), ("test", 1000)):
        write_idx(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), raw / IDX_FILES[f"{key}_x"])
        write_idx(rng.integers(0, 10, n, dtype=np.uint8), raw / IDX_FILES[f"{key}_y"])
    write_cifar(root / "cifar10" / "cifar-10-batches-py",
                rng.integers(0, 256, (6000, 3, 32, 32), dtype=np.uint8),
                rng.integers(0, 10, 6000), 10, (5000, 1000))


def per_member_rate(hp: TrainHParams, dataset: data.Data, k: int, steps: int, warmup: int) -> float:
    """img/s per member of K members trained together for ``steps`` steps after ``warmup``."""
    starts = [models.build_initialised(hp.model, hp.dataset, s).state_dict() for s in range(k)]
    prunable = models.build(hp.model, hp.dataset).prunable_names()
    mask = masks.magnitude_prune({n: starts[0][n] for n in prunable}, None, 0.5)

    def run(n_steps: int) -> float:
        h = dataclasses.replace(hp, steps=n_steps, eval_steps=())
        sync(dataset.device)
        start = time.perf_counter()
        if k == 1:
            model = models.build(hp.model, hp.dataset)
            model.load_state_dict(starts[0])
            train(h, model, dataset, order=0, copy=1, mask=mask, record=False)
        else:
            stacked.train_stacked(h, models.build(hp.model, hp.dataset), starts, dataset,
                                  [(i, 1) for i in range(k)], [mask] * k, record=False)
        sync(dataset.device)
        return time.perf_counter() - start

    run(warmup)
    # the warm-up's fixed cost (stacking, optimiser state) is also in the timed run: subtract a
    # run of ``warmup`` steps measured right after, so only per-step time remains
    elapsed = run(warmup + steps) - run(warmup)
    return k * hp.batch_size * steps / max(elapsed, 1e-9)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    p.add_argument("--ks", nargs="+", type=int, default=None, help="cohort sizes (default: "
                   "1 2 4 8 on a CPU, 1 2 4 8 16 32 on a GPU)")
    p.add_argument("--precisions", nargs="+", default=None, choices=["fp32", "bf16"],
                   help="default: fp32 on a CPU (bf16 is emulated on most), both on a GPU")
    p.add_argument("--steps", type=int, default=0, help="timed steps (default per network)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: all)")
    args = p.parse_args()
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    ks = args.ks or ([1, 2, 4, 8, 16, 32] if gpu else [1, 2, 4, 8])
    precisions = args.precisions or (["fp32", "bf16"] if gpu else ["fp32"])
    if args.threads:
        torch.set_num_threads(args.threads)
    name = torch.cuda.get_device_name(device) if gpu else f"CPU, {torch.get_num_threads()} threads"
    print(f"cohort throughput on {name}, torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        write_data(Path(tmp), np.random.default_rng(0))
        for net in args.networks:
            dataset_name, batch, opt, default_steps = NETWORKS[net]
            steps = args.steps or default_steps[gpu]
            dataset = data.load(dataset_name, tmp, device)
            for precision in precisions:
                hp = TrainHParams(model=MODELS[net], dataset=dataset_name, data_root=tmp,
                                  batch_size=batch, steps=steps, precision=precision, **opt)
                print(f"\n{net}, batch {batch}, {precision}, {steps} timed steps")
                print(f"{'K':>4} {'img/s per member':>18} {'img/s all':>12} {'vs K=1':>8}")
                base = None
                for k in ks:
                    rate = per_member_rate(hp, dataset, k, steps, max(2, steps // 10))
                    base = base or rate
                    print(f"{k:>4} {rate:>18,.0f} {k * rate:>12,.0f} {rate / base:>7.2f}x",
                          flush=True)


if __name__ == "__main__":
    main()
