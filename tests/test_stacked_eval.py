"""Stacked evaluation and interpolation: k members of one grouped network evaluated together give
each member's own figures, the stacked interpolation route gives the loop's path, and both
routes' endpoints reproduce training's evaluation (``eval_rows``) in fp32 and in bf16.

Tolerances, measured on the CPU: a member's loss from the grouped network is within 1.3e-7 of
its own evaluation (fp32 and bf16 autocast; stated: relative 1e-6; bf16 on a CPU with native
bf16 kernels: 1e-4, see BF16_STACKED_RTOL) and its error count is the
same. Every comparison is per member or per alpha, and the members' or points' losses are
checked to differ by far more than the tolerance first, so a mix-up of members would fail.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from lmcpipe import data, evaluate, interpolate, memory, models
from lmcpipe.hparams import InterpHParams, TrainHParams
from lmcpipe.training import grouped, single
from tests.helpers import tiny_hparams

LOSS_RTOL = 1e-6  # stacked against one-by-one, fp32 and bf16 autocast on the CPU
# bf16 with the BatchNorm statistics recomputed: the grouped BatchNorm's cumulative average
# (fp32 lerp) and nn.BatchNorm2d's kernel differ by ~1e-6 in the statistics, which the bf16
# activations of the evaluation round differently (measured 3.3e-4)
BF16_RECOMPUTE_RTOL = 1e-3
# bf16 on a CPU with native bf16 kernels (AMX, avx512_bf16): the grouped network's LeNet layers
# and the plain ones take different bf16 kernels, whose sums round differently (measured
# 2.2e-5 on an Intel Xeon with amx_bf16; 1.3e-7 on CPUs that emulate bf16)
BF16_STACKED_RTOL = 1e-4
LENET, RESNET = ("lenet_300_100", "fashion_mnist"), ("resnet20", "cifar10")


def distinct(values: list[float], rtol: float = LOSS_RTOL) -> None:
    """The values differ pairwise by more than twice the tolerance, so comparing them within the
    tolerance tells them apart: a mix-up of two fails."""
    ordered = sorted(values)
    gap = min(b - a for a, b in zip(ordered, ordered[1:], strict=False))
    assert gap > 2 * rtol * max(abs(v) for v in values), values


def distinct_points(frame, rtol: float) -> None:
    """The path's points differ pairwise by more than twice the tolerance in the loss of at
    least one split, so comparing them within the tolerance tells them apart: a mix-up of two
    points swaps both splits' figures and fails. (Two points of random networks can share one
    split's loss to 2e-3 on some CPUs, and never both.)"""
    losses = frame.pivot(index="alpha", columns="split", values="loss").to_numpy()
    scale = abs(losses).max(axis=0)
    for i in range(len(losses)):
        for j in range(i):
            assert (abs(losses[i] - losses[j]) > 2 * rtol * scale).any(), (i, j, losses)


def close(stacked: tuple[float, float], alone: tuple[float, float],
          rtol: float = LOSS_RTOL) -> None:
    assert stacked[1] == alone[1]  # the same examples misclassified
    assert stacked[0] == pytest.approx(alone[0], rel=rtol)


@pytest.fixture(scope="module")
def small_cifar() -> data.Data:
    """CIFAR-shaped random images at 16 px (ResNet-20 pools globally; 16 px is 4x cheaper)."""
    gen = torch.Generator().manual_seed(5)
    return data.Data(train_x=torch.randn(40, 3, 16, 16, generator=gen),
                     train_y=torch.randint(0, 10, (40,), generator=gen),
                     test_x=torch.randn(24, 3, 16, 16, generator=gen),
                     test_y=torch.randint(0, 10, (24,), generator=gen))


def resnet_state(seed: int) -> dict[str, torch.Tensor]:
    """A ResNet-20 initialisation with random BatchNorm statistics and affine parameters, so
    blending or recomputing the statistics changes every point's figures."""
    state = models.build_initialised(*RESNET, seed).state_dict()
    gen = torch.Generator().manual_seed(100 + seed)
    for key, t in state.items():
        if key.endswith(("running_mean", "bias")):
            state[key] = 0.2 * torch.randn(t.shape, generator=gen)
        elif key.endswith(("running_var", "weight")) and t.dim() == 1:  # BatchNorm's, not convs'
            state[key] = 0.5 + torch.rand(t.shape, generator=gen)
    return state


@pytest.fixture(scope="module")
def lenet_pair(data_root, dataset):
    """Two LeNet copies trained 30 steps from one init with streams (0, 1) and (0, 2)."""
    hp = tiny_hparams(data_root, eval_train_examples=100)
    states = []
    for copy in (1, 2):
        model = models.build_initialised(*LENET, 0)
        single.train(hp, model, dataset, order=0, copy=copy, record=False)
        states.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    return hp, states


def grouped_of(name: str, dataset_name: str, states: list[dict[str, torch.Tensor]]):
    net = grouped.group(models.build(name, dataset_name), len(states))
    net.load_state_dict({k: torch.stack([s[k] for s in states]) for k in states[0]})
    return net


def alone(name: str, dataset_name: str, state: dict[str, torch.Tensor]):
    model = models.build(name, dataset_name)
    model.load_state_dict(state)
    return model


def test_blend_all_is_blend_at_every_alpha():
    a, b = resnet_state(0), resnet_state(1)
    alphas = torch.linspace(0, 1, 7)
    stacked = interpolate.blend_all(a, b, alphas)
    for j, alpha in enumerate(alphas.tolist()):
        one = interpolate.blend(a, b, alpha)
        assert all(torch.equal(stacked[k][j], one[k]) for k in a), alpha  # bit for bit
    assert stacked["bn.num_batches_tracked"].shape == (7,)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("arch", ["lenet", "resnet20"])
def test_members_evaluated_together_equal_each_alone(arch, precision, dataset, small_cifar):
    name, ds = LENET if arch == "lenet" else RESNET
    d = dataset if arch == "lenet" else small_cifar
    states = ([models.build_initialised(*LENET, s).state_dict() for s in range(3)]
              if arch == "lenet" else [resnet_state(s) for s in range(3)])
    net = grouped_of(name, ds, states)
    x, y = d.test_x, d.test_y
    with torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16"):
        together = evaluate.evaluate_members(net, 3, x, y, batch=7, prepare=d.prepare)
        each = [evaluate.evaluate(alone(name, ds, s), x, y, 7, d.prepare) for s in states]
    distinct([loss for loss, _ in each])
    for t, e in zip(together, each, strict=True):
        close(t, e)
    assert net.training  # handed back in the mode it came in


def test_member_splits_are_per_member_dicts(dataset):
    states = [models.build_initialised(*LENET, s).state_dict() for s in range(2)]
    figures = evaluate.evaluate_members_splits(grouped_of(*LENET, states), 2, dataset, 100, 64)
    for state, member in zip(states, figures, strict=True):
        own = evaluate.evaluate_splits(alone(*LENET, state), dataset, 100, 64)
        assert member.keys() == own.keys() == {"train", "test"}
        for split in own:
            close(member[split], own[split])


def path(model_name, a, b, d, hp, ip, stacked):
    return interpolate.interpolate(models.build(model_name, hp.dataset), a, b, d, hp, ip,
                                   stacked=stacked)


@pytest.mark.parametrize("arch,bn_mode,precision", [
    ("lenet", "interpolate", "fp32"), ("resnet20", "interpolate", "fp32"),
    ("resnet20", "recompute", "fp32"), ("resnet20", "recompute", "bf16")])
def test_stacked_path_equals_the_loop(arch, bn_mode, precision, lenet_pair, dataset,
                                      small_cifar):
    if arch == "lenet":
        hp, (a, b) = lenet_pair
        d, alphas = dataset, 7
    else:
        hp = TrainHParams(model="resnet20", dataset="cifar10", data_root="", lr=0.1, steps=1,
                          optimizer="sgd", batch_size=8, precision=precision)
        a, b, d, alphas = resnet_state(0), resnet_state(1), small_cifar, 5
    ip = InterpHParams(alphas=alphas, bn_mode=bn_mode, bn_batches=2)
    loop, stacked = (path(hp.model, a, b, d, hp, ip, s) for s in (False, True))
    assert stacked[["alpha", "split"]].equals(loop[["alpha", "split"]])
    rtol = BF16_RECOMPUTE_RTOL if precision == "bf16" else LOSS_RTOL
    distinct_points(loop, rtol)
    assert (stacked["error"] == loop["error"]).all()
    assert stacked["loss"].to_numpy() == pytest.approx(loop["loss"].to_numpy(), rel=rtol)


def test_points_in_several_groups_equal_the_loop(small_cifar, monkeypatch):
    """Where a GPU holds fewer members than points (``evaluate.members_per_pass``), the points
    run in groups (here 2, 2 and 1 of 5) and the path is still the loop's, point for point."""
    hp = TrainHParams(model="resnet20", dataset="cifar10", data_root="", lr=0.1, steps=1,
                      optimizer="sgd", batch_size=8)
    ip = InterpHParams(alphas=5, bn_mode="recompute", bn_batches=2)
    a, b = resnet_state(0), resnet_state(1)
    loop = path(hp.model, a, b, small_cifar, hp, ip, False)
    monkeypatch.setattr(interpolate, "members_per_pass", lambda *args: 2)
    groups = path(hp.model, a, b, small_cifar, hp, ip, True)
    assert groups[["alpha", "split"]].equals(loop[["alpha", "split"]])
    assert (groups["error"] == loop["error"]).all()
    assert groups["loss"].to_numpy() == pytest.approx(loop["loss"].to_numpy(), rel=LOSS_RTOL)


def test_recomputed_statistics_are_each_points_own(small_cifar):
    """The BatchNorm recompute of a grouped network gives every member the statistics the
    plain network computes for that point alone."""
    a, b = resnet_state(0), resnet_state(1)
    alphas = torch.linspace(0, 1, 3)
    net = grouped.group(models.build(*RESNET), 3)
    net.load_state_dict(interpolate.blend_all(a, b, alphas))
    interpolate.recompute_bn(net, small_cifar.train_x, 8, 3)
    together = net.state_dict()
    for j, alpha in enumerate(alphas.tolist()):
        model = alone(*RESNET, interpolate.blend(a, b, alpha))
        interpolate.recompute_bn(model, small_cifar.train_x, 8, 3)
        for key, t in model.state_dict().items():
            if "running" in key or "num_batches" in key:
                torch.testing.assert_close(together[key][j], t, rtol=1e-5, atol=1e-6)
    # the points' statistics differ (a member mix-up would show)
    assert not torch.allclose(together["bn.running_mean"][0], together["bn.running_mean"][2],
                              rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("stacked", [False, True])
def test_endpoints_reproduce_training_evaluation(stacked, precision, lenet_pair, dataset):
    """alpha = 0 is copy 2 and alpha = 1 copy 1, with the figures ``eval_rows`` records for
    them: exactly on the loop (the same function, chunks and autocast), within the tolerance on
    the stacked route. In bf16 this fails without autocast in interpolation (the fp32 figures
    differ from the recorded bf16 ones)."""
    hp, (a, b) = lenet_pair
    hp = dataclasses.replace(hp, precision=precision)
    ip = InterpHParams(alphas=4)
    got = path(hp.model, a, b, dataset, hp, ip, stacked)
    rtol = BF16_STACKED_RTOL if precision == "bf16" else LOSS_RTOL
    for alpha, state in ((0.0, b), (1.0, a)):
        rows = {r["split"]: r for r in single.eval_rows(alone(*LENET, state), dataset, hp, 30)}
        at = got[got.alpha == alpha].set_index("split")
        for split, row in rows.items():
            if stacked:
                close((at.loc[split, "loss"], at.loc[split, "error"]), (row["loss"], row["error"]),
                      rtol)
            else:
                assert (at.loc[split, "loss"], at.loc[split, "error"]) == (row["loss"],
                                                                           row["error"])
    # the two endpoints are different networks with different figures
    assert got[got.alpha == 0.0]["loss"].tolist() != got[got.alpha == 1.0]["loss"].tolist()


def test_inception_is_not_grouped_and_takes_the_loop():
    with torch.device("meta"):  # structure only
        model = models.build("inceptionv3", "imagenet")
    assert not grouped.groupable(model)
    assert not interpolate.default_stacked(model, torch.device("cuda"))
    assert grouped.groupable(models.build(*LENET))
    assert not interpolate.default_stacked(models.build(*LENET), torch.device("cpu"))


def test_member_chunks_shrink_with_the_members(dataset, monkeypatch):
    hp = TrainHParams(model="resnet50", dataset="imagenet", data_root="", lr=0.1, steps=1,
                      image_size=224, batch_size=1024, optimizer="sgd", momentum=0.9)
    assert evaluate.member_batch(hp, dataset, 1) == memory.eval_batch(hp, dataset) == 5000
    assert evaluate.member_batch(hp, dataset, 30) == 5000 // 30  # the CPU: 5000 / k
    assert evaluate.members_per_pass(hp, dataset, 30, 1024) == 30
    monkeypatch.setattr(memory, "device_bytes", lambda device: 24 * memory.GiB)  # a 24 GB GPU
    solo = memory.eval_batch(hp, dataset)
    assert evaluate.member_batch(hp, dataset, 1) == solo < 5000
    chunks = [evaluate.member_batch(hp, dataset, k) for k in (1, 2, 4, 8)]
    assert chunks == sorted(chunks, reverse=True) and chunks[-1] >= 1
    assert chunks[-1] <= solo // 8 + 1  # k members' activations: about 1/k of the examples
    # weights only (interpolation) leaves more room than weights + gradients + momentum
    assert evaluate.member_batch(hp, dataset, 8, False) >= chunks[-1]
    fit = evaluate.members_per_pass(hp, dataset, 30, 1024)  # BN recompute: whole batches
    assert 1 <= fit < 30
    assert evaluate.members_per_pass(hp, dataset, 30, 1) == 30
