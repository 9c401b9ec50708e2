"""Batched data augmentation on tensors on the training device (no per-image Python).

Registry contract (what the training streams call once per step, for all members at once)::

    fn = AUGMENTATIONS[name]              # name in {"none", "cifar", "imagenet"}
    x = fn(x, bits, fill)

* ``x``: the batch, float (N, C, H, W), already normalised ((pixel/255 - mean) / std). In a
  stacked step N = B * K: the K members' batches in one tensor (``training.streams``).
* ``bits``: ``bits(n)`` returns (N, n) int64 words, uniform in [0, 2**32): image i's n random
  words (n <= SLOTS), each ``counter_bits(key, step, position * SLOTS + draw)`` of its own
  stream's key (``stream_key(order, copy)``), the step and its position in its member's batch.
  So an image's draws are a pure function of (order, copy, step, position, draw): a killed run
  resumes bit for bit without RNG state, the two copies of a pair get different draws, a member
  of a stack gets the draws it would get alone, CPU and CUDA give the same bits, and no
  generator object is made per step. The global torch RNG is never touched.
  ``stream_bits(order, copy, step, n_images, device)`` builds one stream's ``bits``.
* ``fill``: a (C,) tensor on x's device (or None for 0): the normalised value of a black pixel,
  ``black_fill(mean, std) = (0 - mean) / std``, used by "cifar" for its zero padding.
* The result has x's shape and dtype; "none" returns x itself.

"cifar": random horizontal flip + random HxW crop of the image zero-padded by 4 (open_lth).
"imagenet": random-resized crop (scale (0.35, 1), aspect ratio (3/4, 4/3)) + flip, resampled
bilinearly back to x's own H x W. Store ImageNet at the training resolution (``imagefolder`` resizes
the shorter side and center-crops once), so evaluation uses the stored images as they are;
``center_crop`` serves a protocol that stores larger images and evaluates on a central crop.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from lmcpipe.seeds import derive_seed

# --- counter-based draws ---------------------------------------------------------------------
# Why not a torch.Generator per (order, copy, step): it is an object per member-step (K of them
# per stacked step, none of them capturable by a CUDA graph), its bits differ between CPU and
# CUDA, and its draws cannot be vectorised over members. A counter-based generator is a pure
# function of integers, built from integer tensor ops: any set of (key, counter) pairs in one go.
MASK32 = 0xFFFF_FFFF
SLOTS = 8  # random words per image and step: counter = position * SLOTS + draw
Bits = Callable[[int], torch.Tensor]  # bits(n) -> (N, n) int64 words in [0, 2**32)


def mix32(x):
    """A bijection of 32-bit values with near-ideal avalanche (each input bit flips each output
    bit with probability close to 1/2): the xor-shift/multiply pattern and constants of the
    "lowbias32" integer hash found by C. Wellons' hash prospector.

    ``x``: a Python int or an int64 tensor holding 32-bit values. Both multipliers are below
    2**31, so every product is below 2**63: int64 never overflows (no reliance on wraparound),
    and CPU and CUDA give the same bits.
    """
    x = x ^ (x >> 16)
    x = (x * 0x21F0AAAD) & MASK32
    x = x ^ (x >> 15)
    x = (x * 0x735A2D97) & MASK32
    return x ^ (x >> 15)


def stream_key(order: int, copy: int) -> tuple[int, int]:
    """The two key words of the augmentation stream (order, copy): the low 32 and the high 31
    bits of ``derive_seed("augment", order, copy)``."""
    seed = derive_seed("augment", int(order), int(copy))
    return seed & MASK32, seed >> 32


def position_words(key1, counter):
    """The step-free half of ``counter_bits``, ``mix32(counter ^ key1)``: a run's constant, so
    a training loop computes it once (``training.streams``)."""
    return mix32(counter ^ key1)


def step_bits(words, key0, step):
    """``counter_bits`` from ``position_words``: ``mix32(words ^ mix32(key0 ^ mix32(step)))``.

    ``step``: an int, or an int64 tensor (so a captured step can hold it on the device).
    """
    return mix32(words ^ mix32(key0 ^ mix32(step)))


def counter_bits(key0, key1, step, counter):
    """32 random bits per element, a pure function of (key0, key1, step, counter) (ints or int64
    tensors broadcast together, each in [0, 2**32)).

    For one key and step, counter -> bits is a bijection (no two draws of a step collide); the
    step enters through its own keyed hash, so draws of different steps are unrelated.
    """
    return step_bits(position_words(key1, counter), key0, step)


def stream_bits(order: int, copy: int, step: int, n_images: int,
                device: str | torch.device = "cpu") -> Bits:
    """``bits`` for images 0..n_images-1 of step ``step`` of stream (order, copy) alone."""
    key0, key1 = stream_key(order, copy)
    position = torch.arange(n_images, device=device).view(-1, 1) * SLOTS

    def bits(n: int) -> torch.Tensor:
        if n > SLOTS:
            raise ValueError(f"{n} draws per image; at most {SLOTS}")
        return counter_bits(key0, key1, step, position + torch.arange(n, device=device))

    return bits


def uniform(words: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Floats in [0, 1) from the top bits of 32-bit words: 24 bits for float32, all 32 for
    float64 (both exact, so the same on every device)."""
    if dtype == torch.float64:
        return words.to(dtype) * 2.0**-32
    return (words >> 8).to(dtype) * 2.0**-24


def below(words: torch.Tensor, m: int) -> torch.Tensor:
    """Integers in [0, m) from 32-bit words, ``(words * m) >> 32`` (bias below m / 2**32)."""
    if not 0 < m < 2**31:
        raise ValueError(f"m = {m} out of (0, 2**31)")
    return (words * m) >> 32


def black_fill(mean, std) -> torch.Tensor:
    """The normalised value of a black (0) pixel per channel: ``(0 - mean) / std``."""
    mean = torch.as_tensor(mean, dtype=torch.float32)
    std = torch.as_tensor(std, dtype=torch.float32)
    return (-mean / std).reshape(-1)


def channel_stats(images: torch.Tensor, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std (float64 sums, population std) of uint8 images (N, C, H, W) / 255.

    Computed in chunks so a large uint8 tensor is never converted to float all at once.
    """
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    squares = torch.zeros(c, dtype=torch.float64)
    for start in range(0, len(images), chunk):
        part = images[start : start + chunk].to(torch.float64) / 255.0
        total += part.sum(dim=(0, 2, 3))
        squares += (part * part).sum(dim=(0, 2, 3))
    n = images.numel() // c
    mean = total / n
    std = (squares / n - mean * mean).clamp_min(0).sqrt()
    return mean.float(), std.float()


# --- CIFAR: flip + padded crop ---------------------------------------------------------------
def draw_flip_crop(words: torch.Tensor, pad: int = 4
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The per-image draws of ``flip_crop`` from its (N, 3) random words (``bits(3)``):
    offsets dy, dx in [0, 2 pad] (words 0 and 1, ``below``) and a flip flag (word 2's top bit).
    """
    offsets = below(words[:, :2], 2 * pad + 1)
    return offsets[:, 0], offsets[:, 1], words[:, 2] >= 2**31


def _fill_tensor(fill, x: torch.Tensor) -> torch.Tensor | None:
    if fill is None:
        return None
    fill = torch.as_tensor(fill, dtype=x.dtype, device=x.device).reshape(-1)
    if fill.numel() not in (1, x.shape[1]):
        raise ValueError(f"fill has {fill.numel()} values for {x.shape[1]} channels")
    return fill


def apply_flip_crop(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor,
                    pad: int = 4, fill=None) -> torch.Tensor:
    """out[i] = flip[i] ? hflip(P[i, :, dy:dy+H, dx:dx+W]) : P[i, :, dy:dy+H, dx:dx+W],
    where P is x padded by ``pad`` on each side with ``fill`` (per channel; default 0).

    One flat ``gather`` over the padded batch: no per-image Python.
    """
    b, c, h, w = x.shape
    hp, wp = h + 2 * pad, w + 2 * pad
    fill = _fill_tensor(fill, x)
    if fill is None:
        padded = F.pad(x, (pad, pad, pad, pad)) if pad else x
    else:
        padded = x.new_empty(b, c, hp, wp)
        padded[:] = fill.view(1, -1, 1, 1)
        padded[:, :, pad : pad + h, pad : pad + w] = x
    rows = dy.view(b, 1) + torch.arange(h, device=x.device)  # (B, H)
    j = torch.arange(w, device=x.device)
    cols = dx.view(b, 1) + torch.where(flip.view(b, 1), w - 1 - j, j)  # (B, W)
    index = (rows.view(b, h, 1) * wp + cols.view(b, 1, w)).view(b, 1, h * w)
    out = padded.reshape(b, c, hp * wp).gather(2, index.expand(b, c, h * w))
    return out.view(b, c, h, w)


def flip_crop(x: torch.Tensor, bits: Bits, pad: int = 4, fill=None) -> torch.Tensor:
    """Random horizontal flip (p = 0.5) and random HxW crop of x zero-padded by ``pad``.

    ``x``: (B, C, H, W); ``bits``: its images' random words (see the module docstring);
    ``fill``: the padding value per channel (a (C,) tensor or a number; None means 0): pass
    ``black_fill(mean, std)`` so the padding is black pixels of the raw image.
    Exact: see ``apply_flip_crop``; the draws are ``draw_flip_crop``'s.
    """
    dy, dx, flip = draw_flip_crop(bits(3), pad)
    return apply_flip_crop(x, dy, dx, flip, pad, fill)


# --- ImageNet: random-resized crop + flip, center crop ---------------------------------------
def random_resized_crop_flip(x: torch.Tensor, bits: Bits, out_size: int,
                             scale: tuple[float, float] = (0.35, 1.0),
                             ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> torch.Tensor:
    """Per image: a crop of area fraction U(scale) and aspect ratio logU(ratio) at a uniform
    position, flipped horizontally with p = 0.5, resampled bilinearly to out_size x out_size.

    One batched ``grid_sample`` (align_corners=False, border padding) on the crop's affine grid,
    which is computed elementwise per image in float64 (what ``affine_grid`` computes with a
    batched matmul, whose kernel may depend on the batch size: elementwise, an image resamples
    the same in a stack of K members as alone). A crop side that would exceed the image is
    clamped to it (instead of torchvision's re-draws), which keeps the draw a fixed number of
    batched tensors. Draws: five float64 uniforms per image, ``uniform(bits(5), float64)``
    (area, log-ratio, centre x, centre y, flip).
    Float input keeps its dtype; uint8 input gives float32 in [0, 255] (normalise afterwards;
    resampling is linear, so normalising before or after is the same).
    Downscaling is not antialiased: keep the stored size near out_size.
    """
    b, c, h, w = x.shape
    xf = x if x.is_floating_point() else x.float()
    u = uniform(bits(5), torch.float64)
    area = (scale[0] + (scale[1] - scale[0]) * u[:, 0]) * (h * w)
    r = (math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[:, 1]).exp()
    fw = ((area * r).sqrt() / w).clamp(max=1.0)  # crop width / image width
    fh = ((area / r).sqrt() / h).clamp(max=1.0)
    cx = (2 * u[:, 2] - 1) * (1 - fw)  # crop centre in [-1, 1] coordinates
    cy = (2 * u[:, 3] - 1) * (1 - fh)
    sign = torch.where(u[:, 4] < 0.5, -1.0, 1.0).to(u.dtype)
    # output pixel i's centre in [-1, 1] (align_corners=False), mapped into the crop
    side = (torch.arange(out_size, device=x.device, dtype=u.dtype) * 2 + 1) / out_size - 1
    gx = (fw * sign).view(b, 1, 1) * side.view(1, 1, -1) + cx.view(b, 1, 1)  # (B, 1, out)
    gy = fh.view(b, 1, 1) * side.view(1, -1, 1) + cy.view(b, 1, 1)  # (B, out, 1)
    grid = torch.stack(torch.broadcast_tensors(gx, gy), dim=-1).to(xf.dtype)
    return F.grid_sample(xf, grid, mode="bilinear", padding_mode="border", align_corners=False)


def center_crop(x: torch.Tensor, out_size: int) -> torch.Tensor:
    """The central out_size x out_size window of (..., H, W) (a view; top/left round down)."""
    h, w = x.shape[-2:]
    if out_size > h or out_size > w:
        raise ValueError(f"cannot center-crop {h}x{w} to {out_size}")
    top, left = (h - out_size) // 2, (w - out_size) // 2
    return x[..., top : top + out_size, left : left + out_size]


# --- registry --------------------------------------------------------------------------------
Augmentation = Callable[[torch.Tensor, Bits, "torch.Tensor | Sequence[float] | None"],
                        torch.Tensor]


def _none(x: torch.Tensor, bits: Bits, fill=None) -> torch.Tensor:
    return x


def _cifar(x: torch.Tensor, bits: Bits, fill=None) -> torch.Tensor:
    return flip_crop(x, bits, pad=4, fill=fill)


def _imagenet(x: torch.Tensor, bits: Bits, fill=None) -> torch.Tensor:
    return random_resized_crop_flip(x, bits, out_size=x.shape[-1])


AUGMENTATIONS: dict[str, Augmentation] = {"none": _none, "cifar": _cifar, "imagenet": _imagenet}
