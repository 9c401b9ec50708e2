"""lmcpipe's side of each claim: a number (or a yes/no) computed from an experiment's tidy tables.

A measure is a function ``f(tables, **arguments) -> Value`` named by ``kind`` in
``claims.yaml``. It reads only the CSV tables under ``results/tables/<exp>/`` (or a sweep's), so
the report can never disagree with what a researcher loads with pandas. Units: barriers and
accuracies in percent, steps in iterations. A measure whose rows were not produced (no pruning,
no rewinding, no baselines, an analysis switched off) raises ``NotRun`` saying what is missing;
one whose premise does not hold for this experiment raises ``NotComparable``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pandas as pd

from lmcpipe import summary
from lmcpipe.report.values import (
    DENSITY_FACTOR,
    NotComparable,
    NotRun,
    Tables,
    Value,
    acc_text,
    condition_row,
    flag,
    level_at,
    mean_sd,
    pct,
    summary_table,
    test_pairs,
    truth,
)

__all__ = ["MEASURES", "NotComparable", "NotRun", "Tables", "Value"]


def barrier(t: Tables, variant: str = "imp", k: int = 0, level: int | str = 0,
            density: float | None = None) -> Value:
    """Test error barrier (%) of the pairs of (variant, k, level): mean ± sd over pairs."""
    inst = test_pairs(t)
    lvl = level_at(inst[inst["variant"] == variant], level, density) if level else 0
    rows = inst[(inst["variant"] == variant) & (inst["rewind_step"] == k) & (inst["level"] == lvl)]
    if rows.empty:
        raise NotRun(f"no {variant} pairs at k = {k}, level {lvl}")
    v = mean_sd(100 * rows["barrier"], what="pairs")
    return Value(v.mean, f"barrier {v.text} at level {lvl}, k = {k}", v.sd, v.n)


def first_stable_k(t: Tables, variant: str = "imp", level: int | str = 0,
                   density: float | None = None, threshold: float = 2.0) -> Value:
    """Per replicate (seed, order), the first tested k whose pair's test barrier is below
    ``threshold`` %; the mean over replicates (+inf when half or more never get there)."""
    inst = test_pairs(t)
    inst = inst[inst["variant"] == variant]
    lvl = level_at(inst, level, density) if (level or density) else 0
    rows = inst[inst["level"] == lvl]
    ks = sorted(rows["rewind_step"].unique())
    if len(ks) < 2:
        raise NotRun(f"{variant} pairs at level {lvl} at {len(ks)} k only (need a k sweep)")
    firsts = []
    for _, rep in rows.groupby(summary.REPLICATE):
        ok = rep[rep["barrier"] < threshold / 100]["rewind_step"]
        firsts.append(float(ok.min()) if not ok.empty else math.inf)
    never = sum(math.isinf(f) for f in firsts)
    tested = f"tested k: {', '.join(str(int(k)) for k in ks)}"
    if never * 2 >= len(firsts):
        return Value(math.inf, f"not stable at any tested k in {never} of {len(firsts)} "
                     f"replicates ({tested}; level {lvl})", n=len(firsts))
    finite = pd.Series([f for f in firsts if not math.isinf(f)])
    v = mean_sd(finite, unit="iterations")
    extra = f", never in {never}" if never else ""
    return Value(v.mean, f"k = {v.text}{extra} ({tested}; level {lvl})", v.sd, len(firsts))


def dense_accuracy(t: Tables) -> Value:
    runs = summary.dense_runs(t.need("runs", "no trained runs"))
    if runs.empty:
        raise NotRun("no dense runs")
    return mean_sd(100 * (1 - runs["test_error"]))


def accuracy_drop(t: Tables, variant: str = "imp", k: int = 0, level: int | str = "deepest",
                  density: float | None = None) -> Value:
    """Dense mean accuracy minus the subnetwork's (points), its sd over replicates."""
    s = summary_table(t)
    row = condition_row(s, variant, k, level_at(s[s["variant"] == variant], level, density))
    return Value(float(row["accuracy_drop"]),
                 f"{pct(row['accuracy_drop'])} points below dense ({pct(row['test_accuracy_mean'])}"
                 f" vs {pct(row['dense_accuracy_mean'])} %, n = {int(row['n'])})",
                 float(row["test_accuracy_std"]), int(row["n"]))


def control_gap(t: Tables) -> Value:
    """Largest |barrier(restarted) - barrier(T - k)| (points) over the fork steps k > 0."""
    s = summary_table(t)
    restart = s[(s["variant"] == "restart") & s["has_pairs"]]
    if restart.empty:
        raise NotRun("no restarted-schedule pairs (instability.control is off)")
    fork = s[(s["variant"] == "imp") & (s["level"] == 0)].set_index("rewind_step")
    gaps = {int(r.rewind_step): 100 * abs(r.test_barrier_mean
                                          - fork.loc[r.rewind_step, "test_barrier_mean"])
            for r in restart.itertuples() if r.rewind_step in fork.index}
    worst = max(gaps, key=gaps.get)
    return Value(gaps[worst], f"largest gap {pct(gaps[worst])} points at k = {worst} "
                 f"({len(gaps)} fork steps)", n=len(gaps))


def matching_down_to(t: Tables, k: int = 0, density: float = 0.035) -> Value:
    """Whether IMP at rewind step ``k`` is matching at every level down to ``density``."""
    s = summary_table(t)
    imp = s[(s["variant"] == "imp") & (s["rewind_step"] == k) & (s["level"] >= 1)]
    if imp.empty:
        raise NotRun(f"no pruned IMP level at k = {k} (prune.levels, prune.rewind_steps)")
    if imp["density"].min() > density * DENSITY_FACTOR:
        raise NotRun(f"the deepest level is {100 * imp['density'].min():.3g} % of weights, "
                     f"the claim is about {100 * density:.3g} %")
    upto = imp[imp["density"] >= density / DENSITY_FACTOR]
    ok = int(upto["matching"].sum())
    deepest = upto.sort_values("level").iloc[-1]
    return flag(ok == len(upto), f"matching at {ok} of {len(upto)} levels (deepest: "
                f"{acc_text(deepest)})", len(upto))


def stable_and_matching(t: Tables, k: int = 0, level: int | str = "deepest",
                        density: float | None = None, threshold: float = 2.0) -> Value:
    s = summary_table(t)
    row = condition_row(s, "imp", k, level_at(s[s["variant"] == "imp"], level, density))
    if not row["has_pairs"]:
        raise NotRun(f"no IMP pairs at k = {k}, level {int(row['level'])}")
    stable = row["test_barrier_mean"] * 100 < threshold
    return flag(bool(stable and row["matching"]),
                f"{'matching' if row['matching'] else 'not matching'} ({acc_text(row)}), barrier "
                f"{pct(100 * row['test_barrier_mean'])} %", int(row["n"]))


def only_with_rewinding(t: Tables, level: int | str = "deepest",
                        density: float | None = None) -> Value:
    """Not matching at k = 0 and matching at some rewind step k > 0."""
    s = summary_table(t)
    imp = s[s["variant"] == "imp"]
    lvl = level_at(imp, level, density)
    at = imp[imp["level"] == lvl]
    if at["rewind_step"].max() <= 0:
        raise NotRun("IMP was not rewound to any k > 0 (prune.rewind_steps)")
    k0 = condition_row(s, "imp", 0, lvl)
    later = at[(at["rewind_step"] > 0) & at["matching"]]
    first = f"matching from k = {int(later['rewind_step'].min())}" if not later.empty else \
        "not matching at any k > 0"
    return flag(not k0["matching"] and not later.empty,
                f"k = 0: {'matching' if k0['matching'] else 'not matching'} ({acc_text(k0)}); "
                f"{first}", int(k0["n"]))


def baselines_never(t: Tables, column: str = "matching") -> Value:
    """Whether no random-pruning / reinit condition at k > 0 is ``column`` (matching or
    stable)."""
    s = summary_table(t)
    base = s[s["variant"].isin(["randprune", "reinit"]) & (s["rewind_step"] > 0)]
    if column == "stable":
        base = base[base["has_pairs"]]
    if base.empty:
        raise NotRun("no random-pruning or reinit runs (or pairs) at k > 0")
    hits = base[base[column]]
    text = (f"{column} in {len(hits)} of {len(base)} baseline conditions at k > 0"
            + (f" (e.g. {hits.iloc[0]['variant']} at k = {int(hits.iloc[0]['rewind_step'])})"
               if not hits.empty else ""))
    return Value(1.0 if hits.empty else 0.0, text, n=len(base))


def _ranges(t: Tables) -> pd.DataFrame:
    runs = t.need("runs", "no trained runs")
    return summary.sparsity_ranges(runs, test_pairs(t), 0.02)


def stable_matching_coincide(t: Tables) -> Value:
    """At the deepest IMP level: the median first-stable and first-matching rewind steps (paper
    A Fig 9) are equal or adjacent among the tested steps."""
    r = _ranges(t)
    imp = r[(r["variant"] == "imp") & (r["n_pairs"] > 0)]
    if imp.empty:
        raise NotRun("no IMP pairs at pruned levels")
    row = imp.sort_values("level").iloc[-1]
    ks = sorted(test_pairs(t).query("variant == 'imp' and level == @row.level")["rewind_step"]
                .unique())
    if len(ks) < 2:
        raise NotRun("IMP rewound to one k only (prune.rewind_steps)")
    where = {k: i for i, k in enumerate(ks)} | {math.inf: len(ks)}
    a, b = where.get(row["stable_k"]), where.get(row["matching_k"])
    ok = a is not None and b is not None and abs(a - b) <= 1
    return flag(ok, f"stable from k = {row['stable_k']:g}, matching from k = "
                f"{row['matching_k']:g} (level {int(row['level'])}; tested k: "
                f"{', '.join(str(int(k)) for k in ks)})", int(row["n"]))


def ranges(t: Tables, bounds: tuple[float, float] = (0.8, 0.134)) -> Value:
    """Paper A Fig 9's ranges per level against the paper's boundaries (densities)."""
    r = _ranges(t).drop_duplicates("level")
    r = r[r["range"].notna()]
    if r.empty:
        raise NotRun("ranges need IMP and random-pruning runs at rewind steps k > 0")
    upper, lower = bounds
    want = ["I" if d > upper else "II" if d >= lower else "III" for d in r["density"]]
    agree = sum(w == g for w, g in zip(want, r["range"], strict=True))
    cells = ", ".join(f"{100 * d:.3g} %: {g}" for d, g in zip(r["density"], r["range"],
                                                             strict=True))
    return flag(agree == len(r), f"agrees at {agree} of {len(r)} levels ({cells})", len(r))


def matching_if_stable(t: Tables, threshold: float = 2.0) -> Value:
    """Paper B's premise, then its claim: dense pairs stable at k = 0 -> IMP at k = 0 matching
    at the deepest level."""
    dense = barrier(t)
    if dense.mean >= threshold:
        raise NotComparable(f"the premise does not hold here: the dense network is not stable "
                            f"at k = 0 ({dense.text})")
    s = summary_table(t)
    row = condition_row(s, "imp", 0, level_at(s[s["variant"] == "imp"], "deepest", None))
    return flag(bool(row["matching"]), f"{'matching' if row['matching'] else 'not matching'} "
                f"({acc_text(row)}); dense barrier {pct(dense.mean)} %", int(row["n"]))


def imp_minus_reinit(t: Tables, premise: str = "stable", threshold: float = 2.0) -> Value:
    """IMP minus reinit test accuracy (points) at the deepest level at k = 0, where the dense
    network is ``premise`` ("stable" or "unstable") at k = 0 (else ``NotComparable``)."""
    dense = barrier(t)
    if (dense.mean < threshold) != (premise == "stable"):
        raise NotComparable(f"the premise does not hold here: the dense network is not "
                            f"{premise} at k = 0 ({dense.text})")
    s = summary_table(t)
    lvl = level_at(s[s["variant"] == "imp"], "deepest", None)
    imp, reinit = condition_row(s, "imp", 0, lvl), condition_row(s, "reinit", 0, lvl)
    gap = float(imp["test_accuracy_mean"] - reinit["test_accuracy_mean"])
    return Value(gap, f"IMP {pct(imp['test_accuracy_mean'])} ± {pct(imp['test_accuracy_std'])} "
                 f"% vs reinit {pct(reinit['test_accuracy_mean'])} ± "
                 f"{pct(reinit['test_accuracy_std'])} % at {100 * imp['density']:.3g} % "
                 f"(gap {gap:+.2f} points; dense barrier {pct(dense.mean)} %)",
                 float(reinit["test_accuracy_std"]), int(imp["n"]))


def small_weight_overlap(t: Tables) -> Value:
    """Fraction of the weights re-pruning without retraining would remove that IMP removes
    after retraining (mean ± sd over chains and levels), with the chance overlap."""
    sw = t.need("small_weights", "analyses.rounds is off")
    v = mean_sd(sw["overlap"], unit="", what="chain levels")
    return Value(v.mean, f"overlap {v.text.strip()}; chance {sw['chance'].mean():.3f}", v.sd,
                 v.n)


def _by_setting(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    if key not in frame.columns:
        raise NotRun(f"the sweep does not vary {key}")
    return frame


def sweep_gap(t: Tables, key: str = "batch_size") -> Value:
    """IMP minus reinit accuracy (points) at the deepest level, per value of ``key``."""
    runs = _by_setting(t.need("sweep_runs", "no sweep runs"), key)
    deep = runs[(runs["rewind_step"] == 0) & (runs["level"] == runs["level"].max())]
    acc = (100 * (1 - deep["test_error"])).groupby([deep[key], deep["variant"]]).mean().unstack()
    if "reinit" not in acc or "imp" not in acc or len(acc) < 2:
        raise NotRun(f"needs IMP and reinit runs at two or more {key} values")
    gap = (acc["imp"] - acc["reinit"]).sort_index()
    cells = ", ".join(f"{key} {int(b)}: {g:+.2f}" for b, g in gap.items())
    return flag(bool(gap.iloc[-1] > 0 and gap.iloc[-1] > gap.iloc[0]),
                f"IMP - reinit accuracy {cells} points", len(gap))


def sweep_barrier(t: Tables, key: str = "batch_size") -> Value:
    inst = _by_setting(t.need("sweep_instability", "no sweep pairs"), key)
    inst = inst[(inst["split"] == "test") & (inst["variant"] == "imp")
                & (inst["rewind_step"] == 0)]
    deep = inst[inst["level"] == inst["level"].max()]
    bar = (100 * deep.groupby(key)["barrier"].mean()).sort_index()
    if len(bar) < 2:
        raise NotRun(f"needs IMP pairs at two or more {key} values")
    cells = ", ".join(f"{key} {int(b)}: {v:.2f} %" for b, v in bar.items())
    return flag(bool(bar.iloc[-1] < bar.iloc[0]),
                f"barrier at level {int(deep['level'].max())}: {cells}", len(bar))


def successive_iff_matching(t: Tables, threshold: float = 2.0) -> Value:
    """Per (k, level): connected (mean test barrier < ``threshold``) vs both matching (the
    majority over seeds); the claim holds when the two agree at every (k, level)."""
    s = t.need("successive", "analyses.successive is off")
    s = s[s["split"] == "test"]
    s = s.assign(both=truth(s["matching"]) & truth(s["matching_next"]))
    g = s.groupby(["rewind_step", "level"])
    connected = g["barrier"].mean() * 100 < threshold
    matching = g["both"].mean() >= 0.5
    agree = connected == matching
    cells = ", ".join(f"k {k} L{lvl}->{lvl + 1}: {'connected' if c else 'barrier'}/"
                      f"{'matching' if m else 'not matching'}"
                      for (k, lvl), c, m in zip(agree.index, connected, matching, strict=True))
    return flag(bool(agree.all()), f"agree at {int(agree.sum())} of {len(agree)} ({cells})",
                len(agree))


def perturbed_connected(t: Tables, max_scale: float = 1.0, threshold: float = 2.0) -> Value:
    p = t.need("perturb", "analyses.perturb_scales is empty")
    p = p[(p["split"] == "test") & (p["scale"] <= max_scale) & truth(p["matching_ref"])]
    if p.empty:
        raise NotRun(f"no perturbation with c <= {max_scale:g} from a matching solution")
    worst = 100 * p["barrier"].max()
    return flag(bool(worst < threshold), f"largest barrier {pct(worst)} % over {len(p)} probes "
                f"(c <= {max_scale:g}; mean {pct(100 * p['barrier'].mean())} %)", len(p))


def oneshot_magnitude_vs_random(t: Tables) -> Value:
    o = t.need("oneshot", "analyses.oneshot_steps is 0")
    o = o[(o["split"] == "test") & truth(o["matching"])]
    if o.empty:
        raise NotComparable("no one-shot prune of either method kept the solution matching")
    best = o.groupby(["method", "seed", "level"])["fraction"].max().groupby("method").mean()
    mag, rnd = best.get("magnitude", 0.0), best.get("random", 0.0)
    return flag(bool(mag >= rnd), f"largest matching one-shot fraction: magnitude "
                f"{100 * mag:.3g} %, random {100 * rnd:.3g} % (mean over seeds and levels)",
                int(o["seed"].nunique()))


MEASURES: dict[str, Callable[..., Value]] = {f.__name__: f for f in (
    barrier, first_stable_k, dense_accuracy, accuracy_drop, control_gap, matching_down_to,
    stable_and_matching, only_with_rewinding, baselines_never, stable_matching_coincide, ranges,
    matching_if_stable, imp_minus_reinit, small_weight_overlap, sweep_gap, sweep_barrier,
    successive_iff_matching, perturbed_connected,
    oneshot_magnitude_vs_random)}
