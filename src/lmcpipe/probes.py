"""Starts and masks that probe an IMP chain with extra training runs (paper C, §3.2 and §3.3).

``perturb`` (§3.2, robustness): the pruned rewind point of level L+1, W_k ⊙ m_{L+1}, moved
inside the mask by noise of norm c · d_L, where d_L = ‖W_k ⊙ (m_L − m_{L+1})‖ is the distance
between the successive pruned rewind points. The run trained from it (mask m_{L+1}, same data
order as the chain) is compared with the unperturbed level-(L+1) solution by the error barrier
between them. lmcpipe's definition: the noise direction is Gaussian, drawn once per (seed, k, L),
restricted to m_{L+1} and scaled to each c, so the scales of one level differ only in size.

``oneshot`` (§3.3, the maximal pruning ratio): from the level-L solution θ_L, prune in one shot
the fraction p_j = 1 − (1 − f)^j of the remaining weights (j IMP steps' worth) by magnitude of
θ_L or uniformly at random over the remaining weights, rewind to W_k, retrain (the chain's data
order), and ask whether the result is matching and linearly connected to θ_L. The largest such
p is p*. At j = 1, magnitude pruning reproduces the chain's own level L+1; at j = 2 it is the
"re-pruning without retraining" control of the new-small-weights question (the mask two levels
deeper taken from θ_L's magnitudes instead of θ_{L+1}'s).

The entrypoints ``lmcpipe perturb`` and ``oneshot-mask`` are ``lmcpipe.stages.perturb`` and
``.oneshot_mask``; the probe runs themselves are cohorts.
"""

from __future__ import annotations

import torch

from lmcpipe import masks
from lmcpipe.seeds import generator

METHODS = ("magnitude", "random")


def perturbed_start(rewind: dict[str, torch.Tensor], names: list[str], mask_l: masks.Mask,
                    mask_next: masks.Mask, scale: float, *seed_parts: object
                    ) -> tuple[dict[str, torch.Tensor], float, float]:
    """(state dict of the perturbed start, d_L, noise norm) for scale c = ``scale``."""
    distance = float(torch.sqrt(sum(
        ((rewind[n].double() * (mask_l[n].double() - mask_next[n].double())) ** 2).sum()
        for n in names)))
    gen = generator("perturb", *seed_parts)
    noise = {n: torch.randn(rewind[n].shape, generator=gen, dtype=torch.float64)
             * mask_next[n] for n in names}
    norm = float(torch.sqrt(sum((v ** 2).sum() for v in noise.values())))
    factor = scale * distance / norm if norm > 0 else 0.0
    out = dict(rewind)
    for n in names:
        out[n] = (rewind[n].double() * mask_next[n] + factor * noise[n]).to(rewind[n].dtype)
    return out, distance, scale * distance


def oneshot_fraction(fraction: float, steps: int) -> float:
    """p_j = 1 − (1 − f)^j: one-shot pruning worth j IMP steps of fraction f."""
    return 1 - (1 - fraction) ** steps


def oneshot_mask(theta: dict[str, torch.Tensor], mask: masks.Mask | None, fraction: float,
                 method: str, *seed_parts: object, counting: str = "prunable",
                 frozen: int = 0) -> masks.Mask:
    """Prune ``fraction`` of the weights ``mask`` keeps, by magnitude of ``theta`` (counted as
    the chain counts, ``masks.magnitude_prune``) or at random (as many as magnitude removes,
    uniform over the kept weights of the whole network)."""
    mask = mask if mask is not None else masks.ones_like(theta)
    if method not in METHODS:
        raise ValueError(f"unknown one-shot pruning method '{method}' (use {METHODS})")
    by_magnitude = masks.magnitude_prune(theta, mask, fraction, counting, frozen)
    if method == "magnitude":
        return by_magnitude
    count = sum(int(m.sum()) - int(by_magnitude[n].sum()) for n, m in mask.items())
    removed = masks.random_removal(mask, count, "oneshot-random", *seed_parts)
    return {n: mask[n] & ~removed[n] for n in mask}
