"""``lmcpipe prune``: level n's IMP mask from level n-1's trained weights (global magnitude,
nested), and the random-pruning baseline's mask from it (the IMP mask shuffled within each layer,
seeded by (s, k, n)) in the same job: a mask job is mostly the import of torch.

The pruning itself is ``lmcpipe.masks`` (``magnitude_prune``, ``shuffle_within_layers``); this
module only reads the model and the previous mask and writes the new ones.
"""

from __future__ import annotations

import argparse

from lmcpipe import atomic, masks


def add_arguments(p: argparse.ArgumentParser) -> None:
    masks.add_pruning_arguments(p, model="trained network whose magnitudes are pruned",
                                mask="previous level's mask (omit at level 1)",
                                fraction="fraction of remaining removed")
    p.add_argument("--level", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--random-out", help="also write the random-pruning mask here")
    p.add_argument("--seed", type=int, help="init seed s (seeds the random-pruning mask)")
    p.add_argument("--k", type=int, help="rewind step k (seeds the random-pruning mask)")


def main(args: argparse.Namespace) -> None:
    previous = masks.load(args.mask)
    state = atomic.load_torch(args.model)
    weights = {n: state["state_dict"][n] for n in state["prunable"]}
    frozen = masks.frozen_count(state, args.counting)
    mask = masks.magnitude_prune(weights, previous, args.fraction, args.counting, frozen)
    masks.save(mask, args.out, frozen=frozen, level=args.level)
    print(f"level {args.level}: density {masks.density(mask, frozen):.6f} ({args.counting}), "
          f"{masks.density(mask):.6f} of the prunable weights")
    if args.random_out:
        if args.seed is None or args.k is None:
            raise SystemExit("lmcpipe prune: --random-out needs --seed and --k")
        shuffled = masks.shuffle_within_layers(mask, args.seed, args.k, args.level)
        masks.save(shuffled, args.random_out, frozen=frozen, level=args.level)
        print(f"random mask level {args.level}: density {masks.density(shuffled, frozen):.6f}")
