"""Training: start points, masks, data-order streams, determinism, resume, LR schedule."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from lmcpipe import atomic, cli, masks, models, provenance
from lmcpipe.hparams import TrainHParams, to_json
from lmcpipe.training import single
from lmcpipe.training.streams import batch_indices
from tests.helpers import sha256, state_equal, tiny_hparams

MODEL, DATASET = "lenet_300_100", "fashion_mnist"


def init(seed: int = 0):
    return models.build_initialised(MODEL, DATASET, seed)


def imp_mask(model, levels: int = 2, fraction: float = 0.5):
    params = dict(model.named_parameters())
    weights = {n: params[n].detach() for n in model.prunable_names()}
    mask = None
    for _ in range(levels):
        mask = masks.magnitude_prune(weights, mask, fraction)
    return mask


def state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def run(hp, dataset, *, seed=0, order=0, copy=1, mask=None, **kw):
    model = init(seed)
    rows = single.train(hp, model, dataset, order=order, copy=copy, mask=mask, **kw)
    return state(model), rows


# --- start point and masks ------------------------------------------------------------------
def test_start_point_is_w_k_times_mask(data_root, dataset):
    hp = tiny_hparams(data_root)
    w_k = init(1)
    mask = imp_mask(w_k)
    before = state(w_k)
    rows = single.train(hp, w_k, dataset, order=0, copy=1, start_step=5, stop_step=5, mask=mask,
                       record=False)
    assert rows == []
    after = state(w_k)
    for name, value in before.items():
        expected = value * mask[name] if name in mask else value
        assert torch.equal(after[name], expected), name
    assert any((before[n] != 0)[~mask[n]].any() for n in mask)  # W_k had weights to remove


def test_training_from_w_k_ignores_pruned_values(data_root, dataset):
    """Level n starts from W_k ⊙ m: the pruned entries of W_k have no influence at all."""
    hp = tiny_hparams(data_root)
    w_k = init(1)
    mask = imp_mask(w_k)
    pre = init(1)
    with torch.no_grad():
        for name, p in pre.named_parameters():
            if name in mask:
                p.mul_(mask[name])
    for model in (w_k, pre):
        single.train(hp, model, dataset, order=0, copy=1, start_step=5, stop_step=12, mask=mask,
                    record=False)
    assert state_equal(state(w_k), state(pre))


@pytest.mark.parametrize(
    "opt", [dict(optimizer="adam", weight_decay=1e-2),
            dict(optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=1e-2)],
    ids=["adam", "sgd-momentum"],
)
def test_pruned_weights_stay_exactly_zero(data_root, dataset, tmp_path, opt):
    hp = tiny_hparams(data_root, **opt)
    start = init(2)
    mask = imp_mask(start)
    w0 = state(start)
    resume = tmp_path / "run.resume"  # holds the optimiser state of step 25
    w, rows = run(hp, dataset, seed=2, mask=mask, resume_path=resume, fingerprint="f")
    for name, value in w.items():
        if name in mask:
            assert (value[~mask[name]] == 0).all(), name
            changed = (value != w0[name])[mask[name]].float().mean()
            assert changed > 0.9, name
        else:  # biases and the output layer train too
            assert not torch.equal(value, w0[name]), name
    # gradients are masked too, so momentum / Adam moments stay zero at pruned positions
    moments = {name: [t for t in tensors(atomic.load_torch(resume)["optimizer"])
                      if t.shape == mask[name].shape] for name in mask}
    for name, found in moments.items():
        assert found, name
        assert all((t[~mask[name]] == 0).all() and (t[mask[name]] != 0).any() for t in found)
    final = {r["split"]: r["error"] for r in rows if r["step"] == hp.steps}
    first = {r["split"]: r["error"] for r in rows if r["step"] == 0}
    assert final["train"] < first["train"] - 0.3  # it learns, even at 25 % density


def tensors(obj):
    """Every tensor inside nested dicts, lists and tuples (an optimiser's state)."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from tensors(v)
    elif isinstance(obj, list | tuple):
        for v in obj:
            yield from tensors(v)


# --- data order and determinism --------------------------------------------------------------
def test_batch_indices_are_epoch_permutations():
    n, b = 250, 20
    per_epoch = 13  # the last batch of an epoch is short
    cache: dict = {}
    for epoch in range(3):
        steps = range(epoch * per_epoch, (epoch + 1) * per_epoch)
        batches = [batch_indices(n, b, 4, 2, s, cache) for s in steps]
        assert [len(x) for x in batches] == [b] * 12 + [10]
        assert torch.equal(torch.cat(batches).sort().values, torch.arange(n))
        # the cache changes nothing
        uncached = [batch_indices(n, b, 4, 2, s) for s in steps]
        assert all(torch.equal(x, y) for x, y in zip(batches, uncached, strict=True))
    epoch0 = torch.cat([batch_indices(n, b, 4, 2, s) for s in range(per_epoch)])
    epoch1 = torch.cat([batch_indices(n, b, 4, 2, s) for s in range(per_epoch, 2 * per_epoch)])
    assert not torch.equal(epoch0, epoch1)


def test_batch_streams_of_copies_and_orders_differ_and_reproduce():
    def stream(order, copy):
        return torch.cat([batch_indices(240, 20, order, copy, s) for s in range(36)])

    assert torch.equal(stream(0, 1), stream(0, 1))
    assert torch.equal(stream(3, 2), stream(3, 2))
    streams = [stream(0, 1), stream(0, 2), stream(1, 1), stream(1, 2)]
    for i in range(4):
        for j in range(i + 1, 4):
            assert not torch.equal(streams[i][:20], streams[j][:20]), (i, j)


def test_same_seeds_give_identical_weights(data_root, dataset):
    hp = tiny_hparams(data_root)
    mask = imp_mask(init(0), levels=1)
    a, rows_a = run(hp, dataset, order=1, copy=2, mask=mask)
    b, rows_b = run(hp, dataset, order=1, copy=2, mask=mask)
    assert state_equal(a, b)
    assert rows_a == rows_b
    other_order, _ = run(hp, dataset, order=2, copy=2, mask=mask)
    other_copy, _ = run(hp, dataset, order=1, copy=1, mask=mask)
    other_init, _ = run(hp, dataset, seed=5, order=1, copy=2, mask=mask)
    for other in (other_order, other_copy, other_init):
        assert not torch.equal(a["fc1.weight"], other["fc1.weight"])


def test_stream_continues_at_the_start_step(data_root, dataset):
    """A fork at step k sees the batches of steps k, k+1, ... (stateless SGD makes it exact)."""
    hp = tiny_hparams(data_root, optimizer="sgd", lr=0.05, steps=12)
    whole, _ = run(hp, dataset, record=False)
    model = init(0)
    single.train(hp, model, dataset, order=0, copy=1, stop_step=5, record=False)
    single.train(hp, model, dataset, order=0, copy=1, start_step=5, record=False)
    assert state_equal(whole, state(model))


# --- learning-rate schedule -----------------------------------------------------------------
def test_lr_schedule():
    hp = TrainHParams(model=MODEL, dataset=DATASET, data_root="x", optimizer="sgd", lr=0.8,
                      batch_size=1, steps=100, milestones=(10, 20), gamma=0.5, warmup_steps=4)
    assert [hp.lr_at(s) for s in range(4)] == pytest.approx([0.0, 0.2, 0.4, 0.6])
    assert hp.lr_at(4) == pytest.approx(0.8)
    assert hp.lr_at(9) == pytest.approx(0.8)
    assert hp.lr_at(10) == pytest.approx(0.4)
    assert hp.lr_at(19) == pytest.approx(0.4)
    assert hp.lr_at(20) == pytest.approx(0.2)
    assert hp.lr_at(99) == pytest.approx(0.2)
    plain = TrainHParams(model=MODEL, dataset=DATASET, data_root="x", optimizer="sgd", lr=0.3,
                         batch_size=1, steps=100)
    assert {plain.lr_at(s) for s in range(100)} == {0.3}
    both = TrainHParams(model=MODEL, dataset=DATASET, data_root="x", optimizer="sgd", lr=1.0,
                        batch_size=1, steps=100, milestones=(1,), gamma=0.1, warmup_steps=2)
    assert both.lr_at(0) == 0.0
    assert both.lr_at(1) == pytest.approx(0.05)  # decayed and halfway through warmup
    assert both.lr_at(2) == pytest.approx(0.1)


def test_training_applies_the_schedule(data_root, dataset):
    """gamma = 0 after a milestone freezes the weights from then on."""
    hp = tiny_hparams(data_root, optimizer="sgd", lr=0.05, milestones=(6,), gamma=0.0, steps=15)
    six, _ = run(hp, dataset, stop_step=6, record=False)
    fifteen, _ = run(hp, dataset, record=False)
    assert state_equal(six, fifteen)
    assert not state_equal(six, state(init(0)))


# --- resume ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "opt",
    [
        dict(optimizer="adam"),
        dict(optimizer="sgd", lr=0.05, momentum=0.9),
        dict(optimizer="sgd", lr=0.05),
    ],
    ids=["adam", "sgd-momentum", "sgd-plain"],
)
def test_resume_in_process_and_stale_file(data_root, dataset, tmp_path, capsys, opt):
    hp = tiny_hparams(data_root, **opt)
    resume = tmp_path / "run.resume"
    full, rows = run(hp, dataset, order=1, resume_path=resume, fingerprint="A")
    assert resume.exists()  # train() leaves the last checkpoint (step 25); the CLI deletes it
    assert atomic.load_torch(resume)["step"] == 25
    capsys.readouterr()

    again, rows_again = run(hp, dataset, order=1, resume_path=resume, fingerprint="A")
    assert "resumed at step 25" in capsys.readouterr().out
    assert state_equal(full, again)
    assert rows_again == rows

    # a file written by another run (other order, other fingerprint) must not be used
    fresh, fresh_rows = run(hp, dataset, order=0)
    stale, stale_rows = run(hp, dataset, order=0, resume_path=resume, fingerprint="B")
    assert "ignoring stale resume file" in capsys.readouterr().out
    assert state_equal(fresh, stale)
    assert fresh_rows == stale_rows


# --- the CLI -------------------------------------------------------------------------------------
def write_init(hp, path, seed=0) -> str:
    argv = ["init", "--hparams", to_json(hp), "--seed", str(seed), "--out", str(path)]
    assert cli.main(argv) == 0
    return str(path)


def train_argv(hp, start, out, *, mask=None, order=0, copy=1, extra=()) -> list[str]:
    argv = ["train", "--hparams", to_json(hp), "--seed", "0", "--start", str(start),
            "--order", str(order), "--copy", str(copy), "--model-out", f"{out}/model.pt",
            "--metrics-out", f"{out}/metrics.csv", "--device", "cpu", *extra]
    if mask:
        argv += ["--mask", str(mask)]
    return argv


def test_init_cli_writes_w0(data_root, tmp_path):
    hp = tiny_hparams(data_root)
    path = write_init(hp, tmp_path / "k0.pt", seed=3)
    record = atomic.load_torch(path)
    assert record["step"] == 0 and record["model"] == MODEL
    assert record["prunable"] == ["fc1.weight", "fc2.weight"]
    assert state_equal(record["state_dict"], state(init(3)))


def test_cli_start_point_is_w_k_times_mask(data_root, tmp_path):
    hp = tiny_hparams(data_root)
    start = write_init(hp, tmp_path / "k0.pt")
    w = atomic.load_torch(start)["state_dict"]
    mask = imp_mask(init(0))
    mask_path = tmp_path / "mask.pt"
    masks.save(mask, str(mask_path), level=2)
    argv = train_argv(hp, start, tmp_path / "out", mask=mask_path,
                      extra=["--start-step", "5", "--stop-step", "5"])
    assert cli.main(argv) == 0
    out = atomic.load_torch(tmp_path / "out" / "model.pt")
    assert out["step"] == 5
    for name, value in out["state_dict"].items():
        assert torch.equal(value, w[name] * mask[name] if name in mask else w[name])
    metrics = pd.read_csv(tmp_path / "out" / "metrics.csv")
    assert metrics["step"].tolist() == [5, 5]


def test_pair_copies_differ_only_in_data_order(data_root, tmp_path):
    hp = tiny_hparams(data_root)
    start = write_init(hp, tmp_path / "k0.pt")
    mask_path = tmp_path / "mask.pt"
    masks.save(imp_mask(init(0), levels=1), str(mask_path), level=1)
    digests = sha256(start), sha256(mask_path)

    argv = {c: train_argv(hp, start, tmp_path / f"c{c}", mask=mask_path, order=1, copy=c)
            for c in (1, 2)}
    # apart from where the outputs go, the only argument that differs is --copy
    diff = {argv[1][i - 1]: (a, b)
            for i, (a, b) in enumerate(zip(argv[1], argv[2], strict=True)) if a != b}
    assert set(diff) == {"--copy", "--model-out", "--metrics-out"}
    assert diff["--copy"] == ("1", "2")
    for c in (1, 2):
        assert cli.main(argv[c]) == 0
    assert (sha256(start), sha256(mask_path)) == digests  # inputs untouched

    w = {c: atomic.load_torch(tmp_path / f"c{c}" / "model.pt")["state_dict"] for c in (1, 2)}
    m = {c: pd.read_csv(tmp_path / f"c{c}" / "metrics.csv") for c in (1, 2)}
    for c in (1, 2):
        assert not (tmp_path / f"c{c}" / "model.pt.resume").exists()
        assert m[c]["step"].tolist() == [0, 0, 10, 10, 30, 30]
    # same start (W_0 ⊙ m): identical step-0 metrics; different batches: different afterwards
    pd.testing.assert_frame_equal(m[1][m[1].step == 0], m[2][m[2].step == 0])
    assert not (m[1].loss[m[1].step == 30].values == m[2].loss[m[2].step == 30].values).any()
    assert not torch.equal(w[1]["fc1.weight"], w[2]["fc1.weight"])
    pruned = ~masks.load(str(mask_path))["fc1.weight"]
    assert (w[1]["fc1.weight"][pruned] == 0).all() and (w[2]["fc1.weight"][pruned] == 0).all()

    # copy 2 is reproducible
    assert cli.main(train_argv(hp, start, tmp_path / "c2bis", mask=mask_path, order=1,
                               copy=2)) == 0
    assert state_equal(w[2], atomic.load_torch(tmp_path / "c2bis" / "model.pt")["state_dict"])
    assert sha256(tmp_path / "c2" / "metrics.csv") == sha256(tmp_path / "c2bis" / "metrics.csv")


def test_cli_ignores_stale_resume_file(data_root, dataset, tmp_path, capsys):
    hp = tiny_hparams(data_root)
    start = write_init(hp, tmp_path / "k0.pt")
    # a resume file left behind by a different run (another data order)
    stale_dir = tmp_path / "stale"
    run(hp, dataset, order=3, resume_path=stale_dir / "model.pt.resume", fingerprint="x")
    assert (stale_dir / "model.pt.resume").exists()
    capsys.readouterr()
    assert cli.main(train_argv(hp, start, stale_dir)) == 0
    assert "ignoring stale resume file" in capsys.readouterr().out
    assert not (stale_dir / "model.pt.resume").exists()
    assert cli.main(train_argv(hp, start, tmp_path / "clean")) == 0
    assert state_equal(atomic.load_torch(stale_dir / "model.pt")["state_dict"],
                       atomic.load_torch(tmp_path / "clean" / "model.pt")["state_dict"])
    assert sha256(stale_dir / "metrics.csv") == sha256(tmp_path / "clean" / "metrics.csv")


@pytest.mark.parametrize("micro", [0, 5], ids=["whole-batches", "micro-batches"])
def test_killed_run_resumes_bit_for_bit(data_root, tmp_path, micro):
    hp = tiny_hparams(data_root, steps=600, eval_steps=(0, 100, 400), checkpoint_every=20,
                      micro_batch=micro)
    start = write_init(hp, tmp_path / "k0.pt")
    mask_path = tmp_path / "mask.pt"
    masks.save(imp_mask(init(0), levels=1), str(mask_path), level=1)

    out = tmp_path / "killed"
    command = [sys.executable, "-m", "lmcpipe", *train_argv(hp, start, out, mask=mask_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    resume, model_file = out / "model.pt.resume", out / "model.pt"
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            # the resume file is written atomically, so it can be read while the run goes on
            if resume.exists() and atomic.load_torch(resume)["step"] >= 140:
                break
            time.sleep(0.005)
        assert proc.poll() is None, "run ended before it could be interrupted"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not model_file.exists()  # no half-written artifact under the final name
    assert not (out / "metrics.csv").exists()
    killed_at = atomic.load_torch(resume)["step"]
    assert 140 <= killed_at < hp.steps

    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    resumed_at = int(again.stdout.split("resumed at step ")[1].split()[0])
    assert killed_at <= resumed_at < hp.steps
    assert not resume.exists()

    ref = tmp_path / "uninterrupted"
    assert cli.main(train_argv(hp, start, ref, mask=mask_path)) == 0
    a, b = atomic.load_torch(model_file), atomic.load_torch(ref / "model.pt")
    assert a["step"] == b["step"] == hp.steps
    assert state_equal(a["state_dict"], b["state_dict"])
    assert (out / "metrics.csv").read_text() == (ref / "metrics.csv").read_text()
    assert pd.read_csv(out / "metrics.csv")["step"].tolist() == [0, 0, 100, 100, 400, 400,
                                                                 600, 600]
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "metrics.check.json", "metrics.csv", "model.pt", "model.run.json"]
    # the record counts the steps trained after the resume, and where it resumed
    record = provenance.read_record(model_file)
    assert (record["resumed_at"], record["steps"]) == (resumed_at, hp.steps - resumed_at)
    assert "train: step 600/600 (100%)" in again.stdout
    assert record["micro_batch"] == (micro or hp.batch_size)
    assert ("micro-batches of 5 examples (4 per step of 20)" in again.stdout) == bool(micro)


def test_train_cli_reinit_start(data_root, tmp_path):
    hp = tiny_hparams(data_root, steps=3, eval_steps=())
    argv = ["train", "--hparams", to_json(hp), "--seed", "4", "--reinit", "--start-step", "0",
            "--stop-step", "0", "--level", "2", "--order", "0", "--model-out",
            str(tmp_path / "m.pt"), "--device", "cpu"]
    assert cli.main(argv) == 0
    w = atomic.load_torch(tmp_path / "m.pt")["state_dict"]
    expected = models.build_initialised(MODEL, DATASET, "reinit", 4, 0, 2).state_dict()
    assert state_equal(w, expected)
    assert not state_equal(w, init(4).state_dict())
    assert not Path(tmp_path / "metrics.csv").exists()


# --- paper B's repellent / attractive loss -------------------------------------------------
def _cos2(model, ref, mask) -> float:
    names = model.prunable_names()
    a = torch.cat([model.get_parameter(n).detach().flatten() for n in names])
    b = torch.cat([(ref[n] * mask[n]).flatten() for n in names])
    return float((a @ b / (a.norm() * b.norm())) ** 2)


def test_repulsion_term_is_the_mean_squared_cosine(data_root):
    model = init(0)
    refs = [state(init(1)), state(init(2))]
    mask = imp_mask(model, levels=1)
    term = single.repulsion(2.0, model, refs, mask)
    with torch.no_grad():
        for n in mask:
            model.get_parameter(n).mul_(mask[n])
    expected = 2.0 * (_cos2(model, refs[0], mask) + _cos2(model, refs[1], mask)) / 2
    assert float(term()) == pytest.approx(expected, rel=1e-5)
    term().backward()  # differentiable in the weights
    assert model.get_parameter(model.prunable_names()[0]).grad.abs().sum() > 0


@pytest.mark.parametrize("lam, direction", [(50.0, "repel"), (-50.0, "attract")])
def test_repellent_and_attractive_loss_move_away_from_or_towards_the_reference(
        data_root, dataset, lam, direction):
    hp = tiny_hparams(data_root)
    ref = state(init(3))
    mask = imp_mask(init(0), levels=1)
    plain, _ = run(hp, dataset, mask=mask, references=[ref])  # repel_lambda 0: no term
    moved, _ = run(dataclasses.replace(hp, repel_lambda=lam), dataset, mask=mask,
                   references=[ref])
    net = init(0)
    net.load_state_dict(plain)
    c_plain = _cos2(net, ref, mask)
    net.load_state_dict(moved)
    c_moved = _cos2(net, ref, mask)
    assert (c_moved < c_plain) if direction == "repel" else (c_moved > c_plain)
    for n in mask:  # pruned weights stay zero under the extra term too
        assert torch.all(moved[n][~mask[n]] == 0)


def test_warmup_is_open_lths_min_one_t_over_w():
    """open_lth: LambdaLR with min(1, it / W), stepped after each optimiser step, so iteration
    t trains at lr · min(1, t / W): 0 at t = 0, the full lr at t = W."""
    hp = TrainHParams(model=MODEL, dataset=DATASET, data_root="data", optimizer="sgd", lr=0.4,
                      batch_size=10, steps=100, warmup_steps=8, milestones=(50,), gamma=0.1)
    assert hp.lr_at(0) == 0.0
    assert hp.lr_at(4) == pytest.approx(0.2)
    assert hp.lr_at(8) == pytest.approx(0.4)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=hp.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda it: min(1.0, it / 8) * 0.1 ** (it >= 50))
    for t in range(100):
        assert hp.lr_at(t) == pytest.approx(opt.param_groups[0]["lr"], abs=1e-15), t
        opt.step()
        sched.step()
