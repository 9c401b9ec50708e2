"""Stage: tidy long-format tables of one experiment, loadable with ``pandas.read_csv``.

Tables (``results/tables/<exp>/``; columns documented in ``results/README.md``):

* ``runs.csv`` — one row per trained copy: its identity, density and final train/test metrics;
* ``paths.csv`` — one row per pair x alpha x split: loss and error along the interpolation path;
* ``instability.csv`` — one row per pair x split: error barrier and whether it is stable;
* ``curves.csv`` — one row per run x eval step x split: the training curves;
* ``summary.csv`` — one row per variant x rewind step x level: means, spreads, matching, stable
  (``lmcpipe.summary.summarise``);
* ``table2.csv`` — paper A's Table 2: accuracy at k = 0 of IMP, random pruning and random
  reinit at the deepest level, with the dense accuracy and matching (also rendered as a figure).
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from lmcpipe import atomic, paths, plan
from lmcpipe.barrier import barrier
from lmcpipe.hparams import Experiment, experiment_from_json

ID = ["experiment", "variant", "seed", "rewind_step", "level", "density", "order"]


def _density(exp: Experiment, run: plan.Run, cache: dict[str, float]) -> float:
    mask = run.mask(exp)
    if mask is None:
        return 1.0
    if mask not in cache:
        cache[mask] = float(atomic.load_torch(mask)["density"])
    return cache[mask]


def tables(exp: Experiment) -> dict[str, pd.DataFrame]:
    """Read every artifact of ``exp`` (as enumerated by ``plan``) into the four tables."""
    densities: dict[str, float] = {}
    runs, curves = [], []
    for run in plan.runs(exp):
        ident = {"experiment": exp.name, **asdict(run), "density": _density(exp, run, densities)}
        ident["rewind_step"] = ident.pop("k")
        metrics = pd.read_csv(Path(run.dir(exp)) / paths.METRICS)
        curves.append(metrics.assign(**ident))
        final = metrics[metrics["step"] == metrics["step"].max()].set_index("split")
        runs.append({**ident, "step": int(final["step"].iloc[0]),
                     **{f"{s}_{m}": final.loc[s, m] for s in ("train", "test")
                        for m in ("loss", "error")}})
    path_frames, inst_frames = [], []
    for pair in plan.pairs(exp):
        ident = {"experiment": exp.name, "variant": pair.variant, "seed": pair.seed,
                 "rewind_step": pair.k, "level": pair.level,
                 "density": _density(exp, pair.copy(1), densities), "order": pair.order,
                 "bn_mode": exp.interp.bn_mode}
        path = pd.read_csv(plan.path_file(exp, pair))
        path_frames.append(path.assign(**ident))
        b = barrier(path).assign(**ident)
        inst_frames.append(b.assign(stable=b["barrier"] < exp.interp.threshold))
    run_cols = [*ID, "copy", "step", "train_loss", "train_error", "test_loss", "test_error"]
    return {
        "runs": pd.DataFrame(runs, columns=run_cols),
        "paths": _frame(path_frames, [*ID, "bn_mode", "alpha", "split", "loss", "error"]),
        "instability": _frame(inst_frames, [*ID, "bn_mode", "split", "barrier", "max_error",
                                            "endpoint_error", "stable"]),
        "curves": _frame(curves, [*ID, "copy", "step", "split", "loss", "error"]),
    }


def _frame(frames: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)[columns]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--experiment", required=True, help="Experiment as JSON")
    p.add_argument("--out-dir", required=True)


def main(args: argparse.Namespace) -> None:
    from lmcpipe.summary import summarise, table2

    exp = experiment_from_json(args.experiment)
    out = Path(args.out_dir)
    frames = tables(exp)
    for name, frame in frames.items():
        atomic.save_frame(frame, out / f"{name}.csv")
    frames["summary"] = summarise(frames["runs"], frames["instability"], exp.interp.threshold)
    atomic.save_frame(frames["summary"], out / "summary.csv")
    frames["table2"] = table2(frames["runs"], frames["instability"], exp.interp.threshold)
    atomic.save_frame(frames["table2"], out / "table2.csv")
    for name, frame in frames.items():
        print(f"{name}.csv: {len(frame)} rows")
