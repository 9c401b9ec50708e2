"""Training throughput: lmcpipe's loop vs an open_lth-style loop, on the same machine, same run.

open_lth-style = a torchvision dataset with per-image PIL transforms through a DataLoader, fp32,
torch.optim (what open_lth does). lmcpipe = the dataset held as tensors on the device, batched
on-device augmentation, lmcpipe's own foreach optimiser (``lmcpipe.training.single.train``).

Both read the same files in the real on-disk formats (IDX, CIFAR python pickles), filled with
random pixels: throughput does not depend on the pixel values. Prints img/s, the ratio, and the
projected time of one full paper-A run (LeNet: 24 K iterations at batch 60; ResNet-20: 63 K
iterations at batch 128).

    python bench/train_throughput.py                 # CPU, both networks
    python bench/train_throughput.py --device cuda   # on a GPU machine
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lmcpipe import data, models
from lmcpipe.data import IDX_FILES
from lmcpipe.data.testing import write_cifar, write_idx
from lmcpipe.hparams import TrainHParams
from lmcpipe.training.single import train


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def openlth_style(model: nn.Module, dataset, batch: int, steps: int, warmup: int, lr: float,
                  adam: bool, device: torch.device, workers: int) -> float:
    """img/s of a DataLoader + per-image PIL transform loop (fp32, torch.optim)."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True,
                                         num_workers=workers, drop_last=True)
    model.to(device).train()
    opt = (torch.optim.Adam(model.parameters(), lr=lr) if adam else
           torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4))
    done, start = 0, None
    while done < warmup + steps:
        for x, y in loader:
            if done == warmup:
                sync(device)
                start = time.perf_counter()
            x, y = x.to(device), y.to(device)
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
            if done == warmup + steps:
                break
    sync(device)
    return steps * batch / (time.perf_counter() - start)


def lmcpipe_loop(hp: TrainHParams, dataset: data.Data, steps: int, warmup: int,
                 device: torch.device) -> float:
    """img/s of lmcpipe.training.single.train (no evaluation) after ``warmup`` steps."""
    model = models.build_initialised(hp.model, hp.dataset, 0)
    train(hp, model, dataset, order=0, copy=1, stop_step=warmup, record=False)
    sync(device)
    start = time.perf_counter()
    train(hp, model, dataset, order=0, copy=1, start_step=warmup, stop_step=warmup + steps,
          record=False)
    sync(device)
    return steps * hp.batch_size / (time.perf_counter() - start)


def lenet(root: Path, steps: int, device: torch.device, workers: int) -> list[tuple]:
    import torchvision
    from torchvision import transforms

    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for key, n in (("train", 60_000), ("test", 10_000)):
        write_idx(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), raw / IDX_FILES[f"{key}_x"])
        write_idx(rng.integers(0, 10, n, dtype=np.uint8), raw / IDX_FILES[f"{key}_y"])
    to_tensor = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.29,), (0.35,))])
    tv = torchvision.datasets.FashionMNIST(str(root), train=True, download=False,
                                           transform=to_tensor)
    ref = openlth_style(models.build_initialised("lenet_300_100", "fashion_mnist", 0), tv, 60,
                        steps, 20, 1.2e-3, True, device, workers)
    hp = TrainHParams(model="lenet_300_100", dataset="fashion_mnist", data_root=str(root),
                      optimizer="adam", lr=1.2e-3, batch_size=60, steps=10**9)
    ds = data.load("fashion_mnist", root, device)
    ours = lmcpipe_loop(hp, ds, steps, 20, device)
    return [("LeNet-300-100, batch 60", "fp32", ref, ours, 24_000 * 60)]


def resnet20(root: Path, steps: int, device: torch.device, workers: int) -> list[tuple]:
    import torchvision
    from torchvision import transforms

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (60_000, 3, 32, 32), dtype=np.uint8)
    write_cifar(root / "cifar-10-batches-py", images, rng.integers(0, 10, 60_000), 10,
                (50_000, 10_000))

    class SyntheticCIFAR10(torchvision.datasets.CIFAR10):
        # random pixels: the real archive's checksums differ, so skip torchvision's md5 checks
        def _check_integrity(self) -> bool:
            return True

        def _load_meta(self) -> None:
            self.classes = [str(i) for i in range(10)]
            self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    tv = SyntheticCIFAR10(str(root), train=True, download=False, transform=transforms.Compose([
        transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
        transforms.ToTensor(), transforms.Normalize((0.49, 0.48, 0.45), (0.25, 0.24, 0.26))]))
    ref = openlth_style(models.build_initialised("resnet20", "cifar10", 0), tv, 128, steps, 3,
                        0.1, False, device, workers)
    ds = data.load("cifar10", root, device)
    hp = TrainHParams(model="resnet20", dataset="cifar10", data_root=str(root), optimizer="sgd",
                      lr=0.1, momentum=0.9, weight_decay=1e-4, batch_size=128, steps=10**9)
    rows = []
    for precision, channels_last in (("fp32", False), ("fp32", True), ("bf16", True)):
        hp_v = dataclasses.replace(hp, precision=precision, channels_last=channels_last)
        ours = lmcpipe_loop(hp_v, ds, steps, 3, device)
        label = precision + (" + channels_last" if channels_last else "")
        rows.append(("ResNet-20, batch 128", label, ref, ours, 63_000 * 128))
    return rows


def cpu_summary() -> str:
    """The CPU model and whether it has native bf16 matmuls (without them bf16 is emulated on
    the CPU and far slower than fp32)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "CPU: unknown"
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines()
                  if line.startswith("model name")), "unknown")
    flags = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f" {f}" in info]
    return f"CPU: {model}, flags: {' '.join(flags) or 'none of avx2/avx512/bf16'}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", default=f"1,{torch.get_num_threads()}",
                   help="comma-separated CPU thread counts; each is measured (both loops)")
    p.add_argument("--lenet-steps", type=int, default=1000)
    p.add_argument("--resnet-steps", type=int, default=15)
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers of the reference")
    args = p.parse_args()
    device = torch.device(args.device)
    threads = sorted({int(t) for t in args.threads.split(",")})
    rows = []
    if device.type == "cpu":
        print(cpu_summary())
    for n in threads:
        torch.set_num_threads(n)
        print(f"device {device}, {n} threads, torch {torch.__version__}, "
              f"reference DataLoader workers {args.workers}", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            rows += [(n, *r) for r in lenet(Path(tmp) / "mnist", args.lenet_steps, device,
                                            args.workers)]
            rows += [(n, *r) for r in resnet20(Path(tmp) / "cifar", args.resnet_steps, device,
                                               args.workers)]
    print(f"{'network':24s} {'threads':>7s} {'lmcpipe mode':22s} {'open_lth-style':>15s} "
          f"{'lmcpipe':>12s} {'ratio':>6s} {'projected full run':>19s}")
    for n, name, mode, ref, ours, images in rows:
        print(f"{name:24s} {n:7d} {mode:22s} {ref:9.0f} img/s {ours:6.0f} img/s {ours / ref:5.1f}x "
              f"{images / ours / 60:8.1f} min (vs {images / ref / 60:.0f})")
    print("best of each loop over the thread counts:")
    for name, mode in dict.fromkeys((r[1], r[2]) for r in rows):
        ref = max(r[3] for r in rows if r[1] == name)
        ours = max(r[4] for r in rows if (r[1], r[2]) == (name, mode))
        print(f"{name:24s} {mode:22s} {ref:9.0f} img/s {ours:6.0f} img/s {ours / ref:5.1f}x")


if __name__ == "__main__":
    main()
