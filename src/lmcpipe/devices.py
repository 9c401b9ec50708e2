"""Which torch device a stage runs on, and the numerics it runs with (``--device`` and friends).

Its own module so that the interpolation and curvature stages choose a device without importing
the training stack (and without their code version following ``train.py``). Torch is imported
inside the functions: stages add these flags when the CLI parses them, before any heavy import.

``pick_device`` does three things, in this order, because the first two must happen before CUDA
starts in the process:

1. claims the job's slot (``lmcpipe.slots``): one GPU of the machine, by narrowing
   ``CUDA_VISIBLE_DEVICES`` to it, or a share of the CPUs where there is no CUDA device and the
   experiment sets ``resources.cpu_slots``;
2. applies the numerics: determinism (``resources.deterministic``, default on: cuDNN
   deterministic without benchmark autotuning, torch's deterministic algorithms, cuBLAS's
   workspace variable, read when cuBLAS starts) and whether fp32 matmuls and convolutions may
   use TF32 (``train.precision``: ``fp32`` is IEEE fp32, ``tf32`` allows TF32, ``bf16`` autocasts
   and keeps its fp32 remainder IEEE). Without this, this torch runs fp32 convolutions as TF32;
3. returns the device.

Every provenance record the process writes afterwards carries the slot and the numerics in force
(``provenance.note_job``). On the CPU the CUDA settings change nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from lmcpipe import provenance, slots

if TYPE_CHECKING:
    import torch

CUBLAS_WORKSPACE = "CUBLAS_WORKSPACE_CONFIG"
CUBLAS_DETERMINISTIC = ":4096:8"  # cuBLAS's documented setting for reproducible results


def _at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    return parse


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The device flags of a stage (the rules pass the experiment's ``resources:``)."""
    p.add_argument("--device", default="auto",
                   help="auto (a GPU slot when torch sees CUDA, else the CPU), cuda, cuda:N, cpu")
    p.add_argument("--jobs-per-gpu", type=_at_least(1), default=1,
                   help="jobs sharing one GPU (resources.jobs_per_gpu)")
    p.add_argument("--cpu-slots", type=_at_least(0), default=0,
                   help="without CUDA: claim one of N CPU slots and pin to its share of the "
                        "CPUs (resources.cpu_slots; 0 = off)")
    p.add_argument("--deterministic", choices=["true", "false"], default="true",
                   help="deterministic cuDNN/cuBLAS/torch algorithms (resources.deterministic)")


def from_args(args: argparse.Namespace, precision: str = "fp32") -> torch.device:
    """``pick_device`` with a stage's device flags (``add_arguments``)."""
    return pick_device(args.device, precision=precision,
                       deterministic=args.deterministic == "true",
                       jobs_per_gpu=args.jobs_per_gpu, cpu_slots=args.cpu_slots)


def evaluation_precision(precision: str) -> str:
    """The precision of a stage that only evaluates (interpolation, curvature): it runs without
    autocast, so ``bf16`` training is evaluated in (IEEE) fp32; ``tf32`` keeps TF32 allowed."""
    return "tf32" if precision == "tf32" else "fp32"


def pick_device(name: str = "auto", *, precision: str = "fp32", deterministic: bool = True,
                jobs_per_gpu: int = 1, cpu_slots: int = 0) -> torch.device:
    """``auto``: a GPU slot when torch sees CUDA, else the CPU; ``cuda``: a GPU slot, or fail
    in one line naming the config key that asked for it (``resources.require_gpu``); ``cuda:N``
    and ``cpu`` as given (no GPU slot). On the CPU, ``cpu_slots`` > 0 claims a CPU slot."""
    import torch

    gpu = slots.claim_gpu(jobs_per_gpu) if name in ("auto", "cuda") else None
    cuda = name.startswith("cuda") or (gpu is not None and torch.cuda.is_available())
    in_force = apply_numerics(precision, deterministic, cuda)  # CUBLAS_... before CUDA starts
    if gpu is not None and torch.cuda.is_available():
        # narrowed: the job's GPU is cuda:0, unless CUDA had already started with them all
        index = 0 if gpu.narrowed and torch.cuda.device_count() == 1 else gpu.ordinal
        device = torch.device("cuda", index)
    elif name.startswith("cuda") and (gpu is not None or not torch.cuda.is_available()):
        raise SystemExit(f"lmcpipe: --device {name}: torch sees no CUDA device (the experiment's "
                         "resources.require_gpu is set; unset it to fall back to the CPU)")
    elif name.startswith("cuda"):
        device = torch.device(name)
    else:
        slots.release()  # a GPU slot without a usable GPU behind it
        device = torch.device("cpu" if name == "auto" else name)
    slot = slots.claim_cpu(cpu_slots) if device.type == "cpu" else slots.held()
    provenance.note_job(slot=slot.record() if slot else None, numerics=in_force)
    return device


def _set_tf32(matmul: bool, conv: bool | None = None) -> None:
    """Allow TF32 for fp32 matmuls and for cuDNN (convolutions; ``conv`` default: ``matmul``)."""
    import torch

    conv = matmul if conv is None else conv
    b = torch.backends
    # The legacy flags first, then the fp32_precision API where this torch has it (its kernels
    # read that one). Setting only the new API leaves the legacy flags saying otherwise, and
    # their readers (torch.backends.cudnn.flags, allow_tf32) then raise on "a mix of the legacy
    # and new APIs"; both saying the same satisfies both.
    b.cuda.matmul.allow_tf32 = matmul
    b.cudnn.allow_tf32 = conv
    if hasattr(b.cudnn, "conv"):
        b.cuda.matmul.fp32_precision = "tf32" if matmul else "ieee"
        b.cudnn.conv.fp32_precision = b.cudnn.rnn.fp32_precision = "tf32" if conv else "ieee"


def _tf32(op: str) -> bool:
    """Whether fp32 ``op`` (matmul or conv) may run as TF32 on CUDA, as torch says now."""
    import torch

    b = torch.backends
    if hasattr(b.cudnn, "conv"):
        mine, parent = ((b.cuda.matmul.fp32_precision, "none") if op == "matmul" else
                        (b.cudnn.conv.fp32_precision, b.cudnn.fp32_precision))
        for value in (mine, parent, b.fp32_precision):
            if value != "none":
                return value == "tf32"
    return bool(b.cuda.matmul.allow_tf32 if op == "matmul" else b.cudnn.allow_tf32)


def apply_numerics(precision: str, deterministic: bool, cuda: bool = True) -> dict[str, Any]:
    """Set determinism and TF32 for this process (before CUDA starts) and return what is now in
    force, as provenance records it (``numerics``).

    ``cuda`` False (a job that runs on the CPU): torch's deterministic-algorithms switch is left
    alone. Flipping it imports ``torch._dynamo`` (1.6-2.2 s per job measured here, about two
    minutes of the 2-core demo), and the CPU kernels lmcpipe runs are deterministic without it
    (a killed CPU run resumes bit-identical: tests/test_cohort.py); the record then says
    ``deterministic: false``, which is what torch has in force."""
    import torch

    if deterministic:
        os.environ.setdefault(CUBLAS_WORKSPACE, CUBLAS_DETERMINISTIC)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic  # autotuning picks run to run
    # warn_only: nobody has run lmcpipe's ops on CUDA with this on yet; an op without a
    # deterministic CUDA kernel then warns in the job's log (and the record says determinism was
    # asked for) instead of failing a run that may have trained for hours.
    if cuda:
        torch.use_deterministic_algorithms(deterministic, warn_only=True)
    _set_tf32(precision == "tf32")
    return numerics(precision)


@contextlib.contextmanager
def numerics_during(precision: str, deterministic: bool,
                    cuda: bool = True) -> Iterator[dict[str, Any]]:
    """``apply_numerics`` for the length of a block, this process's own settings back after: a
    measurement (``lmcpipe.calibrate``) runs with the numerics of the job it stands for."""
    import torch

    b = torch.backends
    saved = (torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(), b.cudnn.deterministic,
             b.cudnn.benchmark, _tf32("matmul"), _tf32("conv"))
    try:
        yield apply_numerics(precision, deterministic, cuda)
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        b.cudnn.deterministic, b.cudnn.benchmark = saved[2], saved[3]
        _set_tf32(saved[4], saved[5])


def numerics(precision: str) -> dict[str, Any]:
    """The numerics in force: ``precision`` (fp32, tf32, bf16 autocast), whether fp32 matmuls and
    convolutions may use TF32 on CUDA, determinism, cuDNN autotuning, cuBLAS's workspace."""
    import torch

    return {"precision": precision, "tf32_matmul": _tf32("matmul"), "tf32_conv": _tf32("conv"),
            "deterministic": torch.are_deterministic_algorithms_enabled(),
            "deterministic_warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
            "cudnn_deterministic": torch.backends.cudnn.deterministic,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "cublas_workspace_config": os.environ.get(CUBLAS_WORKSPACE)}


def autocast(hp: Any, device: torch.device) -> Any:
    """bfloat16 autocast when ``hp.precision == "bf16"`` (fp32 is the reference): training's
    steps and evaluations, and interpolation, whose endpoints must be training's evaluations.
    Here, not in the training package, so interpolation does not depend on the optimiser."""
    import torch

    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=hp.precision == "bf16")
