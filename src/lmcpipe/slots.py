"""Which GPU (or which CPUs) a job uses on a machine it shares with other jobs: a slot.

Snakemake's ``gpu`` resource is only a counter: it bounds how many GPU jobs run at once but does
not say which GPU each should use (Snakemake issue #281), so every job would use ``cuda:0``. A
job therefore claims one slot for the lifetime of its process: an exclusive, non-blocking
``fcntl.flock`` on one file per slot in a local lock directory (``LMCPIPE_SLOT_DIR``, default
``/tmp/lmcpipe-slots-<uid>``; never under ``results/``, which may be a network filesystem where
flock is unreliable). The kernel drops the lock when the process ends, however it ends (SIGKILL
and OOM kills included), so a crashed job never leaves a slot taken.

GPU slots: the devices are the ids ``CUDA_VISIBLE_DEVICES`` lists (indices or GPU UUIDs), else
all that torch counts; each has ``jobs_per_gpu`` slots, tried GPU by GPU before a second job goes
on any GPU. A job that holds slot (device X, j) sets ``CUDA_VISIBLE_DEVICES=X`` before CUDA starts
in its process, so its ``cuda:0`` is its own GPU (``lmcpipe.devices.pick_device`` claims
the slot before anything touches CUDA). An environment that names exactly one device is
taken as given, with no lock: SLURM (``--gpus``/``--gres``) sets it so for the one GPU a batch
job owns.

CPU slots (``resources.cpu_slots``, for machines without CUDA): slot i of N pins the process to
the i-th of N equal shares of the CPUs it was allowed (``os.sched_setaffinity``), so concurrent
jobs do not fight over the same cores; it is also how the allocator is tested without a GPU.

When every slot is held the job waits, polling about once a second, and says so in one line of
its log. Torch is imported only to count GPUs, so the module stays cheap to import.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lmcpipe.errors import InputError

SLOT_DIR_ENV = "LMCPIPE_SLOT_DIR"
VISIBLE = "CUDA_VISIBLE_DEVICES"
POLL_S = 1.0
# CUDA reads CUDA_VISIBLE_DEVICES up to the first entry that is neither an index nor a UUID
_DEVICE_ID = re.compile(r"^(\d+|GPU-[0-9A-Fa-f-]+|MIG-[0-9A-Za-z/-]+)$")


@dataclass(frozen=True)
class Slot:
    """A claimed slot, as provenance records it (``record``)."""

    kind: str  # "gpu" or "cpu"
    index: int  # position in the machine's slot list (GPU slots: device-major within a round)
    device: str | None  # GPU: the id CUDA_VISIBLE_DEVICES is set to; CPU: None
    cores: tuple[int, ...]  # CPU: the CPUs the process is pinned to; GPU: ()
    jobs_per_gpu: int
    claimed: float  # unix seconds when the claim succeeded
    locked: bool  # False: the environment named one device, taken without a lock
    waited_s: float = 0.0  # how long the claim waited for a free slot
    ordinal: int = 0  # GPU: torch's index of the device where CUDA_VISIBLE_DEVICES was not narrowed
    narrowed: bool = False  # GPU: CUDA_VISIBLE_DEVICES was set to the device before CUDA started

    def record(self) -> dict[str, Any]:
        """The slot as a provenance record holds it (``ordinal`` and ``narrowed`` show in the
        record's ``device``: cuda:0 when narrowed)."""
        fields = asdict(self)
        del fields["ordinal"], fields["narrowed"]
        return fields | {"cores": list(self.cores), "claimed": round(self.claimed, 3),
                         "waited_s": round(self.waited_s, 3)}


_held: dict[str, Any] = {"slot": None, "fd": None}


def held() -> Slot | None:
    """The slot this process holds (None: none claimed, or a job without slots)."""
    return _held["slot"]


def lock_dir() -> Path:
    """Where the slot locks live: ``$LMCPIPE_SLOT_DIR`` or ``/tmp/lmcpipe-slots-<uid>``."""
    return Path(os.environ.get(SLOT_DIR_ENV) or f"/tmp/lmcpipe-slots-{os.getuid()}")


def visible_devices(environ: dict[str, str] | None = None) -> list[str] | None:
    """The device ids ``CUDA_VISIBLE_DEVICES`` lists, as CUDA reads them (up to the first entry
    that is not an index or a UUID; ``-1`` hides every device); None when it is unset."""
    value = (os.environ if environ is None else environ).get(VISIBLE)
    if value is None:
        return None
    ids = []
    for item in (part.strip() for part in value.split(",")):
        if not _DEVICE_ID.match(item):
            break
        ids.append(item)
    return ids


def gpu_devices() -> list[str]:
    """The GPUs this process may use: ``CUDA_VISIBLE_DEVICES``'s ids, else ``0 .. n-1`` for
    the n devices torch counts. torch counts through NVML where it answers, which leaves CUDA
    uninitialised (``torch.cuda.is_initialized()`` stays False) and so lets the claim narrow
    ``CUDA_VISIBLE_DEVICES`` afterwards; ``claim_gpu`` checks that it took effect."""
    listed = visible_devices()
    if listed is not None:
        return listed
    import torch

    if not torch.backends.cuda.is_built():
        return []
    return [str(i) for i in range(torch.cuda.device_count())]


def cpu_share(index: int, slots: int, allowed: list[int]) -> tuple[int, ...]:
    """Slot ``index`` of ``slots``: its contiguous share of ``allowed`` CPUs (one CPU, shared
    round-robin, when there are more slots than CPUs)."""
    allowed = sorted(allowed)
    if slots >= len(allowed):
        return (allowed[index % len(allowed)],)
    lo, hi = index * len(allowed) // slots, (index + 1) * len(allowed) // slots
    return tuple(allowed[lo:hi])


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def _open_dir(directory: Path) -> Path:
    """The lock directory, created private to this user; one owned by another user is refused
    (it could be a trap: whoever owns it controls which jobs run)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    if directory.stat().st_uid != os.getuid():
        raise InputError(f"slot lock directory {directory} belongs to another user; set "
                         f"{SLOT_DIR_ENV} to a local directory of your own")
    return directory


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)  # who holds it, for a person looking at the directory
    os.write(fd, f"pid {os.getpid()} since {time.time():.3f}\n".encode())
    return fd


def claim(names: list[str], what: str, directory: Path | None = None,
          say: Callable[[str], None] | None = None, poll_s: float = POLL_S
          ) -> tuple[int, int, float, float]:
    """Lock the first free slot of ``names`` (one lock file each, tried in order), waiting
    while all are held. Returns (slot index, lock fd, claim time, seconds waited); the fd must
    stay open for as long as the slot is in use (the process's lifetime, see ``release``)."""
    folder = _open_dir(directory or lock_dir())
    say = say or (lambda line: print(line, file=sys.stderr, flush=True))
    began, told = time.monotonic(), False
    while True:
        for i, name in enumerate(names):
            fd = _try_lock(folder / f"{_safe(name)}.lock")
            if fd is not None:
                return i, fd, time.time(), time.monotonic() - began
        if not told:
            say(f"lmcpipe: waiting for a free {what}: every one is held by another job "
                f"(locks in {folder})")
            told = True
        time.sleep(poll_s)


def _hold(slot: Slot, fd: int | None) -> Slot:
    _held["slot"], _held["fd"] = slot, fd
    return slot


def release() -> None:
    """Give the held slot back before the process ends (a job that claimed a GPU slot and then
    found no usable CUDA device; tests). The process's exit releases it anyway."""
    if _held["fd"] is not None:
        os.close(_held["fd"])
    _held["slot"], _held["fd"] = None, None


def claim_gpu(jobs_per_gpu: int = 1, devices: list[str] | None = None,
              directory: Path | None = None) -> Slot | None:
    """Claim a GPU slot and point ``CUDA_VISIBLE_DEVICES`` at its device; None without GPUs.

    ``devices``: the ids to share out (default ``gpu_devices()``; tests pass their own, with no
    GPU behind them). The variable is narrowed only while CUDA has not started in this process
    (``narrowed``); where it had (a test calling a stage in-process after CUDA work), the job
    uses its device by torch's index instead (``ordinal``): the same GPU, named differently."""
    if _held["slot"] is not None:
        return _held["slot"]
    if jobs_per_gpu < 1:
        raise InputError(f"--jobs-per-gpu {jobs_per_gpu}: must be at least 1 "
                         "(config key resources.jobs_per_gpu)")
    devices = gpu_devices() if devices is None else devices
    if not devices:
        return None
    if len(devices) == 1 and visible_devices() == devices:  # e.g. SLURM: this job's one GPU
        return _hold(Slot("gpu", 0, devices[0], (), jobs_per_gpu, time.time(), False), None)
    order = [(d, j) for j in range(jobs_per_gpu) for d in devices]  # spread before sharing
    names = [f"gpu-{d}-{j}" for d, j in order]
    what = f"GPU slot ({len(devices)} GPU{'s' * (len(devices) > 1)} x {jobs_per_gpu} job each)"
    index, fd, when, waited = claim(names, what, directory)
    device = order[index][0]
    torch = sys.modules.get("torch")  # not imported: CUDA cannot have started
    narrowed = torch is None or not torch.cuda.is_initialized()
    if narrowed:
        os.environ[VISIBLE] = device
    return _hold(Slot("gpu", index, device, (), jobs_per_gpu, when, True, waited,
                      ordinal=devices.index(device), narrowed=narrowed), fd)


def claim_cpu(slots: int, directory: Path | None = None) -> Slot | None:
    """Claim one of ``slots`` CPU slots and pin every thread of this process to its share of
    the CPUs the process was allowed; None when ``slots`` is 0 (no CPU slots)."""
    if _held["slot"] is not None:
        return _held["slot"]
    if slots < 0:
        raise InputError(f"--cpu-slots {slots}: must be 0 (off) or more "
                         "(config key resources.cpu_slots)")
    if slots == 0:
        return None
    allowed = sorted(os.sched_getaffinity(0))
    index, fd, when, waited = claim([f"cpu{slots}-{i}" for i in range(slots)],
                                    f"CPU slot (resources.cpu_slots: {slots})", directory)
    cores = cpu_share(index, slots, allowed)
    for task in os.listdir("/proc/self/task"):  # every thread: torch may have started some
        with contextlib.suppress(ProcessLookupError):  # a thread that has just ended
            os.sched_setaffinity(int(task), cores)
    return _hold(Slot("cpu", index, None, cores, 1, when, True, waited), fd)
