"""The experiment-level tables of the papers B/C analyses, from their per-chain files.

Tables (one row per item, identified by experiment, seed and rewind_step; column meanings in
``results/README.md``): ``successive`` (barrier between the level-L and level-(L+1) IMP
solutions, with matching), ``angles``, ``thresholds``, ``histograms``, ``small_weights`` (from
``lmcpipe rounds``), ``curvature`` (from ``lmcpipe curvature``), and the probes ``perturb`` and
``oneshot`` (``lmcpipe.probes``).
"""

from __future__ import annotations

import pandas as pd

from lmcpipe import atomic, csvfiles, paths, plan
from lmcpipe.barrier import barrier
from lmcpipe.hparams import Experiment
from lmcpipe.run_tables import read_metrics, read_path

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
            path = read_path(exp, paths.successive(exp.name, s, k, lvl))
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


PERTURB_COLUMNS = ["experiment", "seed", "rewind_step", "level", "density", "scale", "distance",
                   "noise_norm", "split", "barrier", "max_error", "endpoint_error", "error",
                   "error_ref", "dense_error", "matching", "matching_ref", "bn_mode"]
ONESHOT_COLUMNS = ["experiment", "seed", "rewind_step", "level", "density_source", "method",
                   "steps", "fraction", "density", "split", "barrier", "max_error",
                   "endpoint_error", "error", "error_source", "imp_error", "dense_error",
                   "matching", "connected", "bn_mode"]


def final_errors(exp: Experiment, seed: int, k: int, lvl: int) -> dict[str, float]:
    """{split: error} at the last step of the metrics of a chain's level ``lvl`` (the dense
    run from step 0 at level 0, a run from k above)."""
    m = read_metrics(exp, plan.chain_metrics(exp, seed, k, lvl), k if lvl else 0)
    return m[m["step"] == m["step"].max()].set_index("split")["error"].to_dict()


def _probe_rows(exp: Experiment, kind: str):
    """(probe, barrier row, probe error, reference error, dense error, split) per probe/split."""
    for p in plan.probes(exp, kind):
        path = read_path(exp, f"{p.dir(exp)}/{paths.PATH_FILE}")
        ends = path.sort_values("alpha").groupby("split")["error"]
        err_probe, err_ref = ends.last(), ends.first()  # alpha 1 = the probe run
        dense = final_errors(exp, p.seed, p.k, 0)
        for b in barrier(path).itertuples():
            yield p, b, err_probe[b.split], err_ref[b.split], dense[b.split]


def perturb_table(exp: Experiment) -> pd.DataFrame:
    """Paper C §3.2: barrier between the perturbed and the unperturbed level-(L+1) solutions."""
    tol, rows = exp.analyses.matching_tolerance, []
    for p, b, err, ref, dense in _probe_rows(exp, "perturb"):
        start = atomic.load_torch(f"{p.dir(exp)}/{paths.START}")
        rows.append({
            "experiment": exp.name, "seed": p.seed, "rewind_step": p.k, "level": p.level,
            "density": _densities(exp, p.seed, p.k)[p.level + 1], "scale": p.scale,
            "distance": start["distance"], "noise_norm": start["noise_norm"], "split": b.split,
            "barrier": b.barrier, "max_error": b.max_error, "endpoint_error": b.endpoint_error,
            "error": err, "error_ref": ref, "dense_error": dense, "matching": err <= dense + tol,
            "matching_ref": ref <= dense + tol, "bn_mode": exp.interp.bn_mode,
        })
    return pd.DataFrame(rows, columns=PERTURB_COLUMNS)


def oneshot_table(exp: Experiment) -> pd.DataFrame:
    """Paper C §3.3: one-shot pruning from θ_L — matching, and connected to θ_L (barrier below
    ``instability.threshold``); ``imp_error`` is the chain's level L+j error where it exists."""
    tol, thr, rows = exp.analyses.matching_tolerance, exp.interp.threshold, []
    for p, b, err, source, dense in _probe_rows(exp, "oneshot"):
        mask = atomic.load_torch(f"{p.dir(exp)}/{paths.MASK_FILE}")
        deeper = p.level + p.steps
        imp = (final_errors(exp, p.seed, p.k, deeper)[b.split]
               if deeper <= exp.prune.levels else float("nan"))
        rows.append({
            "experiment": exp.name, "seed": p.seed, "rewind_step": p.k, "level": p.level,
            "density_source": _densities(exp, p.seed, p.k)[p.level], "method": p.method,
            "steps": p.steps, "fraction": float(mask["fraction"]),
            "density": float(mask["density"]), "split": b.split, "barrier": b.barrier,
            "max_error": b.max_error, "endpoint_error": b.endpoint_error, "error": err,
            "error_source": source, "imp_error": imp, "dense_error": dense,
            "matching": err <= dense + tol, "connected": b.barrier <= thr,
            "bn_mode": exp.interp.bn_mode,
        })
    return pd.DataFrame(rows, columns=ONESHOT_COLUMNS)


def analysis_table(exp: Experiment, table: str) -> pd.DataFrame:
    """The experiment-level table ``table`` (one of ``paths.ANALYSIS_TABLES``)."""
    if table == "successive":
        return successive_table(exp)
    if table == "perturb":
        return perturb_table(exp)
    if table == "oneshot":
        return oneshot_table(exp)
    if table not in paths.ANALYSIS_TABLES:
        raise ValueError(f"unknown analysis table '{table}'")
    frames = []
    for s, k in plan.chains(exp):
        files = ([paths.curvature(exp.name, s, k, lvl) for lvl in range(exp.prune.levels + 1)]
                 if table == "curvature" else [paths.rounds_table(exp.name, s, k, table)])
        for f in files:
            frame = csvfiles.read(f)
            frame.insert(0, "rewind_step", k)
            frame.insert(0, "seed", s)
            frame.insert(0, "experiment", exp.name)
            frames.append(frame)
    return pd.concat(frames, ignore_index=True)
