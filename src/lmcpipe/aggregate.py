"""Tidy long-format tables of one experiment, loadable with ``pandas.read_csv``.

Tables (``results/tables/<exp>/``; columns documented in ``results/README.md``):

* ``runs.csv`` — one row per trained copy: its identity, density and final train/test metrics,
  and ``at_chance`` when it ended no better than guessing (``chance_error``);
* ``paths.csv`` — one row per pair x alpha x split: loss and error along the interpolation path;
* ``instability.csv`` — one row per pair x split: error barrier and whether it is stable;
* ``curves.csv`` — one row per run x eval step x split: the training curves;
* ``summary.csv`` — one row per variant x rewind step x level: means, spreads, matching, stable
  (``lmcpipe.summary.summarise``);
* ``table2.csv`` — paper A's Table 2: accuracy at k = 0 of IMP, random pruning and random
  reinit at the deepest level, with the dense accuracy and matching (also rendered as a figure);
* ``provenance.csv`` — one row per trained copy and per pair that has a provenance record
  (``lmcpipe.provenance``; runs trained before records existed have none and are left out):
  stage, wall time, steps and speed, device, library versions, commit, host and the dataset
  folder read. What a grid costs on which machine, and which code, device and data copy
  produced each number.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pandas as pd

from lmcpipe import atomic, paths, plan, provenance
from lmcpipe.barrier import barrier
from lmcpipe.hparams import DENSITY_OF, Experiment
from lmcpipe.run_tables import read_metrics, read_path
from lmcpipe.summary import KEYS

ID = ["experiment", "variant", "seed", "rewind_step", "level", "density", "density_of", "order"]
PROVENANCE_ID = ["experiment", "variant", "seed", "rewind_step", "level", "order", "copy"]
PROVENANCE = ["stage", "wall_s", "job_wall_s", "steps", "steps_per_s", "device", "device_name",
              "torch", "cuda", "lmcpipe", "commit", "host", "data_source", "data_note"]
CHANCE_FACTOR = 1.5


def chance_error(classes: int) -> float:
    """Test error from which a run counts as at chance: accuracy below 1.5x that of guessing
    (85 % error with 10 classes). A diverged or collapsed run lands there, and its pairs then
    look stable (two constant predictors have no barrier), so tables flag it."""
    return 1 - CHANCE_FACTOR / classes


def _density(exp: Experiment, run: plan.Run, cache: dict[str, float]) -> float:
    mask = run.mask(exp)
    if mask is None:
        return 1.0
    if mask not in cache:
        cache[mask] = float(atomic.load_torch(mask)["density"])
    return cache[mask]


def tables(exp: Experiment, classes: int = 10) -> dict[str, pd.DataFrame]:
    """Read every artifact of ``exp`` (as enumerated by ``plan``) into the tidy tables: runs,
    paths, instability, curves and provenance (``summary`` and ``table2`` derive from them).

    ``density`` is over the set ``density_of`` names (``hparams.DENSITY_OF``: all conv/linear
    weights with open_lth counting, the prunable ones otherwise); ``classes`` sets the
    ``at_chance`` flag of runs and of pairs with a copy at chance."""
    densities: dict[str, float] = {}
    density_of = DENSITY_OF[exp.prune.counting]
    runs, curves, chance = [], [], {}
    for run in plan.runs(exp):
        ident = {"experiment": exp.name, **asdict(run), "density": _density(exp, run, densities),
                 "density_of": density_of}
        ident["rewind_step"] = ident.pop("k")
        metrics = read_metrics(exp, f"{run.dir(exp)}/{paths.METRICS}", plan.start_step(run))
        curves.append(metrics.assign(**ident))
        final = metrics[metrics["step"] == metrics["step"].max()].set_index("split")
        chance[run.dir(exp)] = bool(final.loc["test", "error"] >= chance_error(classes))
        runs.append({**ident, "step": int(final["step"].iloc[0]),
                     **{f"{s}_{m}": final.loc[s, m] for s in ("train", "test")
                        for m in ("loss", "error")}, "at_chance": chance[run.dir(exp)]})
    path_frames, inst_frames = [], []
    for pair in plan.pairs(exp):
        ident = {"experiment": exp.name, "variant": pair.variant, "seed": pair.seed,
                 "rewind_step": pair.k, "level": pair.level,
                 "density": _density(exp, pair.copy(1), densities), "density_of": density_of,
                 "order": pair.order, "bn_mode": exp.interp.bn_mode,
                 "at_chance": any(chance[pair.copy(c).dir(exp)] for c in (1, 2))}
        path = read_path(exp, plan.path_file(exp, pair))
        path_frames.append(path.assign(**ident))
        b = barrier(path).assign(**ident)
        inst_frames.append(b.assign(stable=b["barrier"] < exp.interp.threshold))
    run_cols = [*ID, "copy", "step", "train_loss", "train_error", "test_loss", "test_error",
                "at_chance"]
    return {
        "runs": pd.DataFrame(runs, columns=run_cols),
        "paths": _frame(path_frames, [*ID, "bn_mode", "alpha", "split", "loss", "error"]),
        "instability": _frame(inst_frames, [*ID, "bn_mode", "split", "barrier", "max_error",
                                            "endpoint_error", "stable", "at_chance"]),
        "curves": _frame(curves, [*ID, "copy", "step", "split", "loss", "error"]),
        "provenance": provenance_table(exp),
    }


def provenance_table(exp: Experiment) -> pd.DataFrame:
    """One row per run (its model.pt's record) and per pair (its path.csv's; ``copy`` NA) of
    ``exp`` that has a provenance record; those without one (trained before records existed)
    are left out rather than guessed."""
    items = [(run, str(Path(run.dir(exp)) / paths.MODEL), run.copy) for run in plan.runs(exp)]
    items += [(pair, plan.path_file(exp, pair), None) for pair in plan.pairs(exp)]
    rows = []
    for item, artifact, copy in items:
        rec = provenance.read_record(artifact)
        if rec is not None:
            rows.append({"experiment": exp.name, "variant": item.variant, "seed": item.seed,
                         "rewind_step": item.k, "level": item.level, "order": item.order,
                         "copy": copy, **{c: rec.get(c) for c in PROVENANCE}})
    frame = pd.DataFrame(rows, columns=[*PROVENANCE_ID, *PROVENANCE])
    return frame.astype({"copy": "Int64", "steps": "Int64"})  # integers with NA, not 1.0


def _frame(frames: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)[columns]


def with_flags(frame: pd.DataFrame, runs: pd.DataFrame, exp: Experiment) -> pd.DataFrame:
    """``frame`` (one row per variant, k, level) with ``density_of`` and ``n_at_chance``: how
    many of its copy-1 runs ended at chance error."""
    copy1 = runs[runs["copy"] == 1]
    counts = (copy1.assign(n_at_chance=copy1["at_chance"].astype(int))
              .groupby(KEYS, as_index=False)["n_at_chance"].sum())
    out = frame.merge(counts, on=KEYS, how="left")
    out["n_at_chance"] = out["n_at_chance"].fillna(0).astype(int)
    return out.assign(density_of=DENSITY_OF[exp.prune.counting])
