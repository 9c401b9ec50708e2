"""The roofline bound of a step on a named accelerator: max(FLOPs / peak, bytes / bandwidth).

A device's work cannot take less time than its matmul/convolution FLOPs at the datasheet peak,
nor than its memory traffic at the datasheet bandwidth (``lmcpipe.workload`` counts both per
member-step on the meta device). The larger of the two is a lower bound: real steps also wait
on kernel launches, the host, and kernels far from peak, so a measured step is slower, often
several times for small networks (LeNet's step is launch-bound on any GPU).

The devices are data, ``device_specs.yaml`` beside this module (H100, A100, H200: datasheet
numbers, sources named there), or a file of the same layout a site writes for its own device.
Torch-free, so that anything (Snakemake's planning included) can read a spec.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from lmcpipe.errors import InputError

SPECS_PATH = Path(__file__).with_name("device_specs.yaml")
PRECISIONS = ("fp32", "tf32", "bf16")


@dataclass(frozen=True)
class DeviceSpec:
    """An accelerator's datasheet figures: peak FLOP/s per precision, bandwidth in B/s."""

    key: str
    name: str
    peak_flops: dict[str, float]
    bandwidth: float
    memory_gb: float = 0.0
    source: str = ""

    def peak(self, precision: str) -> float:
        """Peak FLOP/s at ``precision``; a precision the spec lacks falls back to fp32."""
        return self.peak_flops.get(precision) or self.peak_flops["fp32"]


def _spec(key: str, entry: object, where: str) -> DeviceSpec:
    if not isinstance(entry, dict):
        raise InputError(f"--device-spec {where}: '{key}' is not a mapping of name, "
                         "bandwidth_gb_s and peak_tflops")
    try:
        peaks = {p: float(v) * 1e12 for p, v in dict(entry["peak_tflops"]).items()}
        bandwidth = float(entry["bandwidth_gb_s"]) * 1e9
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(f"--device-spec {where}: '{key}' needs bandwidth_gb_s (a number) and "
                         f"peak_tflops (precision: number, fp32 at least); {e!r}") from None
    if "fp32" not in peaks or bandwidth <= 0 or min(peaks.values()) <= 0:
        raise InputError(f"--device-spec {where}: '{key}' needs a positive peak_tflops.fp32 "
                         "and bandwidth_gb_s")
    return DeviceSpec(key, str(entry.get("name", key)), peaks, bandwidth,
                      float(entry.get("memory_gb", 0)), str(entry.get("source", "")))


def shipped() -> dict[str, DeviceSpec]:
    """The shipped specs by key (h100, a100, h200)."""
    entries = yaml.safe_load(SPECS_PATH.read_text())
    return {k: _spec(k, v, SPECS_PATH.name) for k, v in entries.items()}


def device_spec(name: str) -> DeviceSpec:
    """A shipped spec by key, or the one spec of a YAML file of the shipped layout (``key:
    {name, bandwidth_gb_s, peak_tflops: {fp32, tf32, bf16}, memory_gb, source}``)."""
    specs = shipped()
    if name.lower() in specs:
        return specs[name.lower()]
    path = Path(name)
    if not path.is_file():
        raise InputError(f"--device-spec {name}: neither a shipped device "
                         f"({', '.join(specs)}) nor a YAML file")
    try:
        entries = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise InputError(f"--device-spec {name}: not YAML ({e.__class__.__name__})") from None
    if not isinstance(entries, dict) or len(entries) != 1:
        raise InputError(f"--device-spec {name}: expected one device, as in {SPECS_PATH}")
    key, entry = next(iter(entries.items()))
    return _spec(str(key), entry, name)


def roofline_seconds(flops: float, nbytes: float, spec: DeviceSpec, precision: str) -> float:
    """The lower bound on the time of ``flops`` matmul/conv FLOPs moving ``nbytes`` bytes."""
    return max(flops / spec.peak(precision), nbytes / spec.bandwidth)


def bound(flops: float, nbytes: float, spec: DeviceSpec, precision: str) -> str:
    """Which roof binds: ``compute`` or ``memory``."""
    return "compute" if flops / spec.peak(precision) >= nbytes / spec.bandwidth else "memory"


def member_step_seconds(model: str, dataset: str, batch_size: int, precision: str,
                        spec: DeviceSpec, image_size: int = 0) -> float:
    """The roofline bound of one member-step (forward, backward, optimiser update) of ``model``
    at ``batch_size`` on ``spec`` (``lmcpipe.workload.step_cost``; imports torch the first
    time a network is counted, then reads the on-disk cache)."""
    from lmcpipe.workload import step_cost

    cost = step_cost(model, dataset, batch_size, precision, image_size)
    return roofline_seconds(cost.flops, cost.bytes, spec, precision)
