"""The grouped route (``lmcpipe.training.grouped``): k members of one architecture as one network.

Each member of ``group(template, k)`` is checked against its own network (the template loaded
with that member's state, fed that member's batch): logits, loss, gradients of the (k, ...)
parameters and BatchNorm running statistics, for k = 1 and 3, train and eval mode, members with
different weights, BatchNorm statistics and inputs; and with one input shared by all members.
Every comparison also checks that member j is far from member j+1's network, so a mix-up of
members would fail it.

Tolerances (measured on the development CPU: worst case in brackets):

* float64, everything: 1e-10 of the largest value, per tensor (6e-14). This pins what is
  computed: a member mix-up or a misplaced channel is off by O(1).
* float32 logits, losses, running statistics: 1e-5 of the largest value (3e-6, VGG-16).
* float32 gradients, per tensor, ``‖g_grouped − g_solo‖ / ‖g_solo‖`` (a tensor below 1e-3 of
  the member's largest gradient norm, e.g. a conv bias before a train-mode BatchNorm, whose
  exact gradient is 0, is measured against that floor instead): LeNet 1e-5 (1e-7), the small
  test network 3e-4 (3e-5), the conv networks 5e-2 (ResNet-20 1.3e-2; VGG-16 5e-5; ResNet-50
  2e-6). The conv networks' bound is the conditioning of the problem, not the grouped
  kernels: two fp32 computations that round differently flip the odd ReLU whose input lies
  within ~1e-7 of 0, and in train mode BatchNorm spreads that one position's change over its
  channel and every layer below. The solo network is as far from its own float64 gradient
  (counted: 1 to 14 ReLU sign flips against float64 in ResNet-20 at batch 16, by kernel), and
  nudging the input by 1e-7 moves ResNet-20's float64 gradient by 2e-3.
* bf16 autocast: logits within 3e-2 of the largest (0: the grouped convolution gives each
  group the solo network's bits).
"""

from __future__ import annotations

import copy
from functools import cache

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import vmap

from lmcpipe import interpolate, models
from lmcpipe.models.base import PrunableModel
from lmcpipe.models.imagenet import ResNet50
from lmcpipe.training import grouped, stacked

OUT_TOL = 1e-5
GRAD_TOL = {"lenet": 1e-5, "odd": 3e-4, "odd1": 3e-4,
            "resnet20": 5e-2, "vgg16": 5e-2, "resnet50": 5e-2}
F64_TOL = 1e-10
CPU = torch.device("cpu")


class Odd(PrunableModel):
    """A small network with every option the grouped layers must honour: a strided, padded,
    dilated conv with a bias (in ``groups`` groups), BatchNorm with momentum 0.3, a conv without
    bias, BatchNorm without affine parameters or running statistics, pools, ``nn.Flatten`` and
    a Linear without bias."""

    groupable = True

    def __init__(self, groups: int = 2) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(4, 6, 3, stride=2, padding=2, dilation=2, groups=groups)
        self.bn1 = nn.BatchNorm2d(6, momentum=0.3)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8, affine=False, track_running_stats=False)
        self.head = nn.Sequential(nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                                  nn.Linear(32, 12, bias=False), nn.ReLU(), nn.Linear(12, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        return self.head(torch.relu(self.bn2(self.conv2(x))))


NETS = {  # builder, input shape, batch per member
    "lenet": (lambda: models.build("lenet_300_100", "mnist"), (1, 28, 28), 16),
    "resnet20": (lambda: models.build("resnet20", "cifar10"), (3, 32, 32), 8),
    "vgg16": (lambda: models.build("vgg16", "cifar10"), (3, 32, 32), 4),
    # tested in eval mode only: in train mode at 32 px its last BatchNorm normalises 2 values
    # per channel, and float32 rounding alone moves a solo network's logits by 50 %
    "resnet50": (lambda: ResNet50((3, 32, 32), 10), (3, 32, 32), 2),
    "odd": (Odd, (4, 12, 12), 6),
    "odd1": (lambda: Odd(groups=1), (4, 12, 12), 6),  # a shared input is read without a copy
}


@cache
def template(net: str) -> nn.Module:
    """The network, built once per test session (seeded): ResNet-50 and VGG-16 take a while."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return NETS[net][0]()


def fresh(net: str) -> nn.Module:
    return copy.deepcopy(template(net))


@cache
def member_states(net: str, k: int) -> tuple[dict[str, torch.Tensor], ...]:
    """k different members: the template's weights each moved by seeded noise of half their
    spread, and BatchNorm running statistics and batch counts that differ per member (as
    trained members' do), so eval mode tells them apart."""
    states = []
    for j in range(k):
        gen = torch.Generator().manual_seed(100 + j)
        state = {}
        for n, t in template(net).state_dict().items():
            if n.endswith("running_mean"):
                t = 0.1 * torch.randn(t.shape, generator=gen)
            elif n.endswith("running_var"):
                t = torch.empty_like(t).uniform_(0.5, 2, generator=gen)
            elif n.endswith("num_batches_tracked"):
                t = torch.tensor(10 * j + 1)
            else:  # BatchNorm's weight starts at 1 and its bias at 0: spread them as training does
                spread = float(t.std()) if t.numel() > 1 and float(t.std()) > 0 else 0.1
                t = t + 0.5 * spread * torch.randn(t.shape, generator=gen)
            state[n] = t
        states.append(state)
    return tuple(states)


def batch(net: str, k: int, shared: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Members' batches as the streams deliver them, (B*k, C, H, W) b-major (member j's b-th
    example at row b*k + j), or one shared (B, C, H, W); labels (B, k)."""
    _, shape, b = NETS[net]
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(b if shared else b * k, *shape, generator=gen)
    return x, torch.randint(0, 5, (b, k), generator=gen)


def member_input(x: torch.Tensor, k: int, j: int, shared: bool) -> torch.Tensor:
    return x if shared else x.view(-1, k, *x.shape[1:])[:, j]


def run_grouped(net: str, k: int, train: bool, x: torch.Tensor, y: torch.Tensor,
                shared: bool = False, dtype: torch.dtype = torch.float32) -> dict:
    model = grouped.group(template(net), k).to(dtype).train(train)
    model.load_state_dict(stacked.stack_states(list(member_states(net, k)), CPU))
    xin = x.to(dtype) if shared else x.to(dtype).view(x.shape[0] // k, -1, *x.shape[2:])
    logits = model(xin)
    losses = grouped.member_losses(logits, y)
    losses.sum().backward()
    return {"logits": grouped.split_logits(logits.detach(), k), "losses": losses.detach(),
            "grads": {n: p.grad for n, p in model.named_parameters()},
            "buffers": dict(model.named_buffers())}


def run_solo(net: str, k: int, j: int, train: bool, x: torch.Tensor, y: torch.Tensor,
             shared: bool = False, dtype: torch.dtype = torch.float32) -> dict:
    model = fresh(net).to(dtype).train(train)
    model.load_state_dict(member_states(net, k)[j])
    logits = model(member_input(x, k, j, shared).to(dtype))
    loss = F.cross_entropy(logits, y[:, j])
    loss.backward()
    return {"logits": logits.detach(), "loss": loss.detach(),
            "grads": {n: p.grad for n, p in model.named_parameters()},
            "buffers": dict(model.named_buffers())}


def grad_error(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> float:
    """The largest per-tensor relative error (module docstring: the floor for ~0 gradients)."""
    floor = 1e-3 * max(g.norm() for g in want.values())
    return max(float((got[n] - g).norm() / max(g.norm(), floor)) for n, g in want.items())


def out_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).abs().max() / want.abs().max())


def check_members(net: str, k: int, train: bool, shared: bool = False,
                  dtype: torch.dtype = torch.float32) -> None:
    out_tol, grad_tol = (F64_TOL, F64_TOL) if dtype == torch.float64 else (OUT_TOL, GRAD_TOL[net])
    x, y = batch(net, k, shared)
    g = run_grouped(net, k, train, x, y, shared, dtype)
    solos = [run_solo(net, k, j, train, x, y, shared, dtype) for j in range(k)]
    for j, solo in enumerate(solos):
        assert out_error(g["logits"][:, j], solo["logits"]) < out_tol
        assert abs(float(g["losses"][j] - solo["loss"])) < out_tol * float(solo["loss"])
        assert grad_error({n: t[j] for n, t in g["grads"].items()}, solo["grads"]) < grad_tol
        for n, t in solo["buffers"].items():
            if t.is_floating_point():
                assert out_error(g["buffers"][n][j], t) < out_tol, n
            else:  # num_batches_tracked: the member's own count, +1 in train mode
                assert torch.equal(g["buffers"][n][j], t), n
        if k > 1:  # the check would see member j matched with its neighbour's network
            other = solos[(j + 1) % k]
            assert out_error(g["logits"][:, j], other["logits"]) > 100 * out_tol
            assert grad_error({n: t[j] for n, t in g["grads"].items()},
                              other["grads"]) > 10 * grad_tol


DTYPES = {"fp32": torch.float32, "fp64": torch.float64}
MEMBER_CASES = [  # network, k, train mode; float64 too where it is cheap
    ("lenet", 1, True), ("lenet", 3, True),
    ("odd", 1, True), ("odd", 1, False), ("odd", 3, True), ("odd", 3, False),
    ("resnet20", 1, True), ("resnet20", 1, False), ("resnet20", 3, True), ("resnet20", 3, False),
]


@pytest.mark.parametrize(("net", "k", "train", "dtype"), [
    *[(*case, "fp32") for case in MEMBER_CASES], *[(*case, "fp64") for case in MEMBER_CASES],
    ("vgg16", 3, True, "fp32"), ("vgg16", 1, False, "fp32"), ("resnet50", 2, False, "fp32"),
])
def test_members_equal_their_own_networks(net, k, train, dtype):
    check_members(net, k, train, dtype=DTYPES[dtype])


@pytest.mark.parametrize("dtype", ["fp32", "fp64"])
@pytest.mark.parametrize(("net", "train"), [
    ("lenet", True), ("odd", True), ("odd", False), ("odd1", True), ("resnet20", True),
    ("resnet20", False)])
def test_a_shared_input_gives_each_member_its_own_networks_output(net, train, dtype):
    """Evaluation and interpolation feed every member the same images, (B, C, H, W)."""
    check_members(net, 3, train, shared=True, dtype=DTYPES[dtype])


def test_bf16_autocast_and_channels_last():
    """Under bf16 autocast the grouped members follow their own autocast networks; a
    channels-last input gives the contiguous input's results and stays channels-last."""
    k, (x, y) = 3, batch("resnet20", 3)
    with torch.autocast("cpu", torch.bfloat16):
        g = run_grouped("resnet20", k, True, x, y)
        solos = [run_solo("resnet20", k, j, True, x, y) for j in range(k)]
    for j, solo in enumerate(solos):
        assert out_error(g["logits"][:, j].float(), solo["logits"].float()) < 3e-2
        assert out_error(g["logits"][:, j].float(), solos[(j + 1) % k]["logits"].float()) > 0.3

    model = grouped.group(template("resnet20"), k)
    model.load_state_dict(stacked.stack_states(list(member_states("resnet20", k)), CPU))
    xin = x.view(8, 3 * k, 32, 32)
    last = xin.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        assert model.bn(model.conv(last)).is_contiguous(memory_format=torch.channels_last)
        assert out_error(model(last), model(xin)) < OUT_TOL


def test_the_vmap_route_agrees():
    """``training.stacked``'s vmap route (``_Loss`` under ``vmap``) and the grouped route give
    the same losses, gradients and running statistics."""
    k, (x, y) = 3, batch("resnet20", 3)
    g = run_grouped("resnet20", k, True, x, y)
    net = fresh("resnet20").train()
    states = stacked.stack_states(list(member_states("resnet20", k)), CPU)
    names = [n for n, _ in net.named_parameters()]
    params = {n: states[n].clone().requires_grad_() for n in names}
    buffers = {n: states[n].clone() for n, _ in net.named_buffers()}
    loss_module = stacked._Loss(net)

    def member_loss(p, b, xm, ym):
        state = {f"net.{n}": t for n, t in {**p, **b}.items()}
        return torch.func.functional_call(loss_module, state, (xm, ym))

    xs = x.view(8, k, 3, 32, 32).transpose(0, 1)
    losses = vmap(member_loss, randomness="different")(params, buffers, xs, y.t())
    losses.sum().backward()
    assert out_error(g["losses"], losses.detach()) < OUT_TOL
    for j in range(k):
        assert grad_error({n: t[j] for n, t in g["grads"].items()},
                          {n: params[n].grad[j] for n in names}) < GRAD_TOL["resnet20"]
    for n, t in buffers.items():
        assert torch.equal(g["buffers"][n], t) if not t.is_floating_point() else (
            out_error(g["buffers"][n], t) < OUT_TOL)


def test_state_dict_is_the_templates_with_a_member_dimension():
    net, k = fresh("resnet20"), 3
    model = grouped.group(net, k)
    solo = net.state_dict()
    assert list(model.state_dict()) == list(solo)
    for n, t in model.state_dict().items():
        assert t.shape == (k, *solo[n].shape) and t.dtype == solo[n].dtype, n
    assert model.bn.num_batches_tracked.shape == (k,)
    assert [n for n, _ in model.named_parameters()] == [n for n, _ in net.named_parameters()]
    assert model.prunable_names() == net.prunable_names()  # conv/linear found by type
    states = member_states("resnet20", k)
    model.load_state_dict(stacked.stack_states(list(states), CPU))  # strict
    for j in range(k):
        back = stacked.member_state(model.state_dict(), j)
        assert all(torch.equal(back[n], states[j][n]) for n in solo)
    # group() starts every member as the template
    start = grouped.group(net, 2).state_dict()
    assert all(torch.equal(start[n][1], t) for n, t in solo.items())


def test_recompute_bn_averages_each_member_over_the_shared_batches():
    """Interpolation's BatchNorm recompute (``momentum = None``, ``reset_running_stats``) on a
    grouped network gives each member the cumulative average its own network gets."""
    k = 3
    x = torch.randn(12, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    model = grouped.group(template("resnet20"), k)
    model.load_state_dict(stacked.stack_states(list(member_states("resnet20", k)), CPU))
    interpolate.recompute_bn(model, x, batch_size=4, batches=3)
    assert model.bn.momentum == 0.1 and model.training  # both as they were
    for j in range(k):
        solo = fresh("resnet20")
        solo.load_state_dict(member_states("resnet20", k)[j])
        interpolate.recompute_bn(solo, x, batch_size=4, batches=3)
        for n, t in solo.named_buffers():
            assert (torch.equal(model.get_buffer(n)[j], t) if not t.is_floating_point()
                    else out_error(model.get_buffer(n)[j], t) < OUT_TOL), n
    assert torch.equal(model.bn.num_batches_tracked, torch.full((k,), 3))


def test_cumulative_average_weighs_each_member_by_its_own_count():
    """``momentum = None`` with members at different batch counts: each takes 1/n of the batch,
    its own n, as ``nn.BatchNorm2d`` does."""
    bn, k, counts = nn.BatchNorm2d(5, momentum=None), 3, (0, 2, 9)
    layer = grouped.GroupedBatchNorm2d(bn, k)
    x = torch.randn(4, 5 * k, 3, 3, generator=torch.Generator().manual_seed(4))
    layer.running_mean.normal_(generator=torch.Generator().manual_seed(5))
    layer.num_batches_tracked.copy_(torch.tensor(counts))
    solos = []
    for j, n in enumerate(counts):
        solo = nn.BatchNorm2d(5, momentum=None)
        solo.running_mean.copy_(layer.running_mean[j])
        solo.num_batches_tracked.fill_(n)
        solo(x[:, 5 * j:5 * (j + 1)])
        solos.append(solo)
    layer(x)
    for j, solo in enumerate(solos):
        assert out_error(layer.running_mean[j], solo.running_mean) < OUT_TOL
        assert out_error(layer.running_var[j], solo.running_var) < OUT_TOL
        assert int(layer.num_batches_tracked[j]) == counts[j] + 1


@pytest.mark.parametrize(("name", "dataset", "expected"), [
    ("lenet_300_100", "mnist", True), ("resnet20", "cifar10", True), ("vgg16", "cifar10", True),
    ("vgg16_nobias", "cifar10", True), ("resnet50", "imagenet", True),
    ("inceptionv3", "imagenet", False),
])
def test_which_registered_networks_are_groupable(name, dataset, expected):
    with torch.device("meta"):
        assert grouped.groupable(models.build(name, dataset)) is expected


class Undeclared(Odd):
    groupable = False


@pytest.mark.parametrize("change", ["dropout", "groupnorm", "reflect", "undeclared", "grouped"])
def test_a_layer_of_another_kind_makes_a_network_ungroupable(change):
    net = Undeclared() if change == "undeclared" else Odd()
    assert grouped.groupable(Odd())
    if change == "dropout":
        net.head.append(nn.Dropout())
    elif change == "groupnorm":
        net.bn2 = nn.GroupNorm(2, 8)
    elif change == "reflect":
        net.conv2.padding_mode = "reflect"
    elif change == "grouped":
        net = grouped.group(net, 2)
    assert not grouped.groupable(net)
    with pytest.raises(ValueError, match="cannot be grouped"):
        grouped.group(net, 2)


def test_member_losses_read_either_logit_layout():
    """A grouped Linear's transposed output and a contiguous (B, k*classes) tensor are read
    alike; labels must be (B, k)."""
    logits = torch.randn(6, 3 * 4, generator=torch.Generator().manual_seed(6))
    y = torch.randint(0, 4, (6, 3), generator=torch.Generator().manual_seed(6))
    want = torch.stack([F.cross_entropy(logits[:, 4 * j:4 * (j + 1)], y[:, j]) for j in range(3)])
    strided = logits.t().contiguous().t()
    for got in (grouped.member_losses(logits, y), grouped.member_losses(strided, y)):
        assert out_error(got, want) < OUT_TOL
    with pytest.raises(ValueError, match=r"member labels are \(B, k\)"):
        grouped.member_losses(logits, y[:, 0])
