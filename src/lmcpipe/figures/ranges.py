"""Paper A Fig 9: the rewind step at which subnetworks become stable and matching, by sparsity.

For each pruning level (x: % weights remaining), the median over replicates of the smallest rewind
step k at which IMP / random-pruned subnetworks are stable (test barrier < threshold) and
matching (accuracy drop < 0.2 points vs. the dense mean), with ranges shaded: I = random pruning
also matching at some k, II = only IMP matching, III = neither (definitions in
``lmcpipe.summary.sparsity_ranges``). Colours and markers of the variants are paper A's
(``lmcpipe.figures.paper_a``), so IMP looks the same here as in Figs 4-7.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, FuncFormatter
from matplotlib.transforms import blended_transform_factory, offset_copy

from lmcpipe import summary
from lmcpipe.figures import style
from lmcpipe.figures.paper_a import COLORS, runs_and_instability

RANGE_COLORS = {"I": "#cfe8cf", "II": "#fde4bd", "III": "#e6e6e6"}
RANGE_LABELS = {"I": "I: random pruning also matching", "II": "II: only IMP matching",
                "III": "III: neither matching"}


def _spans(pct: np.ndarray) -> list[tuple[float, float]]:
    """x extent (log-midpoints to the neighbours) of each level's point, ``pct`` descending."""
    logs = np.log(pct)
    mids = (logs[1:] + logs[:-1]) / 2
    step = (logs[0] - logs[-1]) / max(len(logs) - 1, 1) or np.log(1.25)
    edges = np.concatenate([[logs[0] + step / 2], mids, [logs[-1] - step / 2]])
    return [(float(np.exp(edges[i])), float(np.exp(edges[i + 1]))) for i in range(len(pct))]


def plot_sparsity_ranges(tables_dir: Path, threshold: float) -> Figure:
    """Paper A Fig 9: from which rewind step subnetworks are stable and matching, per sparsity.

    Definitions (``summary.sparsity_ranges``; accuracy tolerance 0.2 points): for each pruned
    level (x = % weights remaining) and each of IMP and random pruning, each replicate (init
    seed, data order) has a *first stable k* — the smallest rewind step k at which its pair's
    test error barrier is < ``threshold`` — and a *first matching k* — the smallest k at which
    its copy-1 test accuracy is less than 0.2 points below the dense mean (level 0, k = 0, over
    all replicates). Plotted is the median over replicates, "never" (at no tested k) counting
    as +inf: "never" markers sit above the tested k's when at least half the replicates never get
    there (the four series are dodged by a few points vertically so coinciding medians stay
    visible). Random-pruning stability is absent without baseline pairs. Shaded ranges, from the
    medians: **I** random pruning is also matching at some k; **II** only IMP is matching at some
    k; **III** neither is. Levels whose range needs a variant that was not run stay unshaded.
    """
    runs, inst = runs_and_instability(tables_dir)
    tol = summary.MATCHING_TOLERANCE
    s = summary.sparsity_ranges(runs, inst, threshold, tol)
    fig, ax = plt.subplots(figsize=(style.WIDTH + 1.0, 3.8))
    title = style.title(runs, "rewind step from which subnetworks are stable / matching")
    if s.empty:
        ax.set(xticks=[], yticks=[], title=title)
        style.note(ax, ["no pruned levels in this experiment (prune.levels: 0): nothing to show"],
              loc="center")
        fig.tight_layout()
        return fig
    pruned = runs[(runs["level"] >= 1) & runs["variant"].isin(summary.RANGE_VARIANTS)]
    ks = sorted(set(pruned["rewind_step"]))
    top = max(max(ks), min([k for k in ks if k > 0], default=1.0))
    never0 = 3.0 * top  # "never" markers above every tested k
    levels = (s.groupby("level").agg(pct=("density", "mean"), range=("range", "first"))
              .assign(pct=lambda d: 100 * d["pct"]).sort_values("pct", ascending=False))
    trans = blended_transform_factory(ax.transData, ax.transAxes)
    shown = []
    prev = None
    for (lo_hi, (rng, pct)) in zip(_spans(levels["pct"].to_numpy()),
                                   zip(levels["range"], levels["pct"], strict=True),
                                   strict=True):
        if isinstance(rng, str):
            ax.axvspan(*lo_hi, color=RANGE_COLORS[rng], lw=0, zorder=0)
            if rng != prev:
                ax.text(pct, 0.98, rng, transform=trans, ha="center", va="top",
                        fontsize=8, weight="bold", color="0.3")
            shown.append(rng)
        prev = rng
    series = [(v, what, col) for v in summary.RANGE_VARIANTS
              for what, col in (("stable", "stable_k"), ("matching", "matching_k"))]
    handles = []
    for i, (v, what, col) in enumerate(series):
        sub = s[s["variant"] == v].assign(pct=lambda d: 100 * d["density"])
        sub = sub.sort_values("pct", ascending=False)
        if sub[col].isna().all():
            continue
        ls = "-" if what == "stable" else "--"
        marker = "o" if what == "stable" else "s"
        # dodge the series by a few points so coinciding medians stay visible
        dodge = offset_copy(ax.transData, fig=fig, y=3.0 * (i - 1.5), units="points")
        finite = sub[np.isfinite(sub[col])]
        ax.plot(finite["pct"], finite[col], color=COLORS[v], ls=ls, marker=marker, ms=5,
                lw=1.5, zorder=3, transform=dodge)
        never = sub[np.isinf(sub[col])]
        ax.plot(never["pct"], np.full(len(never), never0 * 1.35 ** i), ls="none",
                marker=marker, ms=5, mfc="white", mec=COLORS[v], mew=1.3, zorder=3)
        crit = (f"test barrier < {100 * threshold:g}%" if what == "stable"
                else f"drop < {100 * tol:g} points")
        handles.append((Line2D([], [], color=COLORS[v], ls=ls, marker=marker, ms=5),
                        f"{summary.LABELS[v]}: {what} ({crit})"))
    handles.append((Line2D([], [], ls="none", marker="o", ms=5, mfc="white", mec="0.3"),
                    "never (at no tested k)"))
    handles += [(Patch(color=RANGE_COLORS[r]), RANGE_LABELS[r]) for r in ("I", "II", "III")
                if r in shown]
    style.sparsity_axis(ax)
    if len(levels) <= 8:  # a tick per level
        ax.xaxis.set_major_locator(FixedLocator(levels["pct"].to_numpy()))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:.3g}"))
    style.k_axis(ax, ks, "rewind step k (median over replicates)", axis="y")
    lin = min([k for k in ks if k > 0], default=1.0)
    ax.set_ylim(min(ks) - 0.3 * lin, never0 * 1.35 ** len(series) * 1.2)
    ax.axhline(np.sqrt(top * never0), color="0.6", lw=0.8, ls=":", zorder=1)
    ticks = [*ks, never0 * 1.35 ** 1.5] if len(ks) <= 10 else list(ax.get_yticks())
    labels = [f"{k:g}" for k in ks] + ["never"] if len(ks) <= 10 else None
    if labels:
        ax.set_yticks(ticks, labels)
    ax.grid(axis="y", which="minor", visible=False)
    notes = []
    if len(ks) == 1:
        notes.append(f"only k = {ks[0]:g} tested (prune.rewind_steps): 'never' = not at k = "
                     f"{ks[0]:g}")
    rp = s[s["variant"] == "randprune"]
    if rp.empty:
        notes.append("random pruning not run: ranges I/II undecided")
    elif (rp["n_pairs"] == 0).all():
        notes.append("random pruning has no pairs: its stability is not measured")
    style.note(ax, notes)
    ax.set_title(title)
    style.legend(ax, handles, small=True)
    fig.tight_layout()
    return fig
