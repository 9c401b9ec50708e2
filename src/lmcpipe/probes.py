"""Stages that probe an IMP chain with extra training runs (paper C, §3.2 and §3.3).

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
"""

from __future__ import annotations

import argparse

import torch

from lmcpipe import atomic, masks
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


# --- CLI -------------------------------------------------------------------------------------
def add_perturb_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rewind", required=True, help="rewind point W_k")
    p.add_argument("--mask", help="m_L (omit at level 0)")
    p.add_argument("--mask-next", required=True, help="m_{L+1}")
    p.add_argument("--scale", type=float, nargs="+", required=True,
                   help="c: noise norm in units of d_L (one start per scale)")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--k", type=int, required=True)
    p.add_argument("--level", type=int, required=True, help="L")
    p.add_argument("--out", nargs="+", required=True, help="one file per scale")


def perturb_main(args: argparse.Namespace) -> None:
    """One perturbed start per scale: one job for a level's probes (the import of torch is
    most of a job's time)."""
    if len(args.scale) != len(args.out):
        raise SystemExit(f"lmcpipe perturb: {len(args.scale)} scales need as many --out files, "
                         f"got {len(args.out)}")
    record = atomic.load_torch(args.rewind)
    names = record["prunable"]
    state = record["state_dict"]
    mask_next = masks.load(args.mask_next)
    mask_l = masks.load(args.mask) or masks.ones_like({n: state[n] for n in names})
    for scale, out in zip(args.scale, args.out, strict=True):
        start, distance, norm = perturbed_start(state, names, mask_l, mask_next, scale,
                                                args.seed, args.k, args.level)
        atomic.save_torch({**record, "state_dict": start, "distance": distance,
                           "noise_norm": norm}, out)
        print(f"c {scale:g}: d_L {distance:.6g}, noise norm {norm:.6g}")


def add_oneshot_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="θ_L")
    p.add_argument("--mask", help="m_L (omit at level 0)")
    p.add_argument("--fraction", type=float, required=True, help="f, per IMP step")
    p.add_argument("--counting", choices=masks.COUNTINGS, default="open_lth",
                   help="which weights the count and the density are over (prune.counting)")
    p.add_argument("--steps", type=int, nargs="+", required=True,
                   help="j: IMP steps pruned in one shot (one per --out)")
    p.add_argument("--method", choices=METHODS, nargs="+", required=True,
                   help="one per --out")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--k", type=int, required=True)
    p.add_argument("--level", type=int, required=True, help="L")
    p.add_argument("--out", nargs="+", required=True)


def oneshot_main(args: argparse.Namespace) -> None:
    """One mask per (method, steps) arm of a level: one job for all of them."""
    if not len(args.steps) == len(args.method) == len(args.out):
        raise SystemExit("lmcpipe oneshot-mask: --steps, --method and --out need one value "
                         f"per arm, got {len(args.steps)}, {len(args.method)}, {len(args.out)}")
    record = atomic.load_torch(args.model)
    theta = {n: record["state_dict"][n] for n in record["prunable"]}
    previous = masks.load(args.mask)
    frozen = masks.frozen_count(record, args.counting)
    for steps, method, out in zip(args.steps, args.method, args.out, strict=True):
        p = oneshot_fraction(args.fraction, steps)
        mask = oneshot_mask(theta, previous, p, method, args.seed, args.k, args.level, steps,
                            counting=args.counting, frozen=frozen)
        masks.save(mask, out, frozen=frozen, level=args.level, steps=steps, fraction=p)
        print(f"{method} one-shot p = {p:.4f}: density {masks.density(mask, frozen):.6f}")
