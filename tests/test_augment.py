"""Batched augmentation: exact against a per-image reference, seeded only by (order, copy, step)."""

from __future__ import annotations

import time

import pytest
import torch

from lmcpipe.augment import (
    AUGMENTATIONS,
    apply_flip_crop,
    augmentation_generator,
    black_fill,
    center_crop,
    channel_stats,
    draw_flip_crop,
    flip_crop,
    random_resized_crop_flip,
)
from lmcpipe.seeds import derive_seed

MEAN, STD = torch.tensor([0.49, 0.48, 0.45]), torch.tensor([0.25, 0.24, 0.26])


def cifar_batch(b: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    raw = torch.randint(0, 256, (b, 3, 32, 32), generator=g).float() / 255
    return (raw - MEAN.view(1, 3, 1, 1)) / STD.view(1, 3, 1, 1)


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
    out = flip_crop(x, augmentation_generator(3, 1, 17), pad=pad, fill=fill)
    dy, dx, flip = draw_flip_crop(len(x), augmentation_generator(3, 1, 17), pad)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(out, reference_flip_crop(x, dy, dx, flip, pad, fill))
    assert 0 < int(flip.sum()) < len(x)
    assert int(dy.min()) == 0 and int(dy.max()) == 2 * pad and int(dx.max()) == 2 * pad


def test_flip_crop_pads_with_fill():
    fill = black_fill(MEAN, STD)
    assert torch.allclose(fill, -MEAN / STD)
    x = torch.full((128, 3, 8, 8), 5.0)
    out = flip_crop(x, augmentation_generator(0, 1, 0), pad=4, fill=fill)
    dy, dx, _ = draw_flip_crop(128, augmentation_generator(0, 1, 0), pad=4)
    is_fill = out != 5.0
    assert torch.equal(out[is_fill], fill.view(1, 3, 1, 1).expand_as(out)[is_fill])
    expected = 3 * (64 - (8 - (dy - 4).abs()).clamp(min=0) * (8 - (dx - 4).abs()).clamp(min=0))
    assert torch.equal(is_fill.sum(dim=(1, 2, 3)), expected)

    zero = flip_crop(x, augmentation_generator(0, 1, 0), pad=4)  # default fill: 0
    assert torch.equal(zero[is_fill], torch.zeros(int(is_fill.sum())))
    scalar = flip_crop(x, augmentation_generator(0, 1, 0), pad=4, fill=-2.0)
    assert torch.equal(scalar[is_fill], torch.full((int(is_fill.sum()),), -2.0))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.uint8])
def test_flip_crop_keeps_dtype(dtype):
    x = (cifar_batch(16) * 40 + 128).clamp(0, 255).to(dtype)
    fill = torch.zeros(3) if dtype == torch.uint8 else black_fill(MEAN, STD)
    out = flip_crop(x, augmentation_generator(1, 1, 1), fill=fill)
    assert out.dtype == dtype and out.shape == x.shape
    dy, dx, flip = draw_flip_crop(16, augmentation_generator(1, 1, 1))
    assert torch.equal(out, reference_flip_crop(x, dy, dx, flip, 4, fill.to(dtype)))


def test_draws_depend_only_on_order_copy_step():
    x, fill = cifar_batch(), black_fill(MEAN, STD)
    gen = augmentation_generator(5, 1, 9)
    assert gen.initial_seed() == derive_seed("augment", 5, 1, 9)
    assert gen.device == torch.device("cpu")

    a = flip_crop(x, augmentation_generator(5, 1, 9), fill=fill)
    b = flip_crop(x, augmentation_generator(5, 1, 9), fill=fill)
    assert torch.equal(a, b)  # bit-identical from the same seeds
    copy2 = flip_crop(x, augmentation_generator(5, 2, 9), fill=fill)
    order2 = flip_crop(x, augmentation_generator(6, 1, 9), fill=fill)
    step10 = flip_crop(x, augmentation_generator(5, 1, 10), fill=fill)
    for other in (copy2, order2, step10):
        assert not torch.equal(a, other)

    # Step 9 after running steps 0..8 (as a training loop would) equals step 9 alone, and the
    # global RNG is neither used nor disturbed.
    state = torch.get_rng_state()
    for step in range(9):
        flip_crop(x, augmentation_generator(5, 1, step), fill=fill)
    assert torch.equal(flip_crop(x, augmentation_generator(5, 1, 9), fill=fill), a)
    assert torch.equal(torch.get_rng_state(), state)

    # the copy's draws are those of its own stream: parameters differ between copies
    d1 = draw_flip_crop(64, augmentation_generator(5, 1, 9))
    d2 = draw_flip_crop(64, augmentation_generator(5, 2, 9))
    assert any(not torch.equal(p, q) for p, q in zip(d1, d2, strict=True))


def test_random_resized_crop_flip():
    x = cifar_batch(32)
    # full-image crop at the same size: each output is the image or its mirror
    out = random_resized_crop_flip(x, augmentation_generator(0, 1, 0), 32, scale=(1, 1),
                                   ratio=(1, 1))
    same = (out - x).abs().amax(dim=(1, 2, 3)) < 1e-4
    mirrored = (out - x.flip(-1)).abs().amax(dim=(1, 2, 3)) < 1e-4
    assert torch.all(same ^ mirrored) and 0 < int(same.sum()) < 32

    gen = augmentation_generator(0, 1, 1)
    a = random_resized_crop_flip(x, gen, 24)
    assert a.shape == (32, 3, 24, 24) and a.dtype == torch.float32
    assert torch.equal(a, random_resized_crop_flip(x, augmentation_generator(0, 1, 1), 24))
    assert not torch.equal(a, random_resized_crop_flip(x, augmentation_generator(0, 2, 1), 24))
    # resampling stays within each image's range (bilinear is a convex combination)
    lo, hi = x.amin(dim=(1, 2, 3)), x.amax(dim=(1, 2, 3))
    assert torch.all(a.amin(dim=(1, 2, 3)) >= lo - 1e-5)
    assert torch.all(a.amax(dim=(1, 2, 3)) <= hi + 1e-5)

    # uint8 in: float32 in [0, 255]; a flat image stays flat
    flat = torch.full((4, 3, 40, 40), 200, dtype=torch.uint8)
    out = random_resized_crop_flip(flat, augmentation_generator(0, 1, 2), 32)
    assert out.dtype == torch.float32 and torch.allclose(out, torch.full_like(out, 200.0))
    # a crop is a zoom: a 2-colour image keeps the left/right order unless flipped
    halves = torch.zeros(64, 1, 32, 32)
    halves[..., 16:] = 1
    out = random_resized_crop_flip(halves, augmentation_generator(0, 1, 3), 32)
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
    assert AUGMENTATIONS["none"](x, augmentation_generator(0, 1, 0), fill) is x
    assert torch.equal(AUGMENTATIONS["cifar"](x, augmentation_generator(0, 1, 0), fill),
                       flip_crop(x, augmentation_generator(0, 1, 0), 4, fill))
    out = AUGMENTATIONS["imagenet"](x, augmentation_generator(0, 1, 0), fill)
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
    out = flip_crop(x, augmentation_generator(2, 1, 3, "cuda"), fill=fill)
    dy, dx, flip = draw_flip_crop(64, augmentation_generator(2, 1, 3, "cuda"))
    assert torch.equal(out.cpu(), reference_flip_crop(x.cpu(), dy.cpu(), dx.cpu(), flip.cpu(), 4,
                                                      fill.cpu()))


def test_flip_crop_throughput(capsys):
    """Not an assertion: prints images/s of flip_crop at batch 128 on CPU."""
    x, fill = cifar_batch(128), black_fill(MEAN, STD)
    for step in range(5):
        flip_crop(x, augmentation_generator(0, 1, step), fill=fill)
    n, start = 100, time.perf_counter()
    for step in range(n):
        flip_crop(x, augmentation_generator(0, 1, step), fill=fill)
    rate = n * 128 / (time.perf_counter() - start)
    dy, dx, flip = draw_flip_crop(128, augmentation_generator(0, 1, 0))
    start = time.perf_counter()
    for _ in range(n):
        apply_flip_crop(x, dy, dx, flip, 4, fill)
    gather = n * 128 / (time.perf_counter() - start)
    with capsys.disabled():
        print(f"\nflip_crop, batch 128, CPU, {torch.get_num_threads()} thread(s): "
              f"{rate:,.0f} img/s incl. generator + draws, {gather:,.0f} img/s gather only")
