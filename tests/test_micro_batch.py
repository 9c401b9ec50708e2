"""Micro-batches (``train.micro_batch``, ``train.accumulate``): a batch split into micro-batches
gives the whole batch's gradient, BatchNorm normalises (and updates its running statistics) per
micro-batch, a run that sets them records them, and a cohort trains such runs alone. A killed
micro-batched run resumes bit for bit: ``tests/test_train.py::test_killed_run_resumes_bit_for_bit``
runs with and without micro-batches.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from lmcpipe import models
from lmcpipe.training import cohort, single, streams
from tests.helpers import tiny_hparams

# float32 sums in another order: |grad_micro - grad_whole| <= GRAD_TOL x max |grad_whole| in
# every tensor (measured on LeNet at batch 60: at most 3.3e-7, micro-batches of 30 down to 1).
GRAD_TOL = 1e-6


def lenet() -> models.PrunableModel:
    return models.build_initialised("lenet_300_100", "fashion_mnist", 0)


def first_batch(dataset, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    idx = streams.batch_indices(len(dataset.train_x), size, 0, 1, 0)
    return dataset.train_x[idx], dataset.train_y[idx]


def test_accumulated_micro_batches_give_the_whole_batch_gradient(data_root, dataset):
    hp = tiny_hparams(data_root, batch_size=60)
    xb, yb = first_batch(dataset, 60)
    whole = lenet()
    loss = whole.training_loss(xb, yb)
    loss.backward()
    loss = loss.detach()
    for micro in (30, 15, 5, 1, 7):  # 7 does not divide 60: an epoch's short last batch
        split = lenet()
        total = single.accumulate(split, xb, yb, micro, hp)
        assert float(total) == pytest.approx(float(loss), rel=1e-6)
        for (name, a), b in zip(whole.named_parameters(), split.parameters(), strict=True):
            assert a.grad.abs().max() > 0
            assert (a.grad - b.grad).abs().max() <= GRAD_TOL * a.grad.abs().max(), (micro, name)


def test_paper_b_term_is_added_once_per_step(data_root, dataset):
    """The repellent term depends on the weights only: counted once, not per micro-batch."""
    hp = tiny_hparams(data_root, batch_size=60, repel_lambda=50.0)
    xb, yb = first_batch(dataset, 60)
    reference = [models.build_initialised("lenet_300_100", "fashion_mnist", 3).state_dict()]
    whole, split = lenet(), lenet()
    loss = whole.training_loss(xb, yb) + single.repulsion(50.0, whole, reference, None)()
    loss.backward()
    total = single.accumulate(split, xb, yb, 15, hp, single.repulsion(50.0, split, reference, None))
    assert float(total) == pytest.approx(float(loss.detach()), rel=1e-6)
    for a, b in zip(whole.parameters(), split.parameters(), strict=True):
        assert (a.grad - b.grad).abs().max() <= GRAD_TOL * a.grad.abs().max()


def test_one_step_in_micro_batches_is_the_whole_batch_step(data_root, dataset, capsys):
    hp = tiny_hparams(data_root, optimizer="sgd", lr=0.1, momentum=0.9, batch_size=60,
                      steps=1, eval_steps=())
    whole, split = lenet(), lenet()
    start = {k: v.clone() for k, v in whole.state_dict().items()}
    stats: dict = {}
    single.train(hp, whole, dataset, order=0, copy=1, record=False)
    assert "micro-batches" not in capsys.readouterr().out
    single.train(dataclasses.replace(hp, micro_batch=15), split, dataset, order=0, copy=1,
                record=False, stats=stats)
    assert capsys.readouterr().out.splitlines()[0] == (
        "micro-batches of 15 examples (4 per step of 60): train.micro_batch")
    assert stats["micro_batch"] == 15
    for name, a in whole.state_dict().items():  # the gradients' difference, and weight rounding
        b, moved = split.state_dict()[name], (a - start[name]).abs().max()
        ulp = torch.finfo(a.dtype).eps * a.abs().max()
        assert moved > 0 and (a - b).abs().max() <= GRAD_TOL * moved + ulp, name


def test_batchnorm_statistics_come_from_each_micro_batch(data_root):
    """ResNet-20's first BatchNorm: one running-statistics update per micro-batch, with that
    micro-batch's channel means (momentum 0.1)."""
    torch.manual_seed(0)
    hp = tiny_hparams(data_root, model="resnet20", dataset="cifar10", batch_size=16)
    net = models.build_initialised("resnet20", "cifar10", 0)
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    expected = net.bn.running_mean.clone()
    with torch.no_grad():
        for xm in x.split(4):
            expected = 0.9 * expected + 0.1 * net.conv(xm).mean(dim=(0, 2, 3))
    single.accumulate(net, x, y, 4, hp)
    assert int(net.bn.num_batches_tracked) == 4
    torch.testing.assert_close(net.bn.running_mean, expected, rtol=1e-5, atol=1e-6)
    whole = models.build_initialised("resnet20", "cifar10", 0)
    whole.training_loss(x, y)
    assert int(whole.bn.num_batches_tracked) == 1
    assert not torch.allclose(whole.bn.running_mean, expected, rtol=1e-3)


@pytest.mark.parametrize(("micro", "stacked_with", "recorded"), [(0, 2, 20), (5, 1, 5)])
def test_a_cohort_trains_micro_batched_runs_alone(data_root, dataset, tmp_path: Path, micro,
                                                  stacked_with, recorded):
    hp = tiny_hparams(data_root, steps=4, eval_steps=(), micro_batch=micro)
    members = [cohort.Member(order=o, copy=1, model_out=str(tmp_path / f"o{o}" / "model.pt"),
                             metrics_out=str(tmp_path / f"o{o}" / "metrics.csv"))
               for o in (0, 1)]
    for m in members:
        Path(m.model_out).parent.mkdir()
    stats: list[dict] = []
    cohort.train_cohort(hp, 0, 0, 0, members, dataset, stack=2, stats=stats)
    assert [(s["stacked_with"], s["micro_batch"]) for s in stats] == [(stacked_with, recorded)] * 2
