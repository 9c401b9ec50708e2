"""Data streams (``training.streams.Streams``): one gather, one prepare and one augmentation per
step for K members; member j's batch is bit for bit its single stream's; a batch is a pure
function of its step, prefetched or not; the counter-based draws look independent."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from lmcpipe import augment, data
from lmcpipe.data.tensors import Data
from lmcpipe.data.testing import write_imagefolder
from lmcpipe.hparams import TrainHParams
from lmcpipe.training.streams import Streams, batch_indices

STREAMS = [(0, 1), (0, 2), (3, 1), (7, 2)]  # a pair's two copies, and two other orders


def synthetic(kind: str, n: int = 200, seed: int = 0) -> tuple[TrainHParams, Data]:
    """A small Data shaped like a dataset of ``kind``, with hparams naming that dataset:
    "cifar" (normalised float, flip+crop), "mnist" (float, no augmentation) or "imagenet"
    (uint8 on the host, random-resized crop + flip)."""
    g = torch.Generator().manual_seed(seed)
    shape, name = {"cifar": ((3, 32, 32), "cifar10"), "mnist": ((1, 28, 28), "fashion_mnist"),
                   "imagenet": ((3, 24, 24), "imagenet")}[kind]
    raw = torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8)
    mean = raw.double().mean(dim=(0, 2, 3)).float() / 255
    std = raw.double().std(dim=(0, 2, 3)).float() / 255
    x = raw if kind == "imagenet" else (raw.float() / 255 - mean.view(-1, 1, 1)) / std.view(
        -1, 1, 1)
    y = torch.randint(0, 10, (n,), generator=g)
    hp = TrainHParams(model="resnet20", dataset=name, data_root="unused", optimizer="sgd",
                      lr=0.1, batch_size=32, steps=20)
    return hp, Data(x, y, x[:8], y[:8], mean=mean, std=std)


def single(hp, dataset, stream, step):
    with Streams(hp, dataset, [stream], prefetch=False) as s:
        return s.batch(step)


@pytest.mark.parametrize("kind", ["cifar", "mnist", "imagenet"])
def test_member_of_a_stack_is_its_single_stream_bit_for_bit(kind):
    hp, ds = synthetic(kind)
    k = len(STREAMS)
    with Streams(hp, ds, STREAMS) as stack:
        for step in (0, 5, 6, 7):  # 200 = 6 x 32 + 8: step 6 is short, step 7 a new epoch
            xb, yb = stack.batch(step)
            rows = 8 if step == 6 else 32
            assert xb.shape == (rows * k, *ds.train_x.shape[1:]) and yb.shape == (rows, k)
            assert xb.dtype == torch.float32
            grouped = xb.view(rows, k * xb.shape[1], *xb.shape[2:])  # the grouped layout
            for j, stream in enumerate(STREAMS):
                x1, y1 = single(hp, ds, stream, step)
                assert x1.shape == (rows, *ds.train_x.shape[1:]) and y1.shape == (rows,)
                assert torch.equal(xb[j::k], x1) and torch.equal(yb[:, j], y1)
                c = xb.shape[1]
                assert torch.equal(grouped[:, j * c : (j + 1) * c], x1)


@pytest.mark.parametrize("kind", ["cifar", "mnist", "imagenet"])
def test_single_stream_is_its_examples_augmented_by_their_counters(kind):
    """K = 1 is the data order of ``batch_indices`` and the draws of ``augment.stream_bits``:
    the examples a step sees are those it saw before this change."""
    hp, ds = synthetic(kind)
    name = data.DATASETS[hp.dataset].augment
    for step in (3, 6, 13):
        idx = batch_indices(200, 32, 3, 1, step)
        x, y = single(hp, ds, (3, 1), step)
        expected = ds.prepare(ds.train_x[idx])
        if name != "none":
            bits = augment.stream_bits(3, 1, step, len(idx))
            expected = augment.AUGMENTATIONS[name](expected, bits, ds.fill)
        assert torch.equal(x, expected) and torch.equal(y, ds.train_y[idx])


@pytest.mark.parametrize("kind", ["cifar", "imagenet"])
def test_a_batch_is_a_pure_function_of_its_step(kind):
    hp, ds = synthetic(kind)
    with Streams(hp, ds, STREAMS) as s:
        x7, y7 = s.batch(7)
        for step in (8, 0, 12, 6):
            s.batch(step)
        again = s.batch(7)
    with Streams(hp, ds, STREAMS) as fresh:  # a resumed run starts a new object at step 7
        resumed = fresh.batch(7)
    for x, y in (again, resumed):
        assert torch.equal(x, x7) and torch.equal(y, y7)


def test_two_copies_and_steps_differ():
    hp, ds = synthetic("cifar")
    xa, ya = single(hp, ds, (0, 1), 3)
    xb, yb = single(hp, ds, (0, 2), 3)
    assert not torch.equal(ya, yb) and not torch.equal(xa, xb)
    # the same examples in both copies would still be augmented differently
    x, fill = ds.train_x[:32], ds.fill
    copy1 = augment.flip_crop(x, augment.stream_bits(0, 1, 3, 32), fill=fill)
    copy2 = augment.flip_crop(x, augment.stream_bits(0, 2, 3, 32), fill=fill)
    assert not torch.equal(copy1, copy2)
    assert not torch.equal(single(hp, ds, (0, 1), 4)[0], xa)


def test_draws_of_a_stack_are_each_members_own():
    hp, ds = synthetic("cifar")
    k = len(STREAMS)
    with Streams(hp, ds, STREAMS) as stack:
        for step, rows in ((5, 32), (6, 8)):
            words = stack.bits(step, rows)(5)
            assert words.shape == (rows * k, 5)
            for j, (order, copy) in enumerate(STREAMS):
                alone = augment.stream_bits(order, copy, step, rows)(5)
                assert torch.equal(words[j::k], alone)
                with Streams(hp, ds, [(order, copy)]) as one:
                    assert torch.equal(one.bits(step, rows)(5), alone)
                    assert torch.equal(one.bits(torch.tensor(step), rows)(5), alone)
        # a step given as a tensor (as a captured step would hold it) draws the same
        assert torch.equal(stack.bits(torch.tensor(5), 32)(3), stack.bits(5, 32)(3))


def test_indices_are_each_members_batch_indices_b_major():
    hp, ds = synthetic("mnist")
    with Streams(hp, ds, STREAMS) as s:
        for step in (0, 6, 7, 30):
            idx = s.indices(step)
            for j, stream in enumerate(STREAMS):
                assert torch.equal(idx[j :: len(STREAMS)], batch_indices(200, 32, *stream, step))


def chi2_p(counts: torch.Tensor) -> float:
    """p-value of a chi-square test of equal cell counts (regularised upper gamma)."""
    counts = counts.double().flatten()
    expected = counts.sum() / len(counts)
    stat = ((counts - expected) ** 2 / expected).sum()
    return float(torch.special.gammaincc(torch.tensor((len(counts) - 1) / 2.0,
                                                      dtype=torch.float64), stat / 2))


def test_counter_bits_look_uniform_and_independent():
    """2**20 words of 16 streams x 64 steps x 128 positions x 8 draws: each byte uniform, and
    pairs of words of neighbouring members, copies, steps, positions and draws independent
    (16 x 16 cells), and no correlation between neighbours beyond 4 standard errors. Each of
    the 13 checks fails a good generator with p <= 1e-4: about once in 800 generators (the
    draws are fixed, so this test passes or fails for good)."""
    keys = torch.tensor([augment.stream_key(order, copy) for order in range(8)
                         for copy in (1, 2)])
    key0, key1 = keys[:, 0].view(16, 1, 1, 1), keys[:, 1].view(16, 1, 1, 1)
    steps = torch.arange(1000, 1064).view(1, 64, 1, 1)
    counter = torch.arange(128).view(1, 1, 128, 1) * augment.SLOTS + torch.arange(8)
    words = augment.counter_bits(key0, key1, steps, counter)  # (member, step, position, draw)
    assert int(words.min()) >= 0 and int(words.max()) < 2**32
    for shift in (24, 16, 8, 0):
        assert chi2_p(torch.bincount(((words >> shift) & 255).flatten(), minlength=256)) > 1e-4
    top = words >> 28
    for a, b in ((top[:-1], top[1:]), (top[0::2], top[1::2]), (top[:, :-1], top[:, 1:]),
                 (top[:, :, :-1], top[:, :, 1:]), (top[..., :-1], top[..., 1:]),
                 ((words[:, :-1] ^ words[:, 1:]) >> 28, top[:, 1:])):
        assert chi2_p(torch.bincount((a * 16 + b).flatten(), minlength=256)) > 1e-4
    u = augment.uniform(words, torch.float64) - 0.5
    for a, b in ((u[:-1], u[1:]), (u[:, :-1], u[:, 1:]), (u[:, :, :-1], u[:, :, 1:])):
        assert abs(float((a * b).mean() / (a.std() * b.std()))) < 4 / a.numel() ** 0.5


def test_mix32_is_the_same_on_ints_and_tensors_and_stays_in_32_bits():
    g = torch.Generator().manual_seed(3)
    x = torch.cat([torch.randint(0, 2**32, (1000,), generator=g),
                   torch.tensor([0, 1, 2**31, 2**32 - 1])])
    mixed = augment.mix32(x)
    assert torch.equal(mixed, torch.tensor([augment.mix32(int(v)) for v in x]))
    assert int(mixed.min()) >= 0 and int(mixed.max()) < 2**32
    assert len(torch.unique(mixed)) == len(torch.unique(x))  # a bijection: no collisions


def test_short_last_batch_keeps_its_length():
    hp, ds = synthetic("cifar", n=100)
    hp = dataclasses.replace(hp, batch_size=64)  # 100 = 64 + 36
    with Streams(hp, ds, STREAMS[:3]) as s:
        assert [tuple(t.shape) for t in s.batch(1)] == [(108, 3, 32, 32), (36, 3)]
        assert [tuple(t.shape) for t in s.batch(2)] == [(192, 3, 32, 32), (64, 3)]
    with Streams(hp, ds, STREAMS[:1]) as s:
        assert [tuple(t.shape) for t in s.batch(1)] == [(36, 3, 32, 32), (36,)]


def test_prefetched_batches_equal_synchronous_ones_from_a_memory_map(tmp_path):
    """The real memory-mapped ImageNet cache: 30 images, batch 8 (3 full batches and one of 6
    per epoch), read ahead on a thread and read synchronously give the same batches, in order,
    across epoch boundaries and when a step is skipped or repeated (a resume)."""
    write_imagefolder(tmp_path / "imagenet", n_classes=3, per_class=10, size=16)
    ds = data.load("imagenet", tmp_path, "cpu", 16)
    assert ds.host_resident
    hp = TrainHParams(model="resnet50", dataset="imagenet", data_root=str(tmp_path),
                      optimizer="sgd", lr=0.1, batch_size=8, steps=20)
    for streams in (STREAMS[:1], STREAMS[:2]):
        with (Streams(hp, ds, streams, prefetch=True) as ahead,
              Streams(hp, ds, streams, prefetch=False) as sync):
            assert ahead._prefetch is not None and sync._prefetch is None
            for step in [*range(10), 3, 4, 17, 18, 0]:
                xa, ya = ahead.batch(step)
                assert ahead._prefetch._pending[0] == step + 1  # the next one is under way
                xs, ys = sync.batch(step)
                assert torch.equal(xa, xs) and torch.equal(ya, ys), (streams, step)
            assert len(ya) == 8 and len(ahead.batch(3)[1]) == 6  # step 3 is the short one


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("kind", ["cifar", "imagenet"])
def test_streams_on_cuda_give_the_cpu_draws_and_prefetch_exactly(kind):
    hp, ds = synthetic(kind)
    k = len(STREAMS)
    with Streams(hp, ds, STREAMS) as cpu:
        words = cpu.bits(5, 32)(5)
        expected = [cpu.batch(step) for step in range(9)]
    ds.to("cuda")
    with Streams(hp, ds, STREAMS) as gpu, Streams(hp, ds, STREAMS, prefetch=False) as sync:
        assert torch.equal(gpu.bits(5, 32)(5).cpu(), words)
        for step in [*range(9), 2]:
            xb, yb = gpu.batch(step)
            xs, ys = sync.batch(step)
            assert torch.equal(xb, xs) and torch.equal(yb, ys)
            if kind == "cifar":  # flip+crop is exact: the very same images as on the CPU
                assert torch.equal(xb.cpu(), expected[step][0])
            for j, stream in enumerate(STREAMS):
                x1, y1 = single(hp, ds, stream, step)
                assert torch.equal(xb[j::k], x1) and torch.equal(yb[:, j], y1)
