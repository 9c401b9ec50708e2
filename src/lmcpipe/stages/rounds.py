"""``lmcpipe rounds``: the per-round tables of one IMP chain (init seed s, rewind step k).

From the rewind point W_k, the chain's solutions θ_0 … θ_N (θ_0 = the dense network, θ_L = level
L's retrained network) and masks m_1 … m_N, the tables of ``lmcpipe.rounds``: angular distances
between rounds with a row for W_k (paper B Fig 4; at k = 0, W_k is the original
initialisation), pruning thresholds (Fig 6), weight histograms (Fig 5), new small weights
(paper C). One job per chain: the angles compare every round with every other, and the
histograms share their bin edges over the levels.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from lmcpipe import atomic, csvfiles, masks, paths, rounds


def _weights(record: dict) -> dict[str, torch.Tensor]:
    return {n: record["state_dict"][n] for n in record["prunable"]}


def tables_from_files(rewind: str, models: list[str], mask_files: list[str], fraction: float,
                      bins: int, counting: str = "prunable") -> dict:
    """``rounds.chain_tables`` of one chain from its artifact files (``models[L]`` = θ_L,
    ``mask_files[L-1]`` = m_L); level 0's mask keeps every weight."""
    records = [atomic.load_torch(p) for p in models]
    solutions = {lvl: _weights(r) for lvl, r in enumerate(records)}
    level_masks = {0: masks.ones_like(solutions[0])}
    level_masks |= {lvl: masks.load(p) for lvl, p in enumerate(mask_files, start=1)}
    return rounds.chain_tables(_weights(atomic.load_torch(rewind)), solutions, level_masks,
                               fraction, bins, counting, masks.frozen_count(records[0], counting))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rewind", required=True, help="rewind point W_k (the chain's start)")
    p.add_argument("--models", nargs="+", required=True, help="θ_0 … θ_N in level order")
    p.add_argument("--masks", nargs="*", default=[], help="m_1 … m_N in level order")
    p.add_argument("--fraction", type=float, required=True, help="fraction pruned per level")
    p.add_argument("--counting", choices=masks.COUNTINGS, default="open_lth",
                   help="which weights the count and the density are over (prune.counting)")
    p.add_argument("--bins", type=int, default=60)
    p.add_argument("--out-dir", required=True)


def main(args: argparse.Namespace) -> None:
    if len(args.masks) != len(args.models) - 1:
        raise SystemExit(f"lmcpipe rounds: {len(args.models)} models need "
                         f"{len(args.models) - 1} masks, got {len(args.masks)}")
    tables = tables_from_files(args.rewind, args.models, args.masks, args.fraction, args.bins,
                               args.counting)
    for name, frame in tables.items():
        csvfiles.save_frame(frame, str(Path(args.out_dir) / paths.table_file(name)))
    print(f"wrote {', '.join(tables)} to {args.out_dir}")
