"""Write lmcpipe's shipped cost table, src/lmcpipe/costs.yaml (read by ``lmcpipe.costs``).

    python scripts/cost_table.py                 # measure this CPU, recompute the GPU rooflines
    python scripts/cost_table.py --keep-cpu      # keep the table's CPU figures (no measuring)
    python scripts/cost_table.py --measure-gpu   # on a GPU machine: measure its class too

Every figure is seconds per member-step (one member's training step: forward, backward and the
optimiser update) at a stated batch, for a network, a precision and a device class, with where
it came from:

``measured``
    ``lmcpipe.training.single.train`` timed on synthetic data of the dataset's shape on this machine
    (the least of repeated timings, after warm-up steps; the CPU at 1 thread, a job's default
    ``threads``).
    ImageNet networks are measured on the CPU at a small batch and scaled linearly by the table.
``roofline``
    Not measured: ``lmcpipe.workload`` counts the FLOPs and bytes of one member-step on the meta
    device; the figure is ``max(FLOPs / (peak x EFFICIENCY_FLOPS), bytes / (bandwidth x
    EFFICIENCY_BANDWIDTH)) + ops x OP_SECONDS`` (ops: the aten ops one step launches, each a
    kernel on a GPU). Pessimistic on purpose (err long): a fraction of the datasheet peak, the
    slower variant of each GPU (PCIe / NVL), and one member per step (no stacking).

Snakemake must not import torch to plan, so the table is static data; rerun this script when a
network, the training loop or torch changes what a step costs, and commit the result.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import platform
import sys
import time
import weakref
from pathlib import Path

import torch
import yaml

from lmcpipe import data, models, workload
from lmcpipe.costs import TABLE_PATH
from lmcpipe.hparams import TrainHParams
from lmcpipe.training.single import train

# Roofline assumptions (stated in the table).
EFFICIENCY_FLOPS = 0.3  # of the datasheet's dense peak
EFFICIENCY_BANDWIDTH = 0.5
OP_SECONDS = 1e-5  # per aten op: eager PyTorch's launch and dispatch overhead on the host
OPTIMISER_OPS = 12  # lmcpipe's fused / foreach update, masking included

# Datasheet peaks, dense (no sparsity), FLOP/s per precision and memory bandwidth in B/s. Each
# class takes its slowest common variant (err long).
DEVICES = {
    "a100": {"name": "NVIDIA A100 40GB (SXM and PCIe: same peaks; 40 GB bandwidth)",
             "fp32": 19.5e12, "tf32": 156e12, "bf16": 312e12, "bandwidth": 1.555e12},
    "h100": {"name": "NVIDIA H100 PCIe (slower than SXM)",
             "fp32": 51.2e12, "tf32": 378e12, "bf16": 756e12, "bandwidth": 2.0e12},
    "h200": {"name": "NVIDIA H200 NVL (slower than SXM)",
             "fp32": 60e12, "tf32": 418e12, "bf16": 835e12, "bandwidth": 4.8e12},
    "unknown": {"name": "a V100-class GPU (no TF32 or bf16 tensor cores): any GPU the site "
                        "does not name (cluster.gpu_model empty or not in the table)",
                "fp32": 15.7e12, "tf32": 15.7e12, "bf16": 15.7e12, "bandwidth": 0.9e12},
}
PRECISIONS = ("fp32", "tf32", "bf16")

# network -> (dataset, batch of the shipped experiments, image size, CPU measuring batch, steps)
NETWORKS = {
    "lenet_300_100": ("mnist", 60, 0, 60, 300),
    "resnet20": ("cifar10", 128, 0, 128, 8),
    "vgg16": ("cifar10", 128, 0, 128, 3),
    "vgg16_nobias": ("cifar10", 128, 0, 128, 3),
    "resnet50": ("imagenet", 1024, 0, 8, 2),
    "inceptionv3": ("imagenet", 1024, 299, 8, 2),
}
TEST_EXAMPLES = {"mnist": 10_000, "fashion_mnist": 10_000, "cifar10": 10_000,
                 "cifar100": 10_000, "imagenet": 50_000}
# Minutes every job pays besides its work: Python, import torch, CUDA start, reading the data.
# Allowances (a start here takes seconds); ImageNet's lists and stats 1.28 M files on a shared
# filesystem before it maps the decoded cache.
JOB_MINUTES = {"none": 2, "mnist": 3, "fashion_mnist": 3, "cifar10": 3, "cifar100": 3,
               "imagenet": 20}


class _Ops(torch.utils._python_dispatch.TorchDispatchMode):
    """Counts the aten ops that are not views, and the peak bytes of live tensors they make
    (each output is tracked until it is freed): a step's kernels and its memory high-water mark
    above what existed before."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = self.live = self.peak = 0
        self._seen: set[int] = set()

    def _drop(self, key: int, size: int) -> None:
        self.live -= size
        self._seen.discard(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not func.is_view:
            self.ops += 1
            for t in torch.utils._pytree.tree_leaves(out):
                if isinstance(t, torch.Tensor) and id(t) not in self._seen:
                    size = t.numel() * t.element_size()
                    self._seen.add(id(t))
                    self.live += size
                    self.peak = max(self.peak, self.live)
                    weakref.finalize(t, self._drop, id(t), size)
        return out


def trace(network: str, dataset: str, batch: int, image_size: int, train_step: bool
          ) -> tuple[int, int]:
    """(ops launched, peak live bytes) of one training step (forward + backward) or one
    no-grad forward of ``batch`` examples, fp32, on the meta device."""
    shape = data.DATASETS[dataset].input_shape
    if image_size:
        shape = (shape[0], image_size, image_size)
    with torch.device("meta"):
        net = models.build(network, dataset)
        x = torch.empty((batch, *shape))
        y = torch.zeros(batch, dtype=torch.long)
    net.train(train_step)
    mode = _Ops()
    with mode:
        if train_step:
            net.training_loss(x, y).backward()
        else:
            with torch.no_grad():
                net(x)
    return mode.ops, mode.peak


def synthetic(dataset: str, image_size: int, n: int) -> data.Data:
    """A ``Data`` of random pixels in the dataset's shape and storage (float32 normalised, or
    uint8 on the host for ImageNet), as ``lmcpipe.data.load`` would hand it to training."""
    shape = data.DATASETS[dataset].input_shape
    if image_size:
        shape = (shape[0], image_size, image_size)
    gen = torch.Generator().manual_seed(0)
    classes = data.DATASETS[dataset].num_classes
    ys = [torch.randint(0, classes, (m,), generator=gen) for m in (n, 16)]
    if data.DATASETS[dataset].image_folder:
        xs = [torch.randint(0, 256, (m, *shape), generator=gen, dtype=torch.uint8)
              for m in (n, 16)]
        mean, std = torch.full((shape[0],), 0.45), torch.full((shape[0],), 0.25)
    else:
        xs = [torch.randn((m, *shape), generator=gen) for m in (n, 16)]
        mean, std = torch.zeros(shape[0]), torch.ones(shape[0])
    return data.Data(xs[0], ys[0], xs[1], ys[1], mean=mean, std=std)


def measure(network: str, dataset: str, batch: int, image_size: int, precision: str,
            steps: int, repeats: int, device: torch.device) -> float:
    """Seconds per step of ``lmcpipe.training.single.train``: the least of ``repeats`` timings of
    ``steps`` steps each, after two warm-up steps (other processes on a shared machine only
    ever slow a timing down; the runtime margin covers the rest)."""
    hp = TrainHParams(model=network, dataset=dataset, data_root="", optimizer="sgd", lr=0.01,
                      momentum=0.9, weight_decay=1e-4, batch_size=batch, steps=10**9,
                      precision="bf16" if precision == "bf16" else "fp32",
                      image_size=image_size)
    ds = synthetic(dataset, image_size, max(4 * batch, 64)).to(device)
    model = models.build_initialised(network, dataset, 0)
    with contextlib.redirect_stdout(io.StringIO()):  # train's progress lines
        train(hp, model, ds, order=0, copy=1, stop_step=2, record=False)
    times, step = [], 2
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        began = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            train(hp, model, ds, order=0, copy=1, start_step=step, stop_step=step + steps,
                  record=False)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - began) / steps)
        step += steps
    return min(times)


def cpu_name() -> str:
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown CPU"
    return next((line.split(":", 1)[1].strip() for line in info.splitlines()
                 if line.startswith("model name")), "unknown CPU")


def roofline(device: str, precision: str, flops: float, traffic: float, ops: int) -> float:
    spec = DEVICES[device]
    bound = max(flops / (spec[precision] * EFFICIENCY_FLOPS),
                traffic / (spec["bandwidth"] * EFFICIENCY_BANDWIDTH))
    return bound + ops * OP_SECONDS


def _same_machine(a: dict, b: dict) -> bool:
    """Whether two measured rows come from the same CPU, torch and batch."""
    def where(row: dict) -> str:
        return row["source"].split(", 20")[0]  # "measured: <cpu>, 1 thread, torch <version>"
    return a["batch"] == b["batch"] and where(a) == where(b)


def network_entry(network: str, old: dict, args: argparse.Namespace, today: str) -> dict:
    dataset, batch, image_size, cpu_batch, steps = NETWORKS[network]
    ops, train_peak = trace(network, dataset, batch, image_size, True)
    _, eval_peak = trace(network, dataset, workload.EVAL_BATCH, image_size, False)
    ops += OPTIMISER_OPS
    step = workload.step_cost(network, dataset, batch, "fp32", image_size)
    ev = workload.eval_cost(network, dataset, workload.EVAL_BATCH, "fp32", image_size)
    # evaluating one example, relative to training on one: the larger of the two ratios
    eval_ratio = max(ev.flops / ev.examples / (step.flops / batch),
                     ev.bytes / ev.examples / (step.bytes / batch))
    seconds: dict[str, dict] = {}
    for precision in PRECISIONS:
        cost = workload.step_cost(network, dataset, batch, precision, image_size)
        rows = {}
        for device in DEVICES:
            s = roofline(device, precision, cost.flops, cost.bytes, ops)
            rows[device] = {
                "seconds": float(f"{s:.4g}"), "batch": batch,
                "fixed": float(f"{ops * OP_SECONDS:.4g}"),
                "source": f"roofline: {cost.flops:.3g} FLOP, {cost.bytes:.3g} B, {ops} ops per "
                          f"member-step on {device} (devices.{device})"}
        seconds[precision] = rows
    cpu_rows = old.get("seconds", {})
    for precision in ("fp32", "bf16"):
        if args.keep_cpu and "cpu" in cpu_rows.get(precision, {}):
            seconds[precision]["cpu"] = cpu_rows[precision]["cpu"]
            continue
        s = measure(network, dataset, cpu_batch, image_size, precision, steps, args.repeats,
                    torch.device("cpu"))
        print(f"  cpu {precision}: {s:.4g} s per member-step at batch {cpu_batch}", flush=True)
        row = {"seconds": float(f"{s:.4g}"), "batch": cpu_batch, "fixed": 0.0,
               "source": f"measured: {cpu_name()}, 1 thread, torch {torch.__version__}, {today} "
                         f"(scripts/cost_table.py: least of {args.repeats} x {steps} steps)"}
        kept = cpu_rows.get(precision, {}).get("cpu")
        if args.least and kept and _same_machine(kept, row) and kept["seconds"] < row["seconds"]:
            row = kept  # an earlier, less disturbed measurement of this machine and torch
        seconds[precision]["cpu"] = row
    seconds["tf32"]["cpu"] = {**seconds["fp32"]["cpu"],
                              "source": "as fp32: TF32 does not apply on the CPU"}
    if args.measure_gpu and torch.cuda.is_available():
        name = torch.cuda.get_device_name().lower()
        device = next((d for d in DEVICES if d != "unknown" and d in name), None)
        if device:
            for precision in PRECISIONS:
                torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
                torch.backends.cudnn.allow_tf32 = precision == "tf32"
                s = measure(network, dataset, batch, image_size, precision, 20, args.repeats,
                            torch.device("cuda"))
                seconds[precision][device] = {
                    "seconds": float(f"{s:.4g}"), "batch": batch, "fixed": 0.0,
                    "source": f"measured: {torch.cuda.get_device_name()}, torch "
                              f"{torch.__version__}, {today} (scripts/cost_table.py, one member "
                              "per step)"}
    return {"dataset": dataset, "image_size": image_size, "params": step.params,
            "train_peak_bytes_per_example": int(train_peak / batch),
            "eval_peak_bytes_per_example": int(eval_peak / workload.EVAL_BATCH),
            "eval_ratio": round(eval_ratio, 3), "seconds": seconds}


HEADER = """\
# lmcpipe's cost table: seconds per member-step (one member's training step: forward, backward,
# optimiser update) per network, precision and device class, each with its source: "measured"
# (where, how) or "roofline" (not measured: FLOPs and bytes per member-step from
# lmcpipe.workload over a fraction of the datasheet peaks below; errs long).
# Generated by scripts/cost_table.py: do not edit by hand. A site overrides any figure in its
# profile (config: cluster: {costs: ...}, docs/slurm.md).
"""


ROW_KEYS = ("seconds", "batch", "fixed", "source")


def dump(table: dict) -> str:
    """YAML with one line per figure (``{seconds: …, batch: …, fixed: …, source: …}``)."""
    def flow(value: object) -> str:
        if isinstance(value, dict):
            return yaml.safe_dump(value, default_flow_style=True, sort_keys=False,
                                  width=10**6).strip()
        return json.dumps(value)  # a JSON scalar is a YAML scalar

    lines = [yaml.safe_dump({"roofline": table["roofline"]}, sort_keys=False).rstrip(),
             "devices:  # datasheet peaks: FLOP/s per precision, bytes/s"]
    lines += [f"  {name}: {flow(spec)}" for name, spec in table["devices"].items()]
    lines.append("datasets:")
    lines += [f"  {name}: {flow(facts)}" for name, facts in table["datasets"].items()]
    lines += [f"no_data_job_minutes: {table['no_data_job_minutes']}", "networks:"]
    for network, entry in table["networks"].items():
        lines.append(f"  {network}:")
        lines += [f"    {k}: {flow(v)}" for k, v in entry.items() if k != "seconds"]
        lines.append("    seconds:  # per member-step at batch")
        for precision, rows in entry["seconds"].items():
            lines.append(f"      {precision}:")
            lines += [f"        {device}: {flow({k: row[k] for k in ROW_KEYS})}"
                      for device, row in rows.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--keep-cpu", action="store_true", help="keep the table's CPU figures")
    p.add_argument("--measure-gpu", action="store_true",
                   help="also measure this machine's GPU (its class must be in the table)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--least", action="store_true",
                   help="keep a CPU figure of the table measured on this machine and torch when "
                        "it is faster than the new one (on a shared machine, other processes "
                        "only ever slow a timing down)")
    p.add_argument("--only", nargs="*", default=list(NETWORKS), choices=list(NETWORKS),
                   help="networks to recompute (the others are kept)")
    p.add_argument("--out", type=Path, default=TABLE_PATH)
    args = p.parse_args()
    torch.set_num_threads(1)
    old = yaml.safe_load(args.out.read_text()) if args.out.exists() else {}
    today = datetime.date.today().isoformat()
    networks = dict(old.get("networks", {}))
    for network in args.only:
        print(network, flush=True)
        networks[network] = network_entry(network, networks.get(network, {}), args, today)
    table = {
        "roofline": {"efficiency_flops": EFFICIENCY_FLOPS,
                     "efficiency_bandwidth": EFFICIENCY_BANDWIDTH, "op_seconds": OP_SECONDS},
        "devices": DEVICES,
        "datasets": {name: {"test_examples": TEST_EXAMPLES[name], "job_minutes": JOB_MINUTES[name]}
                     for name in TEST_EXAMPLES},
        "no_data_job_minutes": JOB_MINUTES["none"],
        "networks": {n: networks[n] for n in NETWORKS if n in networks},
    }
    args.out.write_text(HEADER + dump(table))
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
