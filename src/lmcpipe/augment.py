"""Batched data augmentation on tensors on the training device (no per-image Python).

Registry contract (what the training loop calls once per batch)::

    fn = AUGMENTATIONS[name]              # name in {"none", "cifar", "imagenet"}
    x = fn(x, gen, fill)

* ``x``: the batch, float (B, C, H, W), already normalised ((pixel/255 - mean) / std).
* ``gen``: ``augmentation_generator(order, copy, step, x.device)``: a fresh torch.Generator on
  x's device. Every random draw of the batch comes from it (a few batched tensors), so the
  augmentation of step t of data-order stream (order, copy) is a pure function of those integers:
  a killed run resumes bit for bit without saving RNG state, and the two copies of a pair
  (copy 1, copy 2) get different draws. The global torch RNG is never touched.
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


def augmentation_generator(order: int, copy: int, step: int,
                           device: str | torch.device = "cpu") -> torch.Generator:
    """A generator on ``device`` seeded with ``derive_seed("augment", order, copy, step)``."""
    gen = torch.Generator(device=torch.device(device))
    return gen.manual_seed(derive_seed("augment", int(order), int(copy), int(step)))


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
def draw_flip_crop(batch: int, gen: torch.Generator, pad: int = 4,
                   device: str | torch.device | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The per-image draws of ``flip_crop``: offsets dy, dx in [0, 2 pad] and a flip flag.

    Drawn in this order from ``gen`` (three batched calls); ``device`` defaults to gen's device.
    """
    device = gen.device if device is None else torch.device(device)
    dy = torch.randint(0, 2 * pad + 1, (batch,), generator=gen, device=device)
    dx = torch.randint(0, 2 * pad + 1, (batch,), generator=gen, device=device)
    flip = torch.randint(0, 2, (batch,), generator=gen, device=device).bool()
    return dy, dx, flip


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


def flip_crop(x: torch.Tensor, gen: torch.Generator, pad: int = 4, fill=None) -> torch.Tensor:
    """Random horizontal flip (p = 0.5) and random HxW crop of x zero-padded by ``pad``.

    ``x``: (B, C, H, W) on gen's device; ``fill``: the padding value per channel (a (C,) tensor
    or a number; None means 0): pass ``black_fill(mean, std)`` so the padding is black pixels of
    the raw image. Exact: see ``apply_flip_crop``; the draws are ``draw_flip_crop``'s.
    """
    dy, dx, flip = draw_flip_crop(x.shape[0], gen, pad, x.device)
    return apply_flip_crop(x, dy, dx, flip, pad, fill)


# --- ImageNet: random-resized crop + flip, center crop ---------------------------------------
def random_resized_crop_flip(x: torch.Tensor, gen: torch.Generator, out_size: int,
                             scale: tuple[float, float] = (0.35, 1.0),
                             ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> torch.Tensor:
    """Per image: a crop of area fraction U(scale) and aspect ratio logU(ratio) at a uniform
    position, flipped horizontally with p = 0.5, resampled bilinearly to out_size x out_size.

    One batched ``affine_grid`` + ``grid_sample`` (align_corners=False, border padding). A crop
    side that would exceed the image is clamped to it (instead of torchvision's re-draws), which
    keeps the draw a fixed number of batched tensors. Draws: one (B, 5) uniform tensor from gen.
    Float input keeps its dtype; uint8 input gives float32 in [0, 255] (normalise afterwards;
    resampling is linear, so normalising before or after is the same).
    Downscaling is not antialiased: keep the stored size near out_size.
    """
    b, c, h, w = x.shape
    xf = x if x.is_floating_point() else x.float()
    u = torch.rand(b, 5, generator=gen, device=x.device, dtype=torch.float64)
    area = (scale[0] + (scale[1] - scale[0]) * u[:, 0]) * (h * w)
    log_r = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[:, 1]
    fw = ((area * log_r.exp()).sqrt() / w).clamp(max=1.0)  # crop width / image width
    fh = ((area / log_r.exp()).sqrt() / h).clamp(max=1.0)
    cx = (2 * u[:, 2] - 1) * (1 - fw)  # crop centre in [-1, 1] coordinates
    cy = (2 * u[:, 3] - 1) * (1 - fh)
    sign = torch.where(u[:, 4] < 0.5, -1.0, 1.0).to(u.dtype)
    theta = torch.zeros(b, 2, 3, dtype=u.dtype, device=x.device)
    theta[:, 0, 0], theta[:, 0, 2] = fw * sign, cx
    theta[:, 1, 1], theta[:, 1, 2] = fh, cy
    grid = F.affine_grid(theta.to(xf.dtype), [b, c, out_size, out_size], align_corners=False)
    return F.grid_sample(xf, grid, mode="bilinear", padding_mode="border", align_corners=False)


def center_crop(x: torch.Tensor, out_size: int) -> torch.Tensor:
    """The central out_size x out_size window of (..., H, W) (a view; top/left round down)."""
    h, w = x.shape[-2:]
    if out_size > h or out_size > w:
        raise ValueError(f"cannot center-crop {h}x{w} to {out_size}")
    top, left = (h - out_size) // 2, (w - out_size) // 2
    return x[..., top : top + out_size, left : left + out_size]


# --- registry --------------------------------------------------------------------------------
Augmentation = Callable[[torch.Tensor, torch.Generator, "torch.Tensor | Sequence[float] | None"],
                        torch.Tensor]


def _none(x: torch.Tensor, gen: torch.Generator, fill=None) -> torch.Tensor:
    return x


def _cifar(x: torch.Tensor, gen: torch.Generator, fill=None) -> torch.Tensor:
    return flip_crop(x, gen, pad=4, fill=fill)


def _imagenet(x: torch.Tensor, gen: torch.Generator, fill=None) -> torch.Tensor:
    return random_resized_crop_flip(x, gen, out_size=x.shape[-1])


AUGMENTATIONS: dict[str, Augmentation] = {"none": _none, "cifar": _cifar, "imagenet": _imagenet}
