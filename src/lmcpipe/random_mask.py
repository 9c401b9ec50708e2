"""Stage: the random-pruning baseline's mask (the IMP mask shuffled within each layer)."""

from __future__ import annotations

import argparse

from lmcpipe import masks


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mask", required=True, help="the IMP mask of the same level")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--k", type=int, required=True)
    p.add_argument("--level", type=int, required=True)
    p.add_argument("--out", required=True)


def main(args: argparse.Namespace) -> None:
    imp = masks.load(args.mask)
    shuffled = masks.shuffle_within_layers(imp, args.seed, args.k, args.level)
    masks.save(shuffled, args.out, level=args.level)
    print(f"random mask level {args.level}: density {masks.density(shuffled):.6f}")
