"""Cohorts: the runs of one (seed, k, level) trained in one process, one after another or stacked.

* At ``stack`` 1 a cohort's members are bit-identical to the same runs made by ``lmcpipe train``.
* Stacked members (``training.stacked``) end within a stated tolerance of the solo-trained weights
  (LeNet with Adam, ResNet-20 with SGD, masks and BatchNorm); pruned weights stay exactly zero.
* A cohort run twice gives the same bits; one killed with SIGKILL mid-training resumes (finished
  members from their partial files, the chunk in progress from its checkpoint) and ends with the
  same bits as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from lmcpipe import atomic, cli, data, masks, models, paths
from lmcpipe.data.testing import write_cifar
from lmcpipe.hparams import TrainHParams, to_json
from lmcpipe.training import checkpoint, cohort, single, stacked
from tests.helpers import state_equal, tiny_hparams

REPO = Path(__file__).resolve().parents[1]

# Measured on the development CPU (float32), as ‖θ_stacked − θ_solo‖ / ‖θ_solo − θ_start‖:
# LeNet-300-100, Adam, 40 steps: up to 9e-6 over the four members (max |Δw| 7e-5).
# ResNet-20, SGD + momentum, 3 steps, masks and BatchNorm on 48 noise images in batches of 8: the
# difference of the stacked and the solo run, over every float tensor, is 1e-7 to 7e-4 of the
# distance training moved (‖θ_stacked − θ_solo‖ / ‖θ_solo − θ_start‖, by member and by
# hyperparameters). This tiny set is chaotic: a 1e-6 relative nudge of the start moves a solo
# run's weights by 6e-2 in 2 steps, so rounding is amplified, and a per-tensor bound is
# ill-posed for BatchNorm biases that start at 0. Comparing a member with its neighbour's solo
# run (another data stream: 5e-2; another start: 5) shows the bound would see a mix-up.
LENET_TOL = 2e-4
RESNET_DISPLACEMENT_TOL = 3e-3


def write_start(directory: Path, hp: TrainHParams, seed: int) -> str:
    path = directory / f"w0_s{seed}.pt"
    model = models.build_initialised(hp.model, hp.dataset, seed)
    atomic.save_torch(checkpoint.model_record(model, hp.model, 0), path)
    return str(path)


def write_mask(directory: Path, start: str, fraction: float = 0.5) -> str:
    weights = {n: w for n, w in atomic.load_torch(start)["state_dict"].items()
               if n in models.build(*_model_of(start)).prunable_names()}
    path = directory / "mask.pt"
    masks.save(masks.magnitude_prune(weights, None, fraction), str(path))
    return str(path)


def _model_of(start: str) -> tuple[str, str]:
    name = atomic.load_torch(start)["model"]
    return name, "cifar10" if name == "resnet20" else "fashion_mnist"


def members(out: Path, start: str, mask: str) -> list[cohort.Member]:
    """A level-like cohort: two IMP copies of two orders, a random-reinit run, all masked."""
    specs = [(0, 1, start), (0, 2, start), (1, 1, start), (1, 2, ""), ]
    return [cohort.Member(order=o, copy=c, model_out=str(out / f"d{o}c{c}{'r' * (not s)}/model.pt"),
                          metrics_out=str(out / f"d{o}c{c}{'r' * (not s)}/metrics.csv"),
                          start=s, mask=mask) for o, c, s in specs]


def weights(path: str) -> dict[str, torch.Tensor]:
    return atomic.load_torch(path)["state_dict"]


def run_cohort(hp, ms, dataset, stack):
    results = cohort.train_cohort(hp, 0, 0, 1, ms, dataset, stack)
    cohort.write_members(hp, ms, results)


def test_stack_one_is_bit_identical_to_single_train_runs(tmp_path, data_root, dataset):
    hp = tiny_hparams(data_root)
    start = write_start(tmp_path, hp, 0)
    ms = members(tmp_path / "cohort", start, write_mask(tmp_path, start))
    run_cohort(hp, ms, dataset, stack=1)
    for m in ms:
        single = tmp_path / "single" / Path(m.model_out).parent.name
        start_args = ["--start", m.start] if m.start else ["--reinit"]
        cli.main(["train", "--hparams", to_json(hp), "--seed", "0", *start_args, "--level", "1",
                  "--mask", m.mask, "--order", str(m.order), "--copy", str(m.copy),
                  "--model-out", str(single / "model.pt"),
                  "--metrics-out", str(single / "metrics.csv")])
        assert state_equal(weights(m.model_out), weights(str(single / "model.pt"))), m
        assert Path(m.metrics_out).read_text() == (single / "metrics.csv").read_text()
        assert not os.path.exists(paths.partial_file(m.model_out))


def test_stacked_lenet_members_match_solo_runs(tmp_path, data_root, dataset):
    hp = tiny_hparams(data_root, steps=40, eval_steps=(0, 20, 40), checkpoint_every=0)
    start = write_start(tmp_path, hp, 0)
    ms = members(tmp_path / "stacked", start, write_mask(tmp_path, start))
    solo = cohort.train_cohort(hp, 0, 0, 1, ms, dataset, stack=1)
    for m in ms:  # the solo partials would otherwise be taken as finished members
        os.unlink(paths.partial_file(m.model_out))
    together = cohort.train_cohort(hp, 0, 0, 1, ms, dataset, stack=4)
    mask = masks.load(ms[0].mask)
    start_state = atomic.load_torch(start)["state_dict"]
    for (a, rows_a), (b, rows_b) in zip(solo, together, strict=True):
        # relative to how far training moved: Adam turns rounding in near-zero gradients into
        # steps of up to lr, so an absolute bound per weight is ill-posed
        flat = [torch.cat([d[k].flatten() for k in a]) for d in (a, b, start_state)]
        assert float((flat[1] - flat[0]).norm() / (flat[0] - flat[2]).norm()) <= LENET_TOL
        assert [(r["step"], r["split"]) for r in rows_a] == [(r["step"], r["split"])
                                                             for r in rows_b]
        assert all(abs(r["loss"] - s["loss"]) < 1e-5 for r, s in zip(rows_a, rows_b, strict=True))
        assert all(bool((b[n][~mask[n]] == 0).all()) for n in mask)


@pytest.fixture(scope="module")
def cifar(tmp_path_factory) -> tuple[TrainHParams, data.Data]:
    root = tmp_path_factory.mktemp("cifar") / "data"
    rng = np.random.default_rng(0)
    write_cifar(root / "cifar10" / "cifar-10-batches-py",
                rng.integers(0, 256, (48, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, 48),
                10, (32, 16))
    hp = TrainHParams(model="resnet20", dataset="cifar10", data_root=str(root), optimizer="sgd",
                      lr=0.05, momentum=0.9, weight_decay=1e-4, batch_size=8, steps=3,
                      warmup_steps=2, eval_steps=(0, 3))
    return hp, data.load("cifar10", root)


def test_stacked_resnet20_members_match_solo_runs_with_masks_and_batchnorm(tmp_path, cifar):
    hp, dataset = cifar
    starts = [models.build_initialised("resnet20", "cifar10", s).state_dict() for s in (0, 0, 1)]
    prunable = models.build("resnet20", "cifar10").prunable_names()
    mask = masks.magnitude_prune({n: starts[0][n] for n in prunable}, None, 0.5)
    streams, member_masks = [(0, 1), (0, 2), (1, 1)], [mask, mask, None]
    finals, rows = stacked.train_stacked(hp, models.build("resnet20", "cifar10"), starts, dataset,
                                         streams, member_masks)
    solos = []
    for i, (order, copy) in enumerate(streams):
        model = models.build("resnet20", "cifar10")
        model.load_state_dict(starts[i])
        solo_rows = single.train(hp, model, dataset, order=order, copy=copy, mask=member_masks[i])
        solos.append(model.state_dict())
        assert len(rows[i]) == len(solo_rows)
        if member_masks[i] is not None:
            assert all(bool((finals[i][n][~mask[n]] == 0).all()) for n in mask)
        assert all(torch.equal(v, finals[i][k]) for k, v in solos[i].items()
                   if not v.is_floating_point())  # num_batches_tracked

    def moved(i: int, j: int) -> float:
        """‖stacked member i − solo run j‖ / ‖solo run j − its start‖, BatchNorm stats included."""
        keys = [k for k, v in solos[j].items() if v.is_floating_point()]
        flat = [torch.cat([d[k].flatten() for k in keys]) for d in (finals[i], solos[j], starts[j])]
        return float((flat[0] - flat[1]).norm() / (flat[1] - flat[2]).norm())

    assert all(moved(i, i) <= RESNET_DISPLACEMENT_TOL for i in range(3)), [moved(i, i)
                                                                             for i in range(3)]
    assert min(moved(1, 0), moved(2, 0)) > 10 * RESNET_DISPLACEMENT_TOL  # it would see a mix-up


def test_stacked_cohort_run_twice_gives_the_same_bits(tmp_path, data_root, dataset):
    hp = tiny_hparams(data_root, steps=20, checkpoint_every=0)
    start = write_start(tmp_path, hp, 0)
    mask = write_mask(tmp_path, start)
    outs = []
    for name in ("a", "b"):
        ms = members(tmp_path / name, start, mask)
        run_cohort(hp, ms, dataset, stack=2)
        outs.append([weights(m.model_out) for m in ms])
    assert all(state_equal(x, y) for x, y in zip(*outs, strict=True))


@pytest.mark.parametrize("stack", [1, 2])
def test_killed_cohort_resumes_bit_identical(tmp_path, data_root, stack):
    """SIGKILL a real ``lmcpipe cohort`` process once its first chunk is kept as partial files
    and the next one has written a checkpoint; the rerun ends with the uninterrupted bits."""
    hp = tiny_hparams(data_root, steps=400, checkpoint_every=10, eval_steps=(0, 200, 400))
    kill_and_resume(tmp_path, hp, stack, "cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("stack", [1, 2])
def test_killed_cohort_resumes_bit_identical_on_cuda(tmp_path, cifar, stack):
    """The same on a GPU with ResNet-20 (cuDNN convolutions, BatchNorm), as a GPU job runs:
    the stage's default settings make CUDA deterministic (bench/gpu_check.sh runs this)."""
    hp = dataclasses.replace(cifar[0], steps=120, warmup_steps=0, checkpoint_every=5,
                             eval_steps=(0, 60, 120))
    kill_and_resume(tmp_path, hp, stack, "cuda")


def test_killed_compiled_cohort_resumes_bit_identical(tmp_path, data_root):
    """The same with the step compiled whole (``--compile default``, inductor on the CPU): the
    resumed process compiles the same graph, so its kernels and bits are the uninterrupted
    run's."""
    hp = tiny_hparams(data_root, steps=400, checkpoint_every=10, eval_steps=(0, 200, 400))
    kill_and_resume(tmp_path, hp, 2, "cpu", compile="default")


def kill_and_resume(tmp_path: Path, hp: TrainHParams, stack: int, device: str,
                    compile: str = "none") -> None:
    start = write_start(tmp_path, hp, 0)
    mask = write_mask(tmp_path, start)

    def command(ms):
        spec = json.dumps([dataclasses.asdict(m) for m in ms])
        return [sys.executable, "-m", "lmcpipe", "cohort", "--hparams", to_json(hp), "--seed",
                "0", "--start-step", "0", "--level", "1", "--members", spec, "--stack",
                str(stack), "--device", device, "--compile", compile]

    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    reference = members(tmp_path / "uninterrupted", start, mask)
    subprocess.run(command(reference), check=True, capture_output=True, env=env, timeout=600)
    killed = members(tmp_path / "killed", start, mask)
    later = killed[stack]  # first member of the second chunk
    checkpoint = (paths.resume_file if stack == 1 else paths.stack_resume_file)(later.model_out)
    proc = subprocess.Popen(command(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=env)
    deadline = time.time() + 480
    while not os.path.exists(checkpoint) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    assert os.path.exists(checkpoint), "the second chunk never wrote a checkpoint"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert all(os.path.exists(paths.partial_file(m.model_out)) for m in killed[:stack])
    assert not any(os.path.exists(m.model_out) for m in killed)  # nothing looks finished
    rerun = subprocess.run(command(killed), capture_output=True, text=True, env=env, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"{stack} of 4 members already trained" in rerun.stdout
    assert "resumed" in rerun.stdout
    for a, b in zip(reference, killed, strict=True):
        assert state_equal(weights(a.model_out), weights(b.model_out))
        assert Path(a.metrics_out).read_text() == Path(b.metrics_out).read_text()
    leftovers = [p for p in (tmp_path / "killed").rglob("*") if p.suffix in (".partial",
                                                                             ".resume")]
    assert leftovers == []


def test_default_stack_is_one_on_the_cpu():
    assert cohort.default_stack(torch.device("cpu")) == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_stacked_members_match_solo_runs_on_cuda(cifar):
    """The same equivalence on a GPU (bench/gpu_check.sh runs it) through cuDNN, as GPU jobs
    train: cuDNN enabled and deterministic, no autotuning, TF32 off for both paths (``flags``
    sets every flag it is not given to its default, ``enabled=False`` included, which would test
    ATen's own CUDA convolutions instead)."""
    hp, dataset = cifar
    dataset = data.load("cifar10", hp.data_root, "cuda")
    starts = [models.build_initialised("resnet20", "cifar10", s).state_dict() for s in (0, 1)]
    matmul_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True,
                                        allow_tf32=False):
            assert torch.backends.cudnn.is_available() and torch.backends.cudnn.enabled
            finals, _ = stacked.train_stacked(hp, models.build("resnet20", "cifar10"), starts,
                                              dataset, [(0, 1), (1, 1)], [None, None])
            for i, order in enumerate((0, 1)):
                model = models.build("resnet20", "cifar10")
                model.load_state_dict(starts[i])
                single.train(hp, model, dataset, order=order, copy=1)
                solo = {k: v.cpu() for k, v in model.state_dict().items() if v.is_floating_point()}
                flat = [torch.cat([d[k].flatten() for k in solo]) for d in (finals[i], solo,
                                                                            starts[i])]
                moved = (flat[1] - flat[2]).norm()
                assert (flat[0] - flat[1]).norm() <= RESNET_DISPLACEMENT_TOL * moved
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul_tf32
