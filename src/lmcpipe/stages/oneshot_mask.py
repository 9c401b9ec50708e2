"""``lmcpipe oneshot-mask``: the one-shot masks of one level (paper C §3.3, maximal pruning ratio).

One mask per (method, steps) arm, all in one job (the import of torch is most of a job's time):
from θ_L, the fraction p_j = 1 − (1 − f)^j of m_L's weights is removed by magnitude or at random
(``lmcpipe.probes.oneshot_mask``); each mask file records j and p_j for the tables.
"""

from __future__ import annotations

import argparse

from lmcpipe import atomic, masks, probes


def add_arguments(p: argparse.ArgumentParser) -> None:
    masks.add_pruning_arguments(p, model="θ_L", mask="m_L (omit at level 0)",
                                fraction="f, per IMP step")
    p.add_argument("--steps", type=int, nargs="+", required=True,
                   help="j: IMP steps pruned in one shot (one per --out)")
    p.add_argument("--method", choices=probes.METHODS, nargs="+", required=True,
                   help="one per --out")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--k", type=int, required=True)
    p.add_argument("--level", type=int, required=True, help="L")
    p.add_argument("--out", nargs="+", required=True)


def main(args: argparse.Namespace) -> None:
    if not len(args.steps) == len(args.method) == len(args.out):
        raise SystemExit("lmcpipe oneshot-mask: --steps, --method and --out need one value "
                         f"per arm, got {len(args.steps)}, {len(args.method)}, {len(args.out)}")
    record = atomic.load_torch(args.model)
    theta = {n: record["state_dict"][n] for n in record["prunable"]}
    previous = masks.load(args.mask)
    frozen = masks.frozen_count(record, args.counting)
    for steps, method, out in zip(args.steps, args.method, args.out, strict=True):
        p = probes.oneshot_fraction(args.fraction, steps)
        mask = probes.oneshot_mask(theta, previous, p, method, args.seed, args.k, args.level,
                                   steps, counting=args.counting, frozen=frozen)
        masks.save(mask, out, frozen=frozen, level=args.level, steps=steps, fraction=p)
        print(f"{method} one-shot p = {p:.4f}: density {masks.density(mask, frozen):.6f}")
