"""Figures of paper C's probes of an IMP chain (Paul et al. 2023, §3.2 and §3.3).

* ``perturb`` (§3.2, robustness): error barrier between the run trained from the perturbed pruned
  rewind point of level L+1 and the unperturbed level-(L+1) solution, vs the noise scale c;
* ``max_prune`` (§3.3): the maximal one-shot pruning ratio p* of each level's solution θ_L vs
  sparsity and (when ``curvature.csv`` exists) vs the top Hessian eigenvalue, with the
  "re-pruning without retraining" control against the IMP chain.

A probe starts from a level of a chain, so these figures draw their curves as the chain figures
(``lmcpipe.figures.chains``) do: the mean over init seeds with a band of one standard deviation,
one colour per rewind step k. A table whose needed rows are empty raises a ``ValueError`` naming
it, so an empty plot is never saved.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import LogFormatter

from lmcpipe import paths
from lmcpipe.figures import chains, style

KEY = chains.KEY
METHOD_STYLES = {"magnitude": ("-", "o"), "random": ("--", "s")}
MAX_SCALE_TICKS = 10


def _level_label(level: int, pct: float) -> str:
    shown = f"{pct:.1f}" if pct >= 1 else f"{pct:.2g}"
    return f"{level}→{level + 1} ({shown}% weights)"


# --- perturbation robustness ----------------------------------------------------------------
def plot_perturb(tables_dir: Path, threshold: float) -> Figure:
    """Paper C §3.2: robustness of level L+1's solution to perturbing its pruned rewind point.

    One panel per (rewind step k, split): the error barrier (%) between the run trained from
    W_k ⊙ m_{L+1} + noise of norm c · d_L and the unperturbed level-(L+1) solution, vs the scale
    c (linear axis), one curve per level L coloured dense (dark) to sparse (light), mean ± sd
    over seeds, the stability threshold dashed. Filled markers: the unperturbed level L+1 is
    matching (``matching_ref`` true for at least half of the seeds); hollow: it is not.
    """
    df, path = style.load_table(tables_dir, "perturb", [*KEY, "density", "scale", "split",
                                                        "barrier", "matching_ref"])
    df = df[df["split"].isin(style.SPLITS)]
    style.require_rows(df, path, "rows of split train or test")
    df = df.assign(b=100 * df["barrier"], match=style.as_bool(df["matching_ref"]).astype(float))
    splits = [s for s in style.SPLITS if s in set(df["split"])]
    ks = sorted(df["rewind_step"].unique())
    levels = sorted(int(v) for v in df["level"].unique())
    cmap = plt.get_cmap("viridis")
    colors = {n: cmap(i / max(len(levels) - 1, 1) * 0.9) for i, n in enumerate(levels)}
    pct = 100 * df.groupby("level")["density"].mean()
    scales = sorted(df["scale"].unique())
    fig, axes = plt.subplots(len(ks), len(splits),
                             figsize=(style.WIDTH + 1.5, 0.6 + 2.8 * len(ks)),
                             sharex=True, sharey=True, squeeze=False)
    for row, k in zip(axes, ks, strict=True):
        for ax, split in zip(row, splits, strict=True):
            sub = df[(df["rewind_step"] == k) & (df["split"] == split)]
            means = sub.groupby(["level", "scale"], as_index=False)[["b", "match"]].mean()
            for level, color in colors.items():
                style.mean_sd_curve(ax, sub[sub["level"] == level], "scale", "b", color,
                                    marker=None)
                m = means[means["level"] == level]
                yes = m["match"] >= 0.5
                ax.scatter(m.loc[yes, "scale"], m.loc[yes, "b"], marker="o", s=22,
                           color=color, zorder=3)
                ax.scatter(m.loc[~yes, "scale"], m.loc[~yes, "b"], marker="o", s=22,
                           facecolors="none", edgecolors=[color], zorder=3)
            thr = style.threshold_line(ax, threshold)
            if len(scales) <= MAX_SCALE_TICKS:
                ax.set_xticks(scales, [f"{c:g}" for c in scales])
            ax.set(title=f"{split}, k = {k:g}", xlabel=r"perturbation scale c (noise norm / $d_L$)",
                   ylabel=r"barrier to unperturbed $\theta_{L+1}$ (%)")
    entries = [(Line2D([], [], color=c), _level_label(n, pct[n])) for n, c in colors.items()]
    marks = [(Line2D([], [], color="0.3", marker="o", ls=""), "unperturbed L+1 matching"),
             (Line2D([], [], color="0.3", marker="o", mfc="none", ls=""), "not matching")]
    style.legend(axes[0][-1], [*entries, thr, *marks], title="levels L→L+1", small=True)
    fig.suptitle(style.title(df, "barrier after perturbing the pruned rewind point"))
    fig.tight_layout()
    return fig


# --- maximal one-shot pruning ratio ---------------------------------------------------------
def max_prune_ratio(oneshot: pd.DataFrame) -> pd.DataFrame:
    """p* per (experiment, seed, rewind step, level, method), from the test split.

    p* is the largest one-shot ``fraction`` of θ_L's remaining weights whose retrained run is
    both matching and connected to θ_L (barrier ≤ threshold); 0 when no fraction is. Train-split
    rows are ignored. Columns: experiment, seed, rewind_step, level, density_source, method,
    p_star.
    """
    keys = [*KEY, "method"]
    cols = [*KEY, "density_source", "method", "p_star"]
    test = oneshot[oneshot["split"] == "test"]
    if test.empty:
        return pd.DataFrame(columns=cols)
    ok = style.as_bool(test["matching"]) & style.as_bool(test["connected"])
    test = test.assign(p_ok=test["fraction"].where(ok, 0.0).astype(float))
    out = test.groupby(keys, as_index=False).agg(density_source=("density_source", "mean"),
                                                 p_star=("p_ok", "max"))
    return out[cols].reset_index(drop=True)


def _p_star_panel(ax: plt.Axes, p: pd.DataFrame, colors: dict[int, str]) -> None:
    """(a) p* vs % weights remaining of θ_L, per method and k."""
    for method, (ls, marker) in METHOD_STYLES.items():
        chains.k_lines(ax, p[p["method"] == method], "p_star", colors, ls=ls, marker=marker)
    style.sparsity_axis(ax, subs=(1.0, 2.0, 5.0))
    ax.set(ylabel="max one-shot pruning ratio p*", title="(a) p* per level")
    ax.set_xlabel(r"weights remaining of $\theta_L$ (%)")
    ax.set_ylim(bottom=-0.02)


def _curvature_panel(ax: plt.Axes, p: pd.DataFrame, curv: pd.DataFrame, path: Path,
                     colors: dict[int, str]) -> None:
    """(b) p* vs λ_max at the same (seed, k, level): one point per seed, marker per method."""
    curv = curv[curv["top_eigenvalue"] > 0]  # also drops NaN; log axis
    both = p.merge(curv[[*KEY, "top_eigenvalue"]], on=KEY, how="inner")
    for method, (_, marker) in METHOD_STYLES.items():
        for k, color in colors.items():
            sub = both[(both["method"] == method) & (both["rewind_step"] == k)]
            ax.scatter(sub["top_eigenvalue"], sub["p_star"], marker=marker, s=20, color=color,
                       alpha=0.7)
    if both.empty:
        ax.text(0.5, 0.5, f"no positive λ_max matching p* levels\nin {path.name}",
                transform=ax.transAxes, ha="center", va="center", fontsize=7)
    else:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(LogFormatter())  # plain numbers, not 2×10^1
        ax.xaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False))
    ax.set(xlabel=r"top Hessian eigenvalue $\lambda_{max}$ of $\theta_L$",
           ylabel="max one-shot pruning ratio p*", title="(b) flatter solutions can be pruned more")
    ax.set_ylim(bottom=-0.02)


def _reprune(oneshot: pd.DataFrame) -> pd.DataFrame:
    """Test rows of magnitude pruning by two IMP steps at once, with the chain's error there."""
    df = oneshot[(oneshot["split"] == "test") & (oneshot["method"] == "magnitude")
                 & (oneshot["steps"] == 2)]
    df = df.dropna(subset=["imp_error"])
    return df.assign(pct=chains.pct(df), err=100 * df["error"], imp=100 * df["imp_error"])


def _reprune_panel(ax: plt.Axes, df: pd.DataFrame, colors: dict[int, str]) -> None:
    """(c) test error of θ_L pruned twice without retraining vs the IMP chain, same density."""
    chains.k_lines(ax, df, "imp", colors, ls="-", marker="o")
    chains.k_lines(ax, df, "err", colors, ls=":", marker="D")
    style.sparsity_axis(ax, subs=(1.0, 2.0, 5.0))
    ax.set(ylabel="test error (%)", title="(c) re-pruning without retraining")
    styles = [(Line2D([], [], color="0.3", marker="o", markersize=4), "IMP chain (level L+2)"),
              (Line2D([], [], color="0.3", ls=":", marker="D", markersize=4),
               r"one-shot ×2 from $\theta_L$")]
    style.legend(ax, styles, outside=False, small=True)
    ax.add_artist(ax.get_legend())  # kept when the figure's legend is drawn on this panel


def plot_max_prune(tables_dir: Path, threshold: float) -> Figure:
    """Paper C §3.3: the maximal one-shot pruning ratio p* vs sparsity and curvature.

    (a) p* (see ``max_prune_ratio``) vs % weights remaining of θ_L, magnitude (solid) vs random
    (dashed) pruning, one colour per rewind step k, mean ± sd over seeds. (b), only when
    ``curvature.csv`` exists: p* vs the top Hessian eigenvalue of θ_L, one point per seed,
    circles for magnitude, squares for random pruning. (c), when the table has magnitude runs of
    two steps with the chain's error: test error of θ_L pruned twice without retraining vs the
    IMP chain at the same depth, vs % weights remaining. ``threshold`` is unused here: the
    table's ``connected`` column already applied it when the table was aggregated.
    """
    cols = [*KEY, "density_source", "method", "steps", "fraction", "density", "split", "error",
            "imp_error", "matching", "connected"]
    oneshot, path = style.load_table(tables_dir, "oneshot", cols)
    p = max_prune_ratio(oneshot)
    style.require_rows(p, path, "rows of split test")
    p = p.assign(pct=chains.pct(p, "density_source"))
    colors = chains.k_colors(p)
    curv_path = Path(tables_dir) / paths.table_file("curvature")
    curv = None
    if curv_path.exists():
        curv, curv_path = style.read_table(tables_dir, "curvature", [*KEY, "top_eigenvalue"])
    reprune = _reprune(oneshot)
    n = 1 + (curv is not None) + (not reprune.empty)
    fig, axes = plt.subplots(1, n, figsize=(3.0 * n + 1.8, 3.5), squeeze=False)
    panels = list(axes[0])
    _p_star_panel(panels[0], p, colors)
    if curv is not None:
        _curvature_panel(panels[1], p, curv, curv_path, colors)
    if not reprune.empty:
        _reprune_panel(panels[-1], reprune, colors)
    styles = [(Line2D([], [], color="0.3", ls=ls, marker=mk, markersize=4), f"{m} pruning")
              for m, (ls, mk) in METHOD_STYLES.items()]
    style.legend(panels[-1], [*chains.k_handles(colors), *styles], title=chains.K_TITLE,
                 small=True)
    fig.suptitle(style.title(oneshot, "maximal one-shot pruning ratio p* (test: matching and "
                                      "connected)"))
    fig.tight_layout()
    return fig
