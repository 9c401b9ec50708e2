"""Pruning masks: global magnitude pruning, layer-wise random shuffles, and their files.

A mask is a dict from parameter name to a bool tensor of the parameter's shape (True = kept).
"""

from __future__ import annotations

import math

import torch

from lmcpipe import atomic
from lmcpipe.seeds import generator

Mask = dict[str, torch.Tensor]


def ones_like(weights: dict[str, torch.Tensor]) -> Mask:
    return {name: torch.ones_like(w, dtype=torch.bool) for name, w in weights.items()}


def density(mask: Mask) -> float:
    kept = sum(int(m.sum()) for m in mask.values())
    return kept / sum(m.numel() for m in mask.values())


def magnitude_prune(weights: dict[str, torch.Tensor], mask: Mask | None, fraction: float) -> Mask:
    """Remove ``ceil(fraction * remaining)`` of the remaining weights with the smallest |w|.

    Global over all given tensors. Already-pruned weights stay pruned, so masks are nested.
    Ties are broken by position (a stable sort over the concatenation in the dict's order), so
    the result is deterministic.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"prune fraction must be in [0, 1), got {fraction}")
    mask = mask if mask is not None else ones_like(weights)
    names = list(weights)
    keep = torch.cat([mask[n].flatten() for n in names])
    scores = torch.cat([weights[n].detach().abs().flatten().double() for n in names])
    scores = torch.where(keep, scores, torch.full_like(scores, -1.0))
    remaining = int(keep.sum())
    n_prune = math.ceil(fraction * remaining)
    order = torch.sort(scores, stable=True).indices
    new_keep = torch.ones_like(keep)
    new_keep[order[: keep.numel() - remaining + n_prune]] = False
    out, start = {}, 0
    for n in names:
        size = weights[n].numel()
        out[n] = new_keep[start : start + size].reshape(weights[n].shape)
        start += size
    return out


def shuffle_within_layers(mask: Mask, *seed_parts: object) -> Mask:
    """Random pruning baseline: the same per-layer density, positions drawn uniformly."""
    gen = generator("randprune", *seed_parts)
    out = {}
    for name, m in mask.items():
        flat = m.flatten()
        out[name] = flat[torch.randperm(flat.numel(), generator=gen)].reshape(m.shape)
    return out


def save(mask: Mask, path: str, **meta: float | int) -> None:
    atomic.save_torch({"masks": mask, "density": density(mask), **meta}, path)


def load(path: str | None) -> Mask | None:
    if path is None:
        return None
    return atomic.load_torch(path)["masks"]
