"""GPU and CPU slots (lmcpipe.slots) and the numerics a job runs with (lmcpipe.devices).

Claims are made by real processes on real lock files: concurrent claimants, a SIGKILLed holder,
and a real Snakemake run whose jobs record the slot they held. There is no GPU here, so the GPU
allocator is given device ids of its own (``claim_gpu(devices=...)``) and the Snakemake run uses
CPU slots (``resources.cpu_slots``), which share the same claim.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lmcpipe import cli, paths, slots
from lmcpipe.hparams import to_json
from tests.helpers import tiny_hparams, write_dataset
from tests.test_workflow import snakemake

REPO = Path(__file__).resolve().parents[1]


def python(code: str, env: dict[str, str], drop: tuple[str, ...] = (), **kwargs
           ) -> subprocess.Popen:
    """``code`` in a fresh interpreter with lmcpipe importable, ``env`` added and ``drop``
    removed from the environment."""
    environ = {k: v for k, v in {**os.environ, **env}.items() if k not in drop}
    return subprocess.Popen([sys.executable, "-c", code], env=environ, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO, **kwargs)


def line_of(stream, timeout: float) -> str:
    """The next line of a child's pipe, or "" when none comes within ``timeout`` seconds."""
    ready, _, _ = select.select([stream], [], [], timeout)
    return stream.readline() if ready else ""


def overlapping(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


# --- the allocator, with processes -----------------------------------------------------------
CLAIMANT = """
import json, os, sys, time
from pathlib import Path
from lmcpipe import slots
here = Path(sys.argv[1])
(here / f"ready{os.getpid()}").touch()
while not (here / "go").exists():
    time.sleep(0.01)
slot = slots.claim_gpu(jobs_per_gpu=1, devices=["3", "5"])
time.sleep(0.4)
print(json.dumps({"device": slot.device, "index": slot.index, "claimed": slot.claimed,
                  "released": time.time(), "visible": os.environ["CUDA_VISIBLE_DEVICES"]}))
"""


def test_concurrent_claims_never_share_a_slot(tmp_path):
    """Six processes start claiming at the same instant over two GPU slots: a slot is never
    held by two at once, both are used, and each process sees only its own device."""
    env = {slots.SLOT_DIR_ENV: str(tmp_path / "locks")}
    procs = [python(CLAIMANT.replace("sys.argv[1]", repr(str(tmp_path))), env)
             for _ in range(6)]
    deadline = time.time() + 60
    while len(list(tmp_path.glob("ready*"))) < 6 and time.time() < deadline:
        time.sleep(0.05)
    (tmp_path / "go").touch()
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]
        results.append((json.loads(out), err))
    claims = [r for r, _ in results]
    assert {c["device"] for c in claims} == {"3", "5"}
    for c in claims:
        assert c["visible"] == c["device"]
    for i, a in enumerate(claims):
        for b in claims[i + 1:]:
            if a["device"] == b["device"]:
                assert not overlapping((a["claimed"], a["released"]),
                                       (b["claimed"], b["released"])), (a, b)
    waiting = [err for _, err in results if "waiting" in err]
    assert waiting, "no claimant ever waited: the test did not contend"
    assert all("waiting for a free GPU slot (2 GPUs x 1 job each)" in w for w in waiting)


HOLDER = """
import sys
from lmcpipe import slots
slot = slots.claim_gpu(devices=["7"])
print(slot.index, flush=True)
sys.stdin.read()  # hold until killed
"""


def test_a_sigkilled_holder_frees_its_slot(tmp_path):
    env = {slots.SLOT_DIR_ENV: str(tmp_path)}
    holder = python(HOLDER, env, drop=("CUDA_VISIBLE_DEVICES",), stdin=subprocess.PIPE)
    assert line_of(holder.stdout, 60).strip() == "0"
    waiter = python("from lmcpipe import slots\n"
                    "s = slots.claim_gpu(devices=['7'])\nprint(s.device, s.waited_s)", env,
                    drop=("CUDA_VISIBLE_DEVICES",))
    said = line_of(waiter.stderr, 60)  # it waits, and says so, while the holder lives
    assert "waiting for a free GPU slot (1 GPU x 1 job each): every one is held" in said, said
    assert str(tmp_path) in said and waiter.poll() is None
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=30)
    out, err = waiter.communicate(timeout=60)
    assert waiter.returncode == 0, err
    device, waited = out.split()
    assert device == "7" and float(waited) > 0
    assert f"pid {waiter.pid} " in (tmp_path / "gpu-7-0.lock").read_text()  # names its holder


def test_one_visible_device_is_taken_as_given(tmp_path, monkeypatch):
    """One device in CUDA_VISIBLE_DEVICES (SLURM sets it so): used without a lock, by anyone."""
    slots.release()  # a stage run in this process before may hold one
    uuid = "GPU-8f3a2c1e-0b1d-4c2e-9a7f-123456789abc"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", uuid)
    monkeypatch.setenv(slots.SLOT_DIR_ENV, str(tmp_path / "locks"))
    try:
        slot = slots.claim_gpu(jobs_per_gpu=2)
        assert (slot.device, slot.locked, slot.index) == (uuid, False, 0)
        assert os.environ["CUDA_VISIBLE_DEVICES"] == uuid
        assert not (tmp_path / "locks").exists()
    finally:
        slots.release()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")  # two listed: a locked slot of one
    try:
        slot = slots.claim_gpu()
        assert (slot.device, slot.locked) == ("3", True)
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "3"
        assert [p.name for p in (tmp_path / "locks").iterdir()] == ["gpu-3-0.lock"]
    finally:
        slots.release()


@pytest.mark.parametrize(("value", "ids"), [
    ("0,1", ["0", "1"]), (" 2 , 3", ["2", "3"]), ("", []), ("-1", []), ("1,foo,2", ["1"]),
    ("GPU-8f3a2c1e-0b1d,MIG-GPU-8f3a/1/0", ["GPU-8f3a2c1e-0b1d", "MIG-GPU-8f3a/1/0"]),
])
def test_visible_devices_are_read_as_cuda_reads_them(value, ids):
    assert slots.visible_devices({"CUDA_VISIBLE_DEVICES": value}) == ids
    assert slots.visible_devices({}) is None


@pytest.mark.parametrize("n", [1, 2, 3, 4, 6])
def test_cpu_shares_split_the_allowed_cpus(n):
    allowed = [0, 1, 2, 3, 8, 9]
    shares = [slots.cpu_share(i, n, allowed) for i in range(n)]
    assert all(shares)
    if n <= len(allowed):
        assert sorted(c for s in shares for c in s) == allowed  # disjoint, covering
    assert slots.cpu_share(0, 8, [4, 5]) == (4,) and slots.cpu_share(3, 8, [4, 5]) == (5,)


def test_bad_slot_flags_are_refused_in_one_line(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["train", "--hparams", to_json(tiny_hparams("data")), "--seed", "0",
                  "--start", "w.pt", "--order", "0", "--model-out", "m.pt",
                  "--jobs-per-gpu", "0"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--jobs-per-gpu: expected an integer >= 1, got '0'" in err


# --- numerics --------------------------------------------------------------------------------
NUMERICS = """
import json, os, sys, time, torch
from lmcpipe import devices, provenance
for precision, deterministic in json.loads(sys.argv[1]):
    if os.fork():  # each case in a fresh process (torch imported once, CUDA not started: safe)
        assert os.wait()[1] == 0
        continue
    device = devices.pick_device("auto", precision=precision, deterministic=deterministic)
    initialised = torch.cuda.is_initialized()
    record = provenance.record("test", device, time.perf_counter(), 1.0)  # may start CUDA
    print(json.dumps({"device": str(device), "initialised": initialised,
                      "cudnn": [torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark],
                      "algorithms": torch.are_deterministic_algorithms_enabled(),
                      "legacy": [torch.backends.cuda.matmul.allow_tf32,
                                 torch.backends.cudnn.allow_tf32],
                      "cublas": os.environ.get("CUBLAS_WORKSPACE_CONFIG"), "record": record}),
          flush=True)
    os._exit(0)
"""


def test_numerics_are_set_before_cuda_starts_and_recorded(tmp_path):
    """fp32 without determinism and tf32 with it, each in a fresh process: the settings are in
    force, CUDA has not started, and the record says what was in force."""
    cases = [("fp32", False), ("tf32", True)]
    env = {k: v for k, v in os.environ.items() if k != "CUBLAS_WORKSPACE_CONFIG"}
    proc = subprocess.run([sys.executable, "-c", NUMERICS, json.dumps(cases)], cwd=REPO,
                          capture_output=True, text=True, timeout=300,
                          env={**env, slots.SLOT_DIR_ENV: str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    gpu = torch.cuda.is_available()
    for (precision, deterministic), line in zip(cases, proc.stdout.splitlines(), strict=True):
        got = json.loads(line)
        assert got["device"] == ("cuda:0" if gpu else "cpu") and not got["initialised"]
        assert got["cudnn"] == [deterministic, not deterministic]
        # torch's deterministic-algorithms switch is flipped for a CUDA job only: on the CPU it
        # would import torch._dynamo (~2 s a job) for kernels that are deterministic anyway
        assert got["algorithms"] is (deterministic and gpu)
        # torch's legacy TF32 readers agree (a mix of its two APIs makes them raise)
        assert got["legacy"] == [precision == "tf32"] * 2
        cublas = ":4096:8" if deterministic else None
        assert got["cublas"] == cublas
        assert got["record"]["numerics"] == {
            "precision": precision, "tf32_matmul": precision == "tf32",
            "tf32_conv": precision == "tf32", "deterministic": deterministic and gpu,
            "deterministic_warn_only": gpu, "cudnn_deterministic": deterministic,
            "cudnn_benchmark": not deterministic, "cublas_workspace_config": cublas}
        slot = got["record"]["slot"]  # the CPU without cpu_slots: none
        assert (slot["kind"] == "gpu") if gpu else slot is None


def test_numerics_during_a_block_are_undone_after_it():
    """What a calibration measures under (lmcpipe.calibrate): the job's numerics, then this
    process's own back, TF32 for matmuls and convolutions each as it was."""
    from lmcpipe import devices

    before = devices.numerics("fp32") | {"cublas_workspace_config": None}
    with devices.numerics_during("tf32", not before["deterministic"]) as inside:
        assert inside["tf32_matmul"] and inside["tf32_conv"]
        assert inside["deterministic"] is not before["deterministic"]
    assert devices.numerics("fp32") | {"cublas_workspace_config": None} == before


# --- a real Snakemake run on two slots ------------------------------------------------------
TWO_SLOTS = {
    "model": "lenet_300_100", "dataset": "fashion_mnist",
    "train": {"optimizer": "adam", "lr": 1e-3, "batch_size": 20, "steps": 20,
              "eval_steps": [0, 20], "checkpoint_every": 0},
    "prune": {"levels": 0, "rewind_steps": [0]},
    "instability": {"fork_steps": [0, 5], "alphas": 3},
    "replicates": {"inits": [0], "orders": [0, 1]},
}
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def job_resources(log: str) -> dict[str, dict[str, str]]:
    """{rule: its threads and resources} as a Snakemake run logs them (the last job of each)."""
    found: dict[str, dict[str, str]] = {}
    rule = None
    for line in log.splitlines():
        line = line.strip()
        if line.startswith(("rule ", "localrule ")):
            rule = line.split()[-1].rstrip(":")
        elif rule and line.startswith(("threads:", "resources:")):
            key, _, value = line.partition(": ")
            items = [value] if key == "threads" else value.split(", ")
            found.setdefault(rule, {}).update(
                {"threads": value} if key == "threads" else
                dict(item.partition("=")[::2] for item in items))
    return found


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "resources", "env"), [
    # a GPU experiment on a machine without CUDA (hidden where there is one): CPU slots
    ("cpu", {"gpu": True, "cpu_slots": 2}, {"CUDA_VISIBLE_DEVICES": ""}),
    pytest.param("gpu", {"gpu": True, "jobs_per_gpu": 2}, {},
                 marks=CUDA),  # bench/gpu_check.sh: two jobs on two slots (one GPU or two)
])
def test_workflow_jobs_hold_distinct_slots(tmp_path, kind, resources, env):
    """A GPU experiment's three training jobs, ready at once, on --cores 2 --resources gpu=2
    and two slots: they run side by side (locally a GPU job no longer takes every core) while
    the small jobs ask for no GPU; their records show that no two jobs running at the same time
    held the same slot, that both slots were used, where each job ran (its CPU share; its GPU
    as cuda:0), and the numerics it ran with."""
    write_dataset(tmp_path / "data" / "fashion_mnist")
    exp = {**TWO_SLOTS, "resources": resources}
    config = {"data_root": str(tmp_path / "data"), "experiments": {"tiny": exp}}
    fork = paths.FORK.format(exp="tiny", seed=0, k=0, variant="imp", level=0, order=1, cp=2)
    targets = [f"{paths.dense('tiny', 0)}/{paths.MODEL}", paths.rewind("tiny", 0, 5),
               f"{fork}/{paths.MODEL}"]  # three jobs, all ready once W_0 is written
    done = snakemake(tmp_path, config, *targets, "--resources", "gpu=2",
                     env={slots.SLOT_DIR_ENV: str(tmp_path / "locks"), **env})
    assert done.returncode == 0, done.stderr[-3000:]
    asked = job_resources(done.stdout + done.stderr)
    assert asked["init"]["gpu"] == "0" and asked["rewind"]["gpu"] == "1"
    assert all(a.get("threads", "1") == "1" for a in asked.values())  # logged when above 1
    jobs: dict[tuple[int, float], dict] = {}  # one job per (slot, claim): its records' span
    for path in (tmp_path / "results").rglob("*.run.json"):
        record = json.loads(path.read_text())
        slot = record["slot"]
        assert slot["kind"] == kind and record["numerics"]["precision"] == "fp32"
        assert record["numerics"]["deterministic"] is (kind == "gpu")  # torch's switch: CUDA
        assert record["numerics"]["cudnn_deterministic"] is True
        assert record["numerics"]["tf32_conv"] is False
        job = jobs.setdefault((slot["index"], slot["claimed"]),
                              {"slot": slot, "device": record["device"], "end": 0.0,
                               "stages": set()})
        job["end"] = max(job["end"], path.stat().st_mtime)  # records come last in a job
        job["stages"].add(record["stage"])
    assert len(jobs) == 3 and {s for j in jobs.values() for s in j["stages"]} == {"cohort",
                                                                                    "train"}
    # slot 1 is claimed only while another job holds slot 0: two jobs held slots at once; and
    # three jobs on two slots reuse one, whose two holders' spans must not overlap (below)
    assert {index for index, _ in jobs} == {0, 1}
    allowed = sorted(os.sched_getaffinity(0))
    gpus = slots.gpu_devices() if kind == "gpu" else []
    for (index, _), job in jobs.items():
        if kind == "cpu":
            assert tuple(job["slot"]["cores"]) == slots.cpu_share(index, 2, allowed)
        else:  # slots go GPU by GPU before a second job goes on one
            assert job["slot"]["device"] == gpus[index % len(gpus)]
            assert job["device"] == "cuda:0"  # its own GPU, as CUDA_VISIBLE_DEVICES shows it
    spans = {key: (key[1], job["end"]) for key, job in jobs.items()}
    for (index, claimed), span in spans.items():
        for (other, when), other_span in spans.items():
            if other == index and when != claimed:
                assert not overlapping(span, other_span)
