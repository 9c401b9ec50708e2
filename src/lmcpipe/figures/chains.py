"""Figures of papers B and C: what happens between successive IMP rounds of one chain.

* ``successive`` (paper C §3.1, paper B Fig 8): error barrier between the level-L and level-(L+1)
  IMP solutions vs % weights remaining, train and test, with matching of level L+1 marked;
* ``angles`` (paper B Fig 4): angular distance between the solutions of IMP rounds (and the
  rewind point W_k), one heatmap per rewind step k;
* ``thresholds`` (paper B Fig 6): the magnitude cut-off |w| of each pruning round;
* ``histograms`` (paper B Fig 5): weight histograms of the IMP levels at the smallest k;
* ``small_weights`` (paper C): does retraining create new small weights? Overlap of the
  smallest-magnitude sets of θ_L and θ_{L+1}, against chance;
* ``curvature`` (paper C §3.3): top Hessian eigenvalue, Hessian trace and the quadratic term
  ½ΔᵀHΔ of the next magnitude vs random pruning step, at each level's solution.

Curves are one per rewind step k, the mean over init seeds with a band (or bars, for a single
point) of one standard deviation; the per-k pieces (``k_colors``, ``k_lines``, ``k_handles``,
``pct``) are public because the probe and sweep figures draw their chains the same way. A table
whose needed rows are empty raises a ``ValueError`` naming it, so an empty plot is never saved.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from lmcpipe.figures import style

KEY = ["experiment", "seed", "rewind_step", "level"]
K_TITLE = "rewind step k (iterations)"
MAX_HIST_LEVELS = 6
MAX_ANNOTATED = 12


# --- one curve per rewind step k ------------------------------------------------------------
def pct(df: pd.DataFrame, density: str = "density") -> pd.Series:
    """% weights remaining, one x per (k, level): replicates differ only by rounding."""
    return 100 * df.groupby(["rewind_step", "level"])[density].transform("mean")


def k_colors(df: pd.DataFrame) -> dict[int, str]:
    """One colour per rewind step k, the same in every panel."""
    return {int(k): f"C{i}" for i, k in enumerate(sorted(df["rewind_step"].unique()))}


def k_lines(ax: plt.Axes, df: pd.DataFrame, y: str, colors: dict[int, str], x: str = "pct",
            ls: str = "-", marker: str | None = "o") -> None:
    """One mean ± sd curve over seeds per rewind step k (no legend: see ``k_handles``)."""
    for k, color in colors.items():
        style.mean_sd_curve(ax, df[df["rewind_step"] == k], x, y, color, ls=ls, marker=marker)


def k_handles(colors: dict[int, str], marker: str | None = "o") -> list[style.Entry]:
    """Legend entries of ``k_lines``' curves, "k = <step>"."""
    return [(Line2D([], [], color=c, marker=marker, markersize=4), f"k = {k}")
            for k, c in colors.items()]


def spread(levels: list[int], most: int = MAX_HIST_LEVELS) -> list[int]:
    """At most ``most`` levels evenly spaced over ``levels`` (first and last kept)."""
    if len(levels) <= most:
        return levels
    idx = np.unique(np.round(np.linspace(0, len(levels) - 1, most)).astype(int))
    return [levels[i] for i in idx]


# --- successive levels ----------------------------------------------------------------------
def plot_successive(tables_dir: Path, threshold: float) -> Figure:
    """Paper C §3.1 / paper B Fig 8: barrier between the IMP solutions of levels L and L+1.

    Per split (train, test): the error barrier (%) on the linear path θ_L -> θ_{L+1} vs % weights
    remaining of level L+1, one curve per rewind step k (mean ± sd over seeds), the stability
    threshold dashed. A filled circle marks a point where level L+1 is matching the dense
    network (``matching_next`` true for at least half of the seeds), an x where it is not.
    """
    df, path = style.load_table(tables_dir, "successive", [*KEY, "density_next", "split",
                                                           "barrier", "matching_next"])
    df = df[df["split"].isin(style.SPLITS)]
    style.require_rows(df, path, "rows of split train or test")
    df = df.assign(pct=pct(df, "density_next"), b=100 * df["barrier"],
                   match=style.as_bool(df["matching_next"]).astype(float))
    splits = [s for s in style.SPLITS if s in set(df["split"])]
    colors = k_colors(df)
    fig, axes = plt.subplots(1, len(splits), figsize=(style.WIDTH + 1.5, 3.5), sharey=True,
                             squeeze=False)
    for ax, split in zip(axes[0], splits, strict=True):
        sub = df[df["split"] == split]
        k_lines(ax, sub, "b", colors, marker=None)
        means = sub.groupby(["rewind_step", "pct"], as_index=False)[["b", "match"]].mean()
        for k, color in colors.items():
            m = means[means["rewind_step"] == k]
            yes = m["match"] >= 0.5
            ax.scatter(m.loc[yes, "pct"], m.loc[yes, "b"], marker="o", s=22, color=color,
                       zorder=3)
            ax.scatter(m.loc[~yes, "pct"], m.loc[~yes, "b"], marker="x", s=22, color=color,
                       zorder=3)
        thr = style.threshold_line(ax, threshold)
        style.sparsity_axis(ax, subs=(1.0, 2.0, 5.0))
        ax.set(title=split, ylabel=r"error barrier $\theta_L \to \theta_{L+1}$ (%)")
        ax.set_xlabel("weights remaining at level L+1 (%)")
    marks = [(Line2D([], [], color="0.3", marker="o", ls=""), "matching (level L+1)"),
             (Line2D([], [], color="0.3", marker="x", ls=""), "not matching")]
    style.legend(axes[0][-1], [*k_handles(colors, None), thr, *marks], title=K_TITLE,
                 small=True)
    fig.suptitle(style.title(df, "barrier between successive IMP levels"))
    fig.tight_layout()
    return fig


# --- angles ---------------------------------------------------------------------------------
def _angle_matrix(df: pd.DataFrame) -> pd.DataFrame:
    """Mean angle over seeds, rows = levels then the rewind point (-1, "init") last."""
    m = df.groupby(["row", "col"])["angle"].mean().unstack("col")
    levels = sorted(int(r) for r in m.index if r >= 0)
    rows = levels + ([-1] if -1 in set(m.index) else [])
    m = m.reindex(index=rows, columns=sorted(int(c) for c in m.columns))
    m.index = [("init" if r == -1 else str(r)) for r in rows]
    return m


def plot_angles(tables_dir: Path, threshold: float) -> Figure:
    """Paper B Fig 4: angular distance 2∠/π between the solutions of IMP rounds.

    One heatmap per rewind step k, the mean over seeds; rows are levels 0..N and, last, the
    rewind point W_k ("init"), columns are levels; 1 means orthogonal. Cells are annotated when
    there are at most 12 levels. One colour scale (and colour bar) for all panels.
    """
    df, path = style.load_table(tables_dir, "angles", ["experiment", "seed", "rewind_step",
                                                       "row", "col", "angle"])
    df = df.dropna(subset=["angle"])
    style.require_rows(df, path, "angles (all NaN)")
    ks = sorted(df["rewind_step"].unique())
    mats = [_angle_matrix(df[df["rewind_step"] == k]) for k in ks]
    vmax = max(1.0, max(float(np.nanmax(m.to_numpy())) for m in mats))
    n = max(m.shape[1] for m in mats)
    side = min(max(2.6, 0.35 * n + 1.2), 5.0)
    fig, axes = plt.subplots(1, len(ks), figsize=(side * len(ks) + 1.0, side + 0.4),
                             squeeze=False, layout="constrained")
    for ax, k, m in zip(axes[0], ks, mats, strict=True):
        sns.heatmap(m, ax=ax, vmin=0.0, vmax=vmax, cmap="viridis", cbar=False, square=True,
                    annot=m.shape[1] <= MAX_ANNOTATED, fmt=".2f", annot_kws={"fontsize": 6})
        ax.set(title=f"k = {k:g}", xlabel="IMP level j", ylabel=r"IMP level i (init = $W_k$)")
        ax.tick_params(axis="y", rotation=0)
    fig.colorbar(axes[0][0].collections[0], ax=list(axes[0]), label="angular distance 2∠/π")
    fig.suptitle(style.title(df, "angular distance between IMP solutions"))
    return fig


# --- pruning thresholds -----------------------------------------------------------------------
def plot_thresholds(tables_dir: Path, threshold: float) -> Figure:
    """Paper B Fig 6: the magnitude cut-off |w| of each IMP pruning round.

    x: % weights remaining after the round, y: the round's threshold (weights with smaller
    magnitude were removed), one curve per rewind step k, mean ± sd over seeds.
    """
    df, path = style.load_table(tables_dir, "thresholds", [*KEY, "density_after", "threshold"])
    df = df.dropna(subset=["threshold"])
    style.require_rows(df, path, "thresholds (all NaN)")
    df = df.assign(pct=pct(df, "density_after"))
    colors = k_colors(df)
    fig, ax = plt.subplots(figsize=(style.WIDTH, 3.5))
    k_lines(ax, df, "threshold", colors)
    style.sparsity_axis(ax)
    ax.set(ylabel="magnitude threshold |w|", title=style.title(df, "pruning threshold per round"))
    ax.set_xlabel("weights remaining after the round (%)")
    style.legend(ax, k_handles(colors), title=K_TITLE, small=True)
    fig.tight_layout()
    return fig


# --- weight histograms ------------------------------------------------------------------------
def plot_histograms(tables_dir: Path, threshold: float) -> Figure:
    """Paper B Fig 5: histograms of the kept weights of the IMP levels, smallest rewind step k.

    Counts are summed over seeds per (level, bin) (seeds share bin edges); each level is a step
    line over bin centres, coloured from dense (dark) to sparse (light), at most six levels
    evenly spaced. Log count axis.
    """
    df, path = style.load_table(tables_dir, "histograms", [*KEY, "density", "bin_left",
                                                           "bin_right", "count"])
    k = int(df["rewind_step"].min())
    df = df[df["rewind_step"] == k]
    seeds = df["seed"].nunique()
    df = df.assign(pct=pct(df))
    h = df.groupby(["level", "bin_left", "bin_right"], as_index=False).agg(
        count=("count", "sum"), pct=("pct", "first"))
    h = h.assign(x=(h["bin_left"] + h["bin_right"]) / 2)
    levels = spread(sorted(int(v) for v in h["level"].unique()))
    cmap = plt.get_cmap("viridis")
    fig, ax = plt.subplots(figsize=(style.WIDTH, 3.5))
    entries = []
    for i, level in enumerate(levels):
        sub = h[h["level"] == level].sort_values("x")
        color = cmap(i / max(len(levels) - 1, 1) * 0.9)
        y = sub["count"].where(sub["count"] > 0)  # log axis: empty bins leave a gap
        (line,) = ax.step(sub["x"], y, where="mid", color=color, lw=1.2)
        entries.append((line, f"{sub['pct'].iloc[0]:.3g}% (level {level})"))
    ax.set_yscale("log")
    ax.set(xlabel="weight value w", ylabel=f"count (sum over {seeds} seed{'s' * (seeds != 1)})",
           title=style.title(df, f"weight histograms per IMP level, k = {k}"))
    style.legend(ax, entries, title="weights remaining", small=True)
    fig.tight_layout()
    return fig


# --- new small weights ------------------------------------------------------------------------
def plot_small_weights(tables_dir: Path, threshold: float) -> Figure:
    """Paper C: does retraining create new small weights?

    For each level L: the fraction of θ_L's smallest-magnitude weights (within the next mask
    m_{L+1}) that are still among θ_{L+1}'s smallest, vs % weights remaining of m_{L+1}; one
    curve per rewind step k (mean ± sd over seeds), the overlap expected by chance dashed.
    """
    df, path = style.load_table(tables_dir, "small_weights", [*KEY, "density", "overlap",
                                                              "chance"])
    df = df.dropna(subset=["overlap"])
    style.require_rows(df, path, "overlaps (all NaN)")
    df = df.assign(pct=pct(df))
    colors = k_colors(df)
    fig, ax = plt.subplots(figsize=(style.WIDTH, 3.5))
    k_lines(ax, df, "overlap", colors)
    k_lines(ax, df, "chance", colors, ls="--", marker=None)
    style.sparsity_axis(ax)
    ax.set(ylim=(0, 1), ylabel="overlap of smallest-weight sets (fraction)",
           title=style.title(df, "persistence of small weights across IMP rounds"))
    ax.set_xlabel("weights remaining, mask of level L+1 (%)")
    chance = (Line2D([], [], color="0.3", ls="--"), "chance level")
    style.legend(ax, [*k_handles(colors), chance], title=K_TITLE, small=True)
    fig.tight_layout()
    return fig


# --- curvature --------------------------------------------------------------------------------
def plot_curvature(tables_dir: Path, threshold: float) -> Figure:
    """Paper C §3.3: flatness of each IMP level's solution vs % weights remaining.

    Panels: the top eigenvalue of the loss Hessian (log scale when all positive), its trace
    (Hutchinson estimate), and ½ΔᵀHΔ along the next pruning step: removing the smallest weights
    (solid) vs the same number of random weights (dashed). One colour per rewind step k, mean ±
    sd over seeds.
    """
    cols = ["top_eigenvalue", "trace", "quad_magnitude", "quad_random"]
    df, path = style.load_table(tables_dir, "curvature", [*KEY, "density", *cols])
    df = df.dropna(subset=cols, how="all")
    style.require_rows(df, path, "curvature values (all NaN)")
    df = df.assign(pct=pct(df))
    colors = k_colors(df)
    fig, axes = plt.subplots(1, 3, figsize=(style.WIDTH + 3.0, 3.3), squeeze=False)
    ax_eig, ax_tr, ax_q = axes[0]
    k_lines(ax_eig, df, "top_eigenvalue", colors)
    k_lines(ax_tr, df, "trace", colors)
    k_lines(ax_q, df, "quad_magnitude", colors)
    k_lines(ax_q, df, "quad_random", colors, ls="--", marker="s")
    for ax, col in ((ax_eig, ["top_eigenvalue"]), (ax_q, ["quad_magnitude", "quad_random"])):
        values = df[col].to_numpy(dtype=float)
        if np.isfinite(values).any() and (values[np.isfinite(values)] > 0).all():
            ax.set_yscale("log")
    labels = [(r"top Hessian eigenvalue $\lambda_{max}$", "sharpness"),
              ("Hessian trace tr(H)", "trace"),
              (r"$\frac{1}{2}\Delta^{T} H \Delta$ (loss)", "next pruning step")]
    for ax, (ylabel, title) in zip(axes[0], labels, strict=True):
        style.sparsity_axis(ax, subs=(1.0, 2.0, 5.0))
        ax.set(ylabel=ylabel, title=title)
    styles = [(Line2D([], [], color="0.3", marker="o", markersize=4), "magnitude pruning"),
              (Line2D([], [], color="0.3", ls="--", marker="s", markersize=4), "random pruning")]
    style.legend(ax_q, [*k_handles(colors), *styles], title=K_TITLE, small=True)
    fig.suptitle(style.title(df, "curvature at the IMP solutions"))
    fig.tight_layout()
    return fig
