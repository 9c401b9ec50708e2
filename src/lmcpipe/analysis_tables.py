"""Stage: one experiment-level table of a papers B/C analysis, from its per-chain files.

Tables (one row per item, identified by experiment, seed and rewind_step; column meanings in
``results/README.md``): ``successive`` (barrier between the level-L and level-(L+1) IMP
solutions, with matching), ``angles``, ``thresholds``, ``histograms``, ``small_weights`` (from
``lmcpipe rounds``) and ``curvature`` (from ``lmcpipe curvature``).
"""

from __future__ import annotations

import argparse

import pandas as pd

from lmcpipe import atomic, paths, plan
from lmcpipe.hparams import Experiment, experiment_from_json
from lmcpipe.interpolate import barrier

SUCCESSIVE_COLUMNS = ["experiment", "seed", "rewind_step", "level", "density", "density_next",
                      "split", "barrier", "max_error", "endpoint_error", "error", "error_next",
                      "dense_error", "matching", "matching_next", "bn_mode"]


def _densities(exp: Experiment, seed: int, k: int) -> list[float]:
    """Density of levels 0 … N of a chain (read from its mask files)."""
    return [1.0] + [float(atomic.load_torch(m)["density"])
                    for m in plan.chain_masks(exp, seed, k)]


def successive_table(exp: Experiment) -> pd.DataFrame:
    """Barrier between successive IMP levels per chain and split, with matching per paper C:
    a level is matching when its error is at most the same seed's dense error plus
    ``analyses.matching_tolerance`` (judged per split; the figure uses the test split)."""
    rows = []
    tol = exp.analyses.matching_tolerance
    for s, k in plan.chains(exp):
        density = _densities(exp, s, k)
        dense: dict[str, float] = {}
        for lvl in range(exp.prune.levels):
            path = pd.read_csv(paths.successive(exp.name, s, k, lvl))
            ends = path.sort_values("alpha").groupby("split")["error"]
            err_l, err_next = ends.last(), ends.first()  # alpha 1 = θ_L, alpha 0 = θ_{L+1}
            if lvl == 0:
                dense = err_l.to_dict()
            for b in barrier(path).itertuples():
                rows.append({
                    "experiment": exp.name, "seed": s, "rewind_step": k, "level": lvl,
                    "density": density[lvl], "density_next": density[lvl + 1], "split": b.split,
                    "barrier": b.barrier, "max_error": b.max_error,
                    "endpoint_error": b.endpoint_error, "error": err_l[b.split],
                    "error_next": err_next[b.split], "dense_error": dense[b.split],
                    "matching": err_l[b.split] <= dense[b.split] + tol,
                    "matching_next": err_next[b.split] <= dense[b.split] + tol,
                    "bn_mode": exp.interp.bn_mode,
                })
    return pd.DataFrame(rows, columns=SUCCESSIVE_COLUMNS)


def analysis_table(exp: Experiment, table: str) -> pd.DataFrame:
    """The experiment-level table ``table`` (one of ``paths.ANALYSIS_TABLES``)."""
    if table == "successive":
        return successive_table(exp)
    if table not in paths.ANALYSIS_TABLES:
        raise ValueError(f"unknown analysis table '{table}'")
    frames = []
    for s, k in plan.chains(exp):
        files = ([paths.curvature(exp.name, s, k, lvl) for lvl in range(exp.prune.levels + 1)]
                 if table == "curvature" else [paths.rounds_table(exp.name, s, k, table)])
        for f in files:
            frame = pd.read_csv(f)
            frame.insert(0, "rewind_step", k)
            frame.insert(0, "seed", s)
            frame.insert(0, "experiment", exp.name)
            frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--experiment", required=True, help="Experiment as JSON")
    p.add_argument("--table", required=True, choices=sorted(paths.ANALYSIS_TABLES))
    p.add_argument("--out", required=True)


def main(args: argparse.Namespace) -> None:
    frame = analysis_table(experiment_from_json(args.experiment), args.table)
    atomic.save_frame(frame, args.out)
    print(f"wrote {args.out}: {len(frame)} rows")
