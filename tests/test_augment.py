"""Batched augmentation: exact against a per-image reference; draws are a pure function of
(order, copy, step, position, draw) (``augment.counter_bits``)."""

from __future__ import annotations

import time

import pytest
import torch

from lmcpipe.augment import (
    AUGMENTATIONS,
    SLOTS,
    apply_flip_crop,
    below,
    black_fill,
    center_crop,
    channel_stats,
    counter_bits,
    draw_flip_crop,
    flip_crop,
    random_resized_crop_flip,
    stream_bits,
    stream_key,
    uniform,
)
from lmcpipe.seeds import derive_seed

MEAN, STD = torch.tensor([0.49, 0.48, 0.45]), torch.tensor([0.25, 0.24, 0.26])


def cifar_batch(b: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    raw = torch.randint(0, 256, (b, 3, 32, 32), generator=g).float() / 255
    return (raw - MEAN.view(1, 3, 1, 1)) / STD.view(1, 3, 1, 1)


def bits(order, copy, step, n=64, device="cpu"):
    return stream_bits(order, copy, step, n, device)


def reference_flip_crop(x, dy, dx, flip, pad, fill):
    """Slow per-image reference: pad with the fill value, slice, maybe flip."""
    out = torch.empty_like(x)
    b, c, h, w = x.shape
    for i in range(b):
        padded = fill.view(c, 1, 1).expand(c, h + 2 * pad, w + 2 * pad).clone()
        padded[:, pad : pad + h, pad : pad + w] = x[i]
        crop = padded[:, int(dy[i]) : int(dy[i]) + h, int(dx[i]) : int(dx[i]) + w]
        out[i] = crop.flip(-1) if flip[i] else crop
    return out


@pytest.mark.parametrize("pad", [4, 2, 0])
def test_flip_crop_matches_per_image_reference(pad):
    x, fill = cifar_batch(), black_fill(MEAN, STD)
    out = flip_crop(x, bits(3, 1, 17), pad=pad, fill=fill)
    dy, dx, flip = draw_flip_crop(bits(3, 1, 17)(3), pad)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(out, reference_flip_crop(x, dy, dx, flip, pad, fill))
    assert 0 < int(flip.sum()) < len(x)
    assert int(dy.min()) == 0 and int(dy.max()) == 2 * pad and int(dx.max()) == 2 * pad


def test_flip_crop_pads_with_fill():
    fill = black_fill(MEAN, STD)
    assert torch.allclose(fill, -MEAN / STD)
    x = torch.full((128, 3, 8, 8), 5.0)
    out = flip_crop(x, bits(0, 1, 0, 128), pad=4, fill=fill)
    dy, dx, _ = draw_flip_crop(bits(0, 1, 0, 128)(3), pad=4)
    is_fill = out != 5.0
    assert torch.equal(out[is_fill], fill.view(1, 3, 1, 1).expand_as(out)[is_fill])
    expected = 3 * (64 - (8 - (dy - 4).abs()).clamp(min=0) * (8 - (dx - 4).abs()).clamp(min=0))
    assert torch.equal(is_fill.sum(dim=(1, 2, 3)), expected)

    zero = flip_crop(x, bits(0, 1, 0, 128), pad=4)  # default fill: 0
    assert torch.equal(zero[is_fill], torch.zeros(int(is_fill.sum())))
    scalar = flip_crop(x, bits(0, 1, 0, 128), pad=4, fill=-2.0)
    assert torch.equal(scalar[is_fill], torch.full((int(is_fill.sum()),), -2.0))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.uint8])
def test_flip_crop_keeps_dtype(dtype):
    x = (cifar_batch(16) * 40 + 128).clamp(0, 255).to(dtype)
    fill = torch.zeros(3) if dtype == torch.uint8 else black_fill(MEAN, STD)
    out = flip_crop(x, bits(1, 1, 1, 16), fill=fill)
    assert out.dtype == dtype and out.shape == x.shape
    dy, dx, flip = draw_flip_crop(bits(1, 1, 1, 16)(3))
    assert torch.equal(out, reference_flip_crop(x, dy, dx, flip, 4, fill.to(dtype)))


def test_draws_depend_only_on_order_copy_step_position():
    x, fill = cifar_batch(), black_fill(MEAN, STD)
    seed = derive_seed("augment", 5, 1)
    assert stream_key(5, 1) == (seed % 2**32, seed // 2**32)
    words = bits(5, 1, 9)(3)
    assert words.shape == (64, 3) and words.dtype == torch.int64
    assert int(words.min()) >= 0 and int(words.max()) < 2**32
    key0, key1 = stream_key(5, 1)
    direct = counter_bits(key0, key1, 9, torch.arange(64).view(-1, 1) * SLOTS + torch.arange(3))
    assert torch.equal(words, direct)
    # an image's draws are those of its position: a batch's first 16 images draw as a batch of 16
    assert torch.equal(bits(5, 1, 9, 16)(3), words[:16])
    assert torch.equal(bits(5, 1, 9)(5)[:, :3], words)  # draw d is the same whatever n is

    a = flip_crop(x, bits(5, 1, 9), fill=fill)
    b = flip_crop(x, bits(5, 1, 9), fill=fill)
    assert torch.equal(a, b)  # bit-identical from the same integers
    copy2 = flip_crop(x, bits(5, 2, 9), fill=fill)
    order2 = flip_crop(x, bits(6, 1, 9), fill=fill)
    step10 = flip_crop(x, bits(5, 1, 10), fill=fill)
    for other in (copy2, order2, step10):
        assert not torch.equal(a, other)

    # Step 9 after running steps 0..8 (as a training loop would) equals step 9 alone, and the
    # global RNG is neither used nor disturbed.
    state = torch.get_rng_state()
    for step in range(9):
        flip_crop(x, bits(5, 1, step), fill=fill)
    assert torch.equal(flip_crop(x, bits(5, 1, 9), fill=fill), a)
    assert torch.equal(torch.get_rng_state(), state)

    # the copy's draws are those of its own stream: parameters differ between copies
    d1 = draw_flip_crop(bits(5, 1, 9)(3))
    d2 = draw_flip_crop(bits(5, 2, 9)(3))
    assert any(not torch.equal(p, q) for p, q in zip(d1, d2, strict=True))


def test_draw_flip_crop_covers_its_range_evenly():
    """dy, dx uniform on 0..2 pad and a fair flip, over 9,000 images (chi-square, p > 1e-4)."""
    dy, dx, flip = draw_flip_crop(bits(2, 1, 4, 9000)(3), pad=4)
    for v in (dy, dx):
        counts = torch.bincount(v, minlength=9).double()
        assert len(counts) == 9
        assert float(((counts - 1000) ** 2 / 1000).sum()) < 33.7  # chi2(8) at p = 1e-4
    assert abs(int(flip.sum()) - 4500) < 4 * 47  # 4 standard deviations


def test_uniform_and_below_are_exact():
    words = torch.tensor([0, 1, 255, 256, 2**31, 2**32 - 1])
    assert torch.equal(uniform(words), (words // 256).float() / 2**24)
    assert float(uniform(words).max()) < 1.0
    assert torch.equal(uniform(words, torch.float64), words.double() / 2**32)
    assert torch.equal(below(words, 9), words * 9 // 2**32)
    assert int(below(words, 9).max()) == 8
    with pytest.raises(ValueError):
        below(words, 2**31)


def test_random_resized_crop_flip():
    x = cifar_batch(32)
    # full-image crop at the same size: each output is the image or its mirror
    out = random_resized_crop_flip(x, bits(0, 1, 0, 32), 32, scale=(1, 1), ratio=(1, 1))
    same = (out - x).abs().amax(dim=(1, 2, 3)) < 1e-4
    mirrored = (out - x.flip(-1)).abs().amax(dim=(1, 2, 3)) < 1e-4
    assert torch.all(same ^ mirrored) and 0 < int(same.sum()) < 32

    a = random_resized_crop_flip(x, bits(0, 1, 1, 32), 24)
    assert a.shape == (32, 3, 24, 24) and a.dtype == torch.float32
    assert torch.equal(a, random_resized_crop_flip(x, bits(0, 1, 1, 32), 24))
    assert not torch.equal(a, random_resized_crop_flip(x, bits(0, 2, 1, 32), 24))
    # resampling stays within each image's range (bilinear is a convex combination)
    lo, hi = x.amin(dim=(1, 2, 3)), x.amax(dim=(1, 2, 3))
    assert torch.all(a.amin(dim=(1, 2, 3)) >= lo - 1e-5)
    assert torch.all(a.amax(dim=(1, 2, 3)) <= hi + 1e-5)

    # uint8 in: float32 in [0, 255]; a flat image stays flat
    flat = torch.full((4, 3, 40, 40), 200, dtype=torch.uint8)
    out = random_resized_crop_flip(flat, bits(0, 1, 2, 4), 32)
    assert out.dtype == torch.float32 and torch.allclose(out, torch.full_like(out, 200.0))
    # a crop is a zoom: a 2-colour image keeps the left/right order unless flipped
    halves = torch.zeros(64, 1, 32, 32)
    halves[..., 16:] = 1
    out = random_resized_crop_flip(halves, bits(0, 1, 3), 32)
    left, right = out[..., :4].mean(dim=(1, 2, 3)), out[..., -4:].mean(dim=(1, 2, 3))
    assert torch.all(left != right) and 0 < int((left < right).sum()) < 64


def test_center_crop():
    x = torch.arange(2 * 3 * 10 * 12).view(2, 3, 10, 12)
    assert torch.equal(center_crop(x, 6), x[..., 2:8, 3:9])
    assert torch.equal(center_crop(x, 10), x[..., :, 1:11])
    with pytest.raises(ValueError):
        center_crop(x, 11)


def test_registry():
    x, fill = cifar_batch(8), black_fill(MEAN, STD)
    assert set(AUGMENTATIONS) == {"none", "cifar", "imagenet"}
    assert AUGMENTATIONS["none"](x, bits(0, 1, 0, 8), fill) is x
    assert torch.equal(AUGMENTATIONS["cifar"](x, bits(0, 1, 0, 8), fill),
                       flip_crop(x, bits(0, 1, 0, 8), 4, fill))
    out = AUGMENTATIONS["imagenet"](x, bits(0, 1, 0, 8), fill)
    assert torch.equal(out, random_resized_crop_flip(x, bits(0, 1, 0, 8), 32))
    assert out.shape == x.shape and out.dtype == x.dtype


def test_channel_stats():
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (50, 3, 6, 6), generator=g, dtype=torch.uint8)
    mean, std = channel_stats(images, chunk=7)
    f = images.double() / 255
    assert torch.allclose(mean.double(), f.mean(dim=(0, 2, 3)), atol=1e-6)
    assert torch.allclose(std.double(), f.transpose(0, 1).reshape(3, -1).std(1, unbiased=False),
                          atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_flip_crop_on_cuda_matches_reference():
    x, fill = cifar_batch().cuda(), black_fill(MEAN, STD).cuda()
    out = flip_crop(x, bits(2, 1, 3, device="cuda"), fill=fill)
    words = bits(2, 1, 3, device="cuda")(5)
    assert torch.equal(words.cpu(), bits(2, 1, 3)(5))  # the same bits on CUDA as on the CPU
    dy, dx, flip = draw_flip_crop(words[:, :3])
    assert torch.equal(out.cpu(), reference_flip_crop(x.cpu(), dy.cpu(), dx.cpu(), flip.cpu(), 4,
                                                      fill.cpu()))
    assert torch.equal(out.cpu(), flip_crop(x.cpu(), bits(2, 1, 3), fill=fill.cpu()))


def test_flip_crop_throughput(capsys):
    """Not an assertion: prints images/s of flip_crop at batch 128 on CPU."""
    x, fill = cifar_batch(128), black_fill(MEAN, STD)
    for step in range(5):
        flip_crop(x, bits(0, 1, step, 128), fill=fill)
    n, start = 100, time.perf_counter()
    for step in range(n):
        flip_crop(x, bits(0, 1, step, 128), fill=fill)
    rate = n * 128 / (time.perf_counter() - start)
    dy, dx, flip = draw_flip_crop(bits(0, 1, 0, 128)(3))
    start = time.perf_counter()
    for _ in range(n):
        apply_flip_crop(x, dy, dx, flip, 4, fill)
    gather = n * 128 / (time.perf_counter() - start)
    with capsys.disabled():
        print(f"\nflip_crop, batch 128, CPU, {torch.get_num_threads()} thread(s): "
              f"{rate:,.0f} img/s incl. draws, {gather:,.0f} img/s gather only")
