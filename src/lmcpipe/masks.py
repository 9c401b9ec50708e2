"""Pruning masks: global magnitude pruning, layer-wise random shuffles, and their files.

A mask is a dict from parameter name to a bool tensor of the parameter's shape (True = kept).
"""

from __future__ import annotations

import argparse
import math

import torch

from lmcpipe import atomic
from lmcpipe.errors import InputError
from lmcpipe.hparams import DENSITY_OF
from lmcpipe.seeds import generator

Mask = dict[str, torch.Tensor]


def ones_like(weights: dict[str, torch.Tensor]) -> Mask:
    return {name: torch.ones_like(w, dtype=torch.bool) for name, w in weights.items()}


COUNTINGS = tuple(DENSITY_OF)


def add_pruning_arguments(p: argparse.ArgumentParser, model: str, mask: str,
                          fraction: str) -> None:
    """The flags of every stage that prunes by magnitude from a level's weights (prune,
    curvature, oneshot-mask): the same names, types and counting choices, with its own help."""
    p.add_argument("--model", required=True, help=model)
    p.add_argument("--mask", help=mask)
    p.add_argument("--fraction", type=float, required=True, help=fraction)
    p.add_argument("--counting", choices=COUNTINGS, default="open_lth",
                   help="which weights the count and the density are over (prune.counting)")


def frozen_count(record: dict, counting: str) -> int:
    """Weights a level's count and density include though IMP never prunes them.

    open_lth's mask holds every conv/linear weight, the tensors it never prunes (LeNet's and
    VGG's output layer) as all ones, and its 20 % and its density are over that mask; lmcpipe's
    ``prunable`` counting leaves them out. ``record`` is a model artifact (``frozen``: the names
    of its never-pruned conv/linear weights).
    """
    if counting not in COUNTINGS:
        raise ValueError(f"unknown counting '{counting}' (known: {', '.join(COUNTINGS)})")
    if counting == "prunable":
        return 0
    if "frozen" not in record:
        raise ValueError("model artifact has no 'frozen' names (written before open_lth "
                         "counting); delete it and rerun snakemake to rebuild it")
    return sum(record["state_dict"][n].numel() for n in record["frozen"])


def density(mask: Mask, frozen: int = 0) -> float:
    """Kept fraction; ``frozen`` never-pruned weights count as kept (``frozen_count``)."""
    kept = sum(int(m.sum()) for m in mask.values())
    return (kept + frozen) / (sum(m.numel() for m in mask.values()) + frozen)


def magnitude_prune(weights: dict[str, torch.Tensor], mask: Mask | None, fraction: float,
                    counting: str = "prunable", frozen: int = 0) -> Mask:
    """Remove the smallest-|w| remaining weights, globally over all given tensors; already
    pruned weights stay pruned, so masks are nested.

    ``prunable``: exactly ``n = ceil(fraction * remaining)`` go, ties broken by position (a
    stable sort over the concatenation in the dict's order).
    ``open_lth`` (``open_lth.pruning.sparse_global``): ``n = ceil(fraction * (remaining +
    frozen))``, counting the ``frozen`` never-pruned weights too, and a weight is kept iff
    |w| > t, t the ``n``-th (0-based) smallest remaining |w|: n + 1 go, and any ties with t.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"prune fraction must be in [0, 1), got {fraction}")
    if counting not in COUNTINGS:
        raise ValueError(f"unknown counting '{counting}' (known: {', '.join(COUNTINGS)})")
    mask = mask if mask is not None else ones_like(weights)
    names = list(weights)
    keep = torch.cat([mask[n].flatten() for n in names])
    scores = torch.cat([weights[n].detach().abs().flatten().double() for n in names])
    remaining = int(keep.sum())
    if counting == "open_lth":
        n_prune = math.ceil(fraction * (remaining + frozen))
        if n_prune >= remaining:
            raise InputError(f"cannot prune {n_prune + 1} of the {remaining} remaining weights: "
                             f"prune.counting open_lth counts the {frozen} never-pruned weights "
                             "too (lower prune.fraction or prune.levels, or use counting: "
                             "prunable)")
        threshold = torch.sort(scores[keep]).values[n_prune]
        new_keep = keep & (scores > threshold)
    else:
        scores = torch.where(keep, scores, torch.full_like(scores, -1.0))
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


def random_removal(mask: Mask, count: int, *seed_parts: object) -> Mask:
    """``count`` kept weights chosen uniformly over the whole network (True = removed)."""
    names = list(mask)
    kept = torch.cat([mask[n].flatten() for n in names]).nonzero().squeeze(1)
    pick = kept[torch.randperm(len(kept), generator=generator(*seed_parts))[:count]]
    flat = torch.zeros(sum(mask[n].numel() for n in names), dtype=torch.bool)
    flat[pick] = True
    out, start = {}, 0
    for n in names:
        out[n] = flat[start:start + mask[n].numel()].reshape(mask[n].shape)
        start += mask[n].numel()
    return out


def save(mask: Mask, path: str, frozen: int = 0, **meta: float | int) -> None:
    """A mask file: the mask, its ``density`` counting ``frozen`` never-pruned weights as kept
    (the experiment's convention, what tables report), ``density_prunable`` over the prunable
    weights only, and ``frozen`` itself, so that masks derived from it keep the convention."""
    atomic.save_torch({"masks": mask, "density": density(mask, frozen),
                       "density_prunable": density(mask), "frozen": frozen, **meta}, path)



def load(path: str | None) -> Mask | None:
    if path is None:
        return None
    return atomic.load_torch(path)["masks"]
