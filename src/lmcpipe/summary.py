"""Per-condition summaries of an experiment's tidy tables: accuracy, instability, matching.

``summarise`` condenses ``runs.csv`` and ``instability.csv`` into one row per
(variant, rewind step k, level) — the numbers behind paper A's Table 2 and Figs 6/7 —, and
``sparsity_ranges`` computes paper A's Fig 9: the rewind step from which subnetworks become stable
and matching, per level, and the sparsity ranges I/II/III. Both are pure functions of the tables
so the figures, the aggregate stage and the tests share one definition of each quantity.

Units: accuracies and accuracy drops are in percent (points), ``100 * (1 - test_error)``;
barriers, ``threshold`` and ``matching_tolerance`` are fractions as in ``instability.csv``
(0.02 = 2 %, 0.002 = 0.2 points).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

KEYS = ["variant", "rewind_step", "level"]
REPLICATE = ["seed", "order"]
MATCHING_TOLERANCE = 0.002  # paper A Fig 9: accuracy drop < 0.2 points
RANGE_VARIANTS = ("imp", "randprune")


def _experiment_keys(*frames: pd.DataFrame) -> list[str]:
    return ["experiment"] if all("experiment" in f.columns for f in frames) else []


def _copy1_accuracy(runs: pd.DataFrame) -> pd.DataFrame:
    """Copy-1 runs (one per replicate: init seed x data order) with ``acc`` in percent."""
    out = runs[runs["copy"] == 1]
    return out.assign(acc=100 * (1 - out["test_error"]))


def dense_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The dense network's runs (variant imp, level 0, k 0, copy 1: one per replicate): the
    reference every accuracy is compared with, here and in the figures."""
    return runs[(runs["variant"] == "imp") & (runs["level"] == 0) & (runs["rewind_step"] == 0)
                & (runs["copy"] == 1)]


def _dense(acc: pd.DataFrame, exp: list[str]) -> pd.DataFrame:
    """Mean and std of the dense accuracy (variant imp, level 0, k 0, copy 1) per experiment."""
    dense = dense_runs(acc)
    if exp:
        g = dense.groupby(exp)["acc"]
        return pd.DataFrame({"dense_accuracy_mean": g.mean(),
                             "dense_accuracy_std": g.std(ddof=1)}).reset_index()
    return pd.DataFrame({"dense_accuracy_mean": [dense["acc"].mean()],
                         "dense_accuracy_std": [dense["acc"].std(ddof=1)]})


def _attach(frame: pd.DataFrame, dense: pd.DataFrame, exp: list[str]) -> pd.DataFrame:
    if exp:
        return frame.merge(dense, on=exp, how="left")
    return frame.assign(**dense.iloc[0].to_dict())


def summarise(runs: pd.DataFrame, instability: pd.DataFrame, threshold: float,
              matching_tolerance: float | None = None) -> pd.DataFrame:
    """One row per (variant, rewind_step, level) (and experiment) of ``runs`` / ``instability``.

    Columns and definitions:

    * ``density``: mean fraction of prunable weights kept (identical across replicates).
    * ``n``: replicates, i.e. copy-1 runs (init seed x data order); ``n_pairs``: pairs in
      ``instability`` (test split), 0 where the condition was not paired.
    * ``test_accuracy_mean`` / ``_std``: mean and sample std (ddof 1) over replicates of the
      final test accuracy ``100 * (1 - test_error)`` of copy 1 (copy 2 is a second sample of the
      same replicate's pair and is not counted, so every condition has one value per replicate).
    * ``dense_accuracy_mean`` / ``_std``: the same over the dense runs (variant ``imp``, level 0,
      k 0, copy 1) — the reference every row is compared with.
    * ``accuracy_drop``: ``dense_accuracy_mean - test_accuracy_mean`` (points; < 0 is better).
    * ``matching``: without ``matching_tolerance`` (paper A's main tables), ``test_accuracy_mean
      >= dense_accuracy_mean - dense_accuracy_std`` (a single dense run counts as std 0); with
      it (a fraction, e.g. 0.002 for paper A Fig 9's 0.2 points), ``accuracy_drop <
      100 * matching_tolerance``. NA where the accuracy or the dense reference is missing.
    * ``test_barrier_mean`` / ``_std``, ``train_barrier_mean`` / ``_std``: mean and sample std
      over pairs of the error barrier (a fraction, as in ``instability.csv``); NaN without pairs.
    * ``stable``: ``test_barrier_mean < threshold`` (the mean over pairs, not every pair); NA
      without pairs.

    ``matching`` and ``stable`` are pandas nullable booleans (NA writes as an empty CSV cell).
    """
    exp = _experiment_keys(runs, instability)
    keys = [*exp, *KEYS]
    acc = _copy1_accuracy(runs)
    g = acc.groupby(keys)
    out = pd.DataFrame({
        "n": g.size(),
        "test_accuracy_mean": g["acc"].mean(),
        "test_accuracy_std": g["acc"].std(ddof=1),
    }).reset_index()
    test = instability[instability["split"] == "test"].groupby(keys)["barrier"]
    train = instability[instability["split"] == "train"].groupby(keys)["barrier"]
    bars = pd.DataFrame({
        "n_pairs": test.size(),
        "test_barrier_mean": test.mean(), "test_barrier_std": test.std(ddof=1),
        "train_barrier_mean": train.mean(), "train_barrier_std": train.std(ddof=1),
    }).reset_index()
    out = out.merge(bars, on=keys, how="outer")
    both = pd.concat([runs[[*keys, "density"]], instability[[*keys, "density"]]])
    out = out.merge(both.groupby(keys)["density"].mean().reset_index(), on=keys, how="left")
    out["n"] = out["n"].fillna(0).astype(int)
    out["n_pairs"] = out["n_pairs"].fillna(0).astype(int)
    out = _attach(out, _dense(acc, exp), exp)
    out["accuracy_drop"] = out["dense_accuracy_mean"] - out["test_accuracy_mean"]
    if matching_tolerance is None:
        bar = out["dense_accuracy_mean"] - out["dense_accuracy_std"].fillna(0.0)
        matching = out["test_accuracy_mean"] >= bar
    else:
        matching = out["accuracy_drop"] < 100 * matching_tolerance
    known = out["test_accuracy_mean"].notna() & out["dense_accuracy_mean"].notna()
    out["matching"] = matching.astype("boolean").where(known, pd.NA)
    out["stable"] = (out["test_barrier_mean"] < threshold).astype("boolean").where(
        out["test_barrier_mean"].notna(), pd.NA)
    columns = [*keys, "density", "n", "test_accuracy_mean", "test_accuracy_std",
               "dense_accuracy_mean", "dense_accuracy_std", "accuracy_drop", "matching",
               "n_pairs", "test_barrier_mean", "test_barrier_std", "train_barrier_mean",
               "train_barrier_std", "stable"]
    order = {"imp": 0, "randprune": 1, "reinit": 2, "restart": 3}
    out = out.sort_values(keys, key=lambda s: s.map(order).fillna(9) if s.name == "variant"
                          else s)
    return out[columns].reset_index(drop=True)


def _first_k(frame: pd.DataFrame, ok: str) -> pd.Series:
    """Per replicate, the smallest k whose row has ``ok`` true; +inf when no k has."""
    hit = frame[frame[ok]].groupby(REPLICATE)["rewind_step"].min()
    every = frame.groupby(REPLICATE)["rewind_step"].min()
    return hit.reindex(every.index).fillna(np.inf)


def _median(values: pd.Series) -> float:
    """Median with +inf ('never') counted: +inf when at least half the values are +inf."""
    return float(np.median(values.to_numpy(dtype=float))) if len(values) else np.nan


def sparsity_ranges(runs: pd.DataFrame, instability: pd.DataFrame, threshold: float,
                    matching_tolerance: float = MATCHING_TOLERANCE,
                    variants: tuple[str, ...] = RANGE_VARIANTS) -> pd.DataFrame:
    """Paper A Fig 9: per pruned level, when subnetworks become stable / matching, and the ranges.

    For each variant in ``variants`` (IMP and random pruning) and each level >= 1:

    * a replicate is one (init seed, data order); at each rewind step k it is **stable** when
      its pair's test barrier is < ``threshold``, and **matching** when the accuracy drop of its
      copy-1 run against the dense mean (variant imp, level 0, k 0, copy 1, over all replicates),
      ``dense_mean - 100 * (1 - test_error)``, is < ``100 * matching_tolerance`` points
      (default 0.2 points);
    * its **first stable k** / **first matching k** is the smallest rewind step k at which it is
      stable / matching (whether or not it stays so at larger k), +inf when at no tested k;
    * ``stable_k`` / ``matching_k`` are the medians of these over replicates (numpy's median,
      the mean of the two middle values for an even count); +inf ("never") counts as the
      largest value, so the median is +inf when at least half of the replicates (more than half,
      for an odd count) never get there. ``stable_k`` is NaN when the variant has no pairs at
      the level (``baseline_pairs: false``), both are NaN when it has no runs there.

    ``range`` (one value per level, repeated on its rows) classifies the level by the medians:
    **I** when random pruning is matching at some k (finite ``matching_k``) — random pruning is
    then *also* matching, as IMP is in practice; **II** when IMP is matching at some k and random
    pruning at none; **III** when neither is. It is NA when this needs a variant that was not run
    at the level. Columns: [experiment,] variant, level, density, n (replicates with runs),
    n_pairs (replicates with pairs), stable_k, matching_k, range; ``density`` is a fraction.
    """
    exp = _experiment_keys(runs, instability)
    acc = _copy1_accuracy(runs)
    dense = _dense(acc, exp)
    acc = _attach(acc, dense, exp)
    acc = acc.assign(matching=(acc["dense_accuracy_mean"] - acc["acc"])
                     < 100 * matching_tolerance)
    inst = instability[instability["split"] == "test"]
    inst = inst.assign(stable=inst["barrier"] < threshold)
    rows = []
    groups = acc[acc["variant"].isin(variants) & (acc["level"] >= 1)].groupby([*exp, "variant",
                                                                                "level"])
    for key, frame in groups:
        key = dict(zip([*exp, "variant", "level"], key, strict=True))
        sel = (inst["variant"] == key["variant"]) & (inst["level"] == key["level"])
        if exp:
            sel &= inst["experiment"] == key["experiment"]
        pairs = inst[sel]
        stable = _first_k(pairs, "stable") if not pairs.empty else pd.Series(dtype=float)
        rows.append({**key, "density": frame["density"].mean(),
                     "n": frame.groupby(REPLICATE).ngroups,
                     "n_pairs": pairs.groupby(REPLICATE).ngroups,
                     "stable_k": _median(stable),
                     "matching_k": _median(_first_k(frame, "matching"))})
    columns = [*exp, "variant", "level", "density", "n", "n_pairs", "stable_k", "matching_k"]
    out = pd.DataFrame(rows, columns=columns)
    out["range"] = pd.Series(None, index=out.index, dtype="object")
    for _, frame in out.groupby([*exp, "level"]):
        m = dict(zip(frame["variant"], np.isfinite(frame["matching_k"]), strict=True))
        out.loc[frame.index, "range"] = _classify(m.get("imp"), m.get("randprune"))
    return out.sort_values(["level", "variant"]).reset_index(drop=True)


def _classify(imp: bool | None, randprune: bool | None) -> str | None:
    """Range of a level from whether IMP / random pruning match at some k (None: not run)."""
    if randprune:
        return "I"
    if randprune is None:
        return None
    if imp is None:
        return None
    return "II" if imp else "III"


LABELS = {"imp": "IMP", "randprune": "random pruning", "reinit": "random reinit"}


def table2(runs: pd.DataFrame, instability: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Paper A Table 2: accuracy at k = 0 of the deepest IMP level and its baselines vs dense.

    Rows: the dense network (``subnetwork`` "dense", variant imp, level 0), then IMP, random
    pruning and random reinit at the deepest IMP level at k = 0 (those that were run). Columns
    come from ``summarise`` (accuracies in %, mean ± sd over copy-1 replicates; ``matching`` =
    mean accuracy >= dense mean - dense sd; ``stable`` = mean test barrier < ``threshold``), plus
    ``density_pct`` (% weights remaining).
    """
    s = summarise(runs, instability, threshold)
    s = s[s["rewind_step"] == 0]
    k0 = runs[(runs["rewind_step"] == 0) & (runs["variant"] == "imp")]
    level = int(k0["level"].max()) if not k0.empty else 0
    rows = [s[(s["variant"] == "imp") & (s["level"] == 0)].assign(subnetwork="dense")]
    if level > 0:
        sub = s[(s["level"] == level) & s["variant"].isin(list(LABELS))]
        rows.append(sub.assign(subnetwork=sub["variant"].map(LABELS)))
    out = pd.concat(rows, ignore_index=True)
    out = out.assign(density_pct=100 * out["density"]).rename(
        columns={"test_accuracy_mean": "accuracy_mean", "test_accuracy_std": "accuracy_std"})
    cols = ["experiment", "subnetwork", "variant", "rewind_step", "level", "density_pct", "n",
            "accuracy_mean", "accuracy_std", "dense_accuracy_mean", "dense_accuracy_std",
            "accuracy_drop", "matching", "n_pairs", "test_barrier_mean", "test_barrier_std",
            "stable"]
    return out[[c for c in cols if c in out.columns]]
