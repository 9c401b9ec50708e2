"""Summarise a recipe grid: the dense network's instability against the fork step k.

A grid is a config file whose experiments are its points (``grids/unstable_recipe.yaml``). For
each point this prints the test-error barrier (%) of the dense pairs forked at each k, mean ± sd
over the (init, order) pairs, and the end-of-training test error (%) of the copies forked at
k = 0, read from the point's tidy tables (the barrier as ``lmcpipe.summary`` defines it).
``--targets`` prints the tables to ask Snakemake for. ``--levels`` summarises the pruned
subnetworks instead (``grids/rewind_recipe.yaml``): per point, variant (IMP, random pruning,
random reinit), rewind step k and level, the weights remaining, the test barrier (%), the test
accuracy and its drop from dense (points), and whether the subnetworks are stable and matching,
as ``lmcpipe.summary`` decides.

    python scripts/grid_summary.py grids/unstable_recipe.yaml --targets
    python scripts/grid_summary.py grids/unstable_recipe.yaml
    python scripts/grid_summary.py grids/rewind_recipe.yaml --levels
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
import yaml

from lmcpipe import config, csvfiles, paths

TABLES = ("summary", "runs")


def summarise(names: list[str], root: Path) -> pd.DataFrame:
    """One row per (point, k): barrier mean/sd/n (%) and, at k = 0, the test error (%)."""
    rows = []
    for name in names:
        summary = csvfiles.read(root / paths.table(name, "summary"))
        runs = csvfiles.read(root / paths.table(name, "runs"))
        dense = summary[(summary["variant"] == "imp") & (summary["level"] == 0)]
        start = runs[(runs["variant"] == "imp") & (runs["level"] == 0) & (runs["rewind_step"] == 0)]
        for row in dense.sort_values("rewind_step").itertuples():
            rows.append({"point": name, "k": int(row.rewind_step),
                         "barrier_mean": 100 * row.test_barrier_mean,
                         "barrier_sd": 100 * row.test_barrier_std, "n_pairs": int(row.n_pairs),
                         "test_error_k0": 100 * start["test_error"].mean(),
                         "at_chance": bool(start["at_chance"].any())})
    return pd.DataFrame(rows)


def summarise_levels(names: list[str], root: Path) -> pd.DataFrame:
    """One row per (point, variant, k, level >= 1): density (%), test barrier mean/sd (%),
    test accuracy (%), its drop from dense (points), stable and matching."""
    rows = []
    for name in names:
        summary = csvfiles.read(root / paths.table(name, "summary"))
        pruned = summary[summary["level"] >= 1].sort_values(["variant", "rewind_step", "level"])
        for row in pruned.itertuples():
            rows.append({"point": name, "variant": row.variant, "k": int(row.rewind_step),
                         "level": int(row.level), "density": 100 * row.density,
                         "barrier_mean": 100 * row.test_barrier_mean,
                         "barrier_sd": 100 * row.test_barrier_std, "n_pairs": int(row.n_pairs),
                         "accuracy": row.test_accuracy_mean, "drop": row.accuracy_drop,
                         "stable": bool(row.stable), "matching": bool(row.matching)})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("grid", type=Path, help="the grid's config file")
    parser.add_argument("--root", type=Path, default=Path("."),
                        help="the working directory Snakemake ran in (default: here)")
    parser.add_argument("--targets", action="store_true",
                        help="print the tables to build instead of summarising them")
    parser.add_argument("--levels", action="store_true",
                        help="summarise the pruned subnetworks (IMP levels, baselines, rewinds)")
    parser.add_argument("--points", nargs="+", metavar="NAME",
                        help="only these points of the grid (default: all of them)")
    args = parser.parse_args(argv)
    try:
        names = list(config.validate(yaml.safe_load(args.grid.read_text())))
    except config.ConfigError as e:
        print(f"grid_summary: {args.grid}: {e}", file=sys.stderr)
        return 1
    unknown = sorted(set(args.points or ()) - set(names))
    if unknown:
        print(f"grid_summary: {args.grid} has no point {', '.join(unknown)}", file=sys.stderr)
        return 1
    names = [n for n in names if not args.points or n in args.points]
    if args.targets:
        print(" ".join(paths.table(n, t) for n in names for t in TABLES))
        return 0
    missing = [n for n in names for t in TABLES if not (args.root / paths.table(n, t)).exists()]
    if missing:
        print(f"grid_summary: no tables yet for {', '.join(sorted(set(missing)))}; build them "
              "with the --targets list first", file=sys.stderr)
        return 1
    try:
        table = (summarise_levels if args.levels else summarise)(names, args.root)
    except csvfiles.DamagedTable as e:
        print(f"grid_summary: {e}", file=sys.stderr)
        return 1
    with pd.option_context("display.width", 200, "display.max_rows", None):
        print(table.round(2).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
