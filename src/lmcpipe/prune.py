"""Stage: level n's IMP mask from level n-1's trained weights (global magnitude, nested)."""

from __future__ import annotations

import argparse

from lmcpipe import atomic, masks


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="trained network whose magnitudes are pruned")
    p.add_argument("--mask", help="previous level's mask (omit at level 1)")
    p.add_argument("--fraction", type=float, required=True, help="fraction of remaining removed")
    p.add_argument("--level", type=int, required=True)
    p.add_argument("--out", required=True)


def main(args: argparse.Namespace) -> None:
    previous = masks.load(args.mask)
    state = atomic.load_torch(args.model)
    weights = {n: state["state_dict"][n] for n in state["prunable"]}
    mask = masks.magnitude_prune(weights, previous, args.fraction)
    masks.save(mask, args.out, level=args.level)
    print(f"level {args.level}: density {masks.density(mask):.6f}")
