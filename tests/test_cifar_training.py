"""CIFAR networks through the real loaders and training loop: augmentation, resume, BN modes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from lmcpipe import data, models, optim
from lmcpipe.data.testing import write_cifar
from lmcpipe.hparams import TrainHParams
from lmcpipe.interpolate import blend, recompute_bn
from lmcpipe.training.single import train


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(96, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 10, size=96)
    write_cifar(root / "cifar10" / "cifar-10-batches-py", images, labels, 10, (64, 32))
    return root


@pytest.fixture(scope="module")
def cifar(cifar_root) -> data.Data:
    return data.load("cifar10", cifar_root)


def hparams(root, **changes) -> TrainHParams:
    hp = TrainHParams(model="resnet20", dataset="cifar10", data_root=str(root), optimizer="sgd",
                      lr=0.05, momentum=0.9, weight_decay=1e-4, batch_size=16, steps=6,
                      checkpoint_every=2)
    return dataclasses.replace(hp, **changes)


def trained(hp, dataset, copy=1, **kwargs):
    model = models.build_initialised(hp.model, hp.dataset, 0)
    train(hp, model, dataset, order=0, copy=copy, record=False, **kwargs)
    return {k: v.clone() for k, v in model.state_dict().items()}


def same(a, b) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_cifar_is_loaded_normalised_per_channel_with_black_fill(cifar):
    assert cifar.train_x.shape == (64, 3, 32, 32) and cifar.train_x.dtype == torch.float32
    assert torch.allclose(cifar.train_x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert cifar.fill.shape == (3,)
    assert torch.allclose(cifar.fill, -cifar.mean / cifar.std)


def test_augmented_training_is_reproducible_and_copies_differ(cifar_root, cifar):
    hp = hparams(cifar_root)
    assert same(trained(hp, cifar, copy=1), trained(hp, cifar, copy=1))
    assert not same(trained(hp, cifar, copy=1), trained(hp, cifar, copy=2))


def test_augmented_run_interrupted_resumes_bit_for_bit(cifar_root, cifar, tmp_path, monkeypatch):
    hp = hparams(cifar_root)
    full = trained(hp, cifar)
    resume = tmp_path / "run.resume"
    calls = {"n": 0}
    real_step = optim.SGD.step

    def failing_step(self, lr, grads=None):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt("simulated kill after step 4")
        real_step(self, lr, grads)

    monkeypatch.setattr(optim.SGD, "step", failing_step)
    with pytest.raises(KeyboardInterrupt):
        trained(hp, cifar, resume_path=resume, fingerprint="f")
    monkeypatch.setattr(optim.SGD, "step", real_step)
    assert resume.exists()
    assert same(full, trained(hp, cifar, resume_path=resume, fingerprint="f"))


def test_bf16_channels_last_training_runs(cifar_root, cifar):
    hp = hparams(cifar_root, precision="bf16", channels_last=True, steps=2)
    state = trained(hp, cifar)
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_bn_recompute_changes_running_stats_and_interpolate_does_not(cifar_root, cifar):
    a = trained(hparams(cifar_root), cifar, copy=1)
    b = trained(hparams(cifar_root), cifar, copy=2)
    mid = blend(a, b, 0.5)
    model = models.build("resnet20", "cifar10")
    model.load_state_dict(mid)  # interpolate mode: the blended running statistics as they are
    keys = [k for k in mid if k.endswith(("running_mean", "running_var"))]
    assert keys and all(torch.equal(model.state_dict()[k], mid[k]) for k in keys)
    weights_before = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k
                      and "num_batches" not in k}
    recompute_bn(model, cifar.train_x, batch_size=16, batches=2, prepare=cifar.prepare)
    after = model.state_dict()
    assert all(not torch.equal(after[k], mid[k]) for k in keys)
    assert all(torch.equal(after[k], v) for k, v in weights_before.items())
    # recomputed statistics are the cumulative average over the batches: rerun gives the same
    again = models.build("resnet20", "cifar10")
    again.load_state_dict(mid)
    recompute_bn(again, cifar.train_x, batch_size=16, batches=2, prepare=cifar.prepare)
    assert all(torch.equal(again.state_dict()[k], after[k]) for k in keys)
