"""Paper A's figures of the dense network and of sparsity: Figs 2, 3, 4 and the IMP curves.

* ``interp_k0`` (Fig 2): error along the linear path between two dense copies forked at k = 0;
* ``instability`` (Fig 3): dense instability vs the fork step k;
* ``control`` (Fig 4): that instability for copies trained the remaining T - k steps vs. copies
  trained T steps with schedule and data order restarted;
* ``imp`` / ``imp_instability``: accuracy and instability of IMP subnetworks and baselines vs %
  weights remaining, one curve per (variant, k).

Also the pieces paper A's other figure modules (``paper_a_deepest``, ``ranges``) draw with, so
that a variant has one colour and marker across all of paper A's figures. Figures read only the
tidy tables (``results/tables/<exp>/*.csv``, never checkpoints), every curve is the mean over
replicates (init seeds x data orders) with one standard deviation, and a figure whose rows are
missing fails with a ``ValueError`` naming the table instead of saving an empty plot.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from lmcpipe import summary
from lmcpipe.figures import style

VARIANTS = ("imp", "randprune", "reinit")
COLORS = {"imp": "C0", "randprune": "C1", "reinit": "C2", "restart": "C3", "dense": "0.35"}
MARKERS = {"imp": "o", "randprune": "s", "reinit": "^", "restart": "D", "dense": "X"}
ID = ["experiment", "variant", "rewind_step", "level", "density"]


# --- shared by paper A's figure modules -------------------------------------------------------
def keyed_curve(ax: plt.Axes, df: pd.DataFrame, x: str, y: str, key: str, label: str,
                dashes: bool = False) -> None:
    """One mean ± sd curve over the rows of ``df`` sharing an x, coloured and marked by ``key``
    (a variant, or "dense"/"restart") and labelled for the legend."""
    err_style = "bars" if df[x].nunique() == 1 else "band"  # a band of one point is invisible
    sns.lineplot(df, x=x, y=y, color=COLORS[key], marker=MARKERS[key], errorbar="sd",
                 err_style=err_style, label=label, ax=ax, ls="--" if dashes else "-",
                 markersize=5)


def checked_dense_runs(runs: pd.DataFrame, path: Path) -> pd.DataFrame:
    """``summary.dense_runs`` of ``runs``, refusing none: every accuracy is relative to them."""
    dense = summary.dense_runs(runs)
    if dense.empty:
        raise ValueError(f"no dense runs (variant imp, level 0, k=0, copy 1) in {path}")
    return dense


def runs_and_instability(tables_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``runs.csv`` and ``instability.csv`` with the columns the summary tables need, refusing
    a table without runs or without the dense runs every accuracy is relative to."""
    runs, path = style.read_table(tables_dir, "runs", [*ID, "seed", "order", "copy",
                                                       "test_error"])
    inst, _ = style.read_table(tables_dir, "instability", [*ID, "seed", "order", "split",
                                                           "barrier"])
    if runs.empty:
        raise ValueError(f"no runs in {path}")
    checked_dense_runs(runs, path)
    return runs, inst


def outside_legend(ax: plt.Axes, extra: list[style.Entry] | None = None) -> None:
    """Legend of the labelled curves of ``ax`` plus ``extra``, right of the axes."""
    style.legend(ax, [*style.labelled_entries(ax), *(extra or [])])


def _split_hue(df: pd.DataFrame) -> list[str]:
    return [s for s in style.SPLITS if s in set(df["split"])]


# --- Figs 2 and 3: the dense network ---------------------------------------------------------
def plot_interp_k0(tables_dir: Path, threshold: float) -> Figure:
    """Error along the linear path between two dense copies trained from W_0 (paper A Fig 2)."""
    df, path = style.read_table(tables_dir, "paths", ["experiment", "variant", "rewind_step",
                                                      "level", "alpha", "split", "error"])
    df = df[(df["variant"] == "imp") & (df["level"] == 0) & (df["rewind_step"] == 0)]
    if df.empty:
        raise ValueError(f"no dense pairs at k=0 in {path}")
    df = df.assign(error_pct=100 * df["error"])
    fig, ax = plt.subplots(figsize=(style.WIDTH, 3.5))
    hue = _split_hue(df)
    sns.lineplot(df, x="alpha", y="error_pct", hue="split", style="split", hue_order=hue,
                 style_order=hue, markers=True, dashes=False, errorbar="sd", ax=ax)
    ax.set(xlabel=r"interpolation $\alpha$", ylabel="error (%)", xlim=(0, 1),
           title=style.title(df, "dense network, copies forked at k=0"))
    style.legend(ax, style.legend_entries(ax), outside=False)
    fig.tight_layout()
    return fig


def plot_instability(tables_dir: Path, threshold: float) -> Figure:
    """Instability of the dense network vs the fork step k (paper A Fig 3)."""
    df, path = style.read_table(tables_dir, "instability", ["experiment", "variant",
                                                            "rewind_step", "level", "split",
                                                            "barrier"])
    df = df[(df["variant"] == "imp") & (df["level"] == 0)]
    if df.empty:
        raise ValueError(f"no dense pairs (variant imp, level 0) in {path}")
    df = df.assign(barrier_pct=100 * df["barrier"])
    fig, ax = plt.subplots(figsize=(style.WIDTH, 3.5))
    hue = _split_hue(df)
    sns.lineplot(df, x="rewind_step", y="barrier_pct", hue="split", style="split",
                 hue_order=hue, style_order=hue, markers=True, dashes=False, errorbar="sd", ax=ax)
    ks = sorted(df["rewind_step"].unique())
    positive = [k for k in ks if k > 0]
    linthresh = min(positive) if positive else 1
    ax.set_xscale("symlog", linthresh=linthresh)
    ax.set_xlim(-0.1 * linthresh, 1.3 * max(ks[-1], linthresh))  # no empty negative half
    if len(ks) <= 10:
        ax.set_xticks(ks, [f"{k:g}" for k in ks])
    ax.set(xlabel="fork step k (iterations)", ylabel="instability: error barrier (%)",
           title=style.title(df, "instability of the dense network"))
    style.legend(ax, [*style.legend_entries(ax), style.threshold_line(ax, threshold)],
                 outside=False)
    fig.tight_layout()
    return fig


# --- Fig 4: the T - k vs restarted-schedule control ------------------------------------------
def plot_control(tables_dir: Path, threshold: float) -> Figure:
    """Paper A Fig 4: instability of the dense network vs fork step k, two ways of training.

    *T - k*: the copies forked at W_k train the remaining T - k steps with the schedule
    continuing from step k (variant ``imp``, level 0; the curve of Fig 3). *Restarted*: the
    copies train the full T steps from W_k with learning-rate schedule and data order restarted
    from step 0 (variant ``restart``). At k = 0 both are the same computation, so the restarted
    curve shares the k = 0 pairs. Train and test barriers, mean ± sd over pairs.
    """
    df, path = style.read_table(tables_dir, "instability", [*ID, "split", "barrier"])
    dense = df[(df["variant"] == "imp") & (df["level"] == 0)]
    if dense.empty:
        raise ValueError(f"no dense pairs (variant imp, level 0) in {path}")
    restart = df[(df["variant"] == "restart") & (df["level"] == 0)]
    if not restart.empty:
        restart = pd.concat([dense[dense["rewind_step"] == 0], restart])
    curves = [(dense, "imp", "T − k steps (schedule continues from k)")]
    if not restart.empty:
        curves.append((restart, "restart", "T steps, schedule and data order restarted"))
    splits = _split_hue(df)
    fig, axes = plt.subplots(1, len(splits), figsize=(style.WIDTH + 1.5, 3.4), sharey=True,
                             squeeze=False)
    ks = set(dense["rewind_step"]) | set(restart["rewind_step"] if not restart.empty else [])
    for ax, split in zip(axes[0], splits, strict=True):
        for frame, key, label in curves:
            sub = frame[frame["split"] == split]
            keyed_curve(ax, sub.assign(b=100 * sub["barrier"]), "rewind_step", "b", key, label,
                        dashes=key == "restart")
        thr = style.threshold_line(ax, threshold)
        style.k_axis(ax, ks, "fork step k (iterations)")
        ax.set(title=split, ylabel="instability: error barrier (%)")
        ax.get_legend().remove()
    outside_legend(axes[0][-1], [thr])
    if restart.empty:
        style.note(axes[0][-1],
                   ["no restart pairs in this experiment (instability.control: false)"])
    fig.suptitle(style.title(df, "control: T − k steps vs. restarted schedule (dense)"))
    fig.tight_layout()
    return fig


# --- sparse subnetworks vs % weights remaining -----------------------------------------------
def plot_imp(tables_dir: Path, threshold: float) -> Figure:
    """Test accuracy of IMP subnetworks and baselines vs % weights remaining."""
    df, path = style.read_table(tables_dir, "runs", ["experiment", "variant", "rewind_step",
                                                     "level", "density", "copy", "test_error"])
    df = df[df["copy"] == 1].assign(acc=100 * (1 - df["test_error"]))
    dense = checked_dense_runs(df, path)
    lines = style.variant_k_lines(df, path)
    fig, ax = plt.subplots(figsize=(style.WIDTH, 3.8))
    band = style.dense_band(ax, dense["acc"])
    order = list(dict.fromkeys(lines["line"]))
    sns.lineplot(lines, x="pct", y="acc", hue="line", style="line", hue_order=order,
                 style_order=order, markers=True, dashes=False, errorbar="sd", ax=ax)
    style.sparsity_axis(ax)
    ax.set(ylabel="test accuracy (%)", title=style.title(df, "accuracy of sparse subnetworks"))
    style.legend(ax, [*style.legend_entries(ax), band])
    fig.tight_layout()
    return fig


def plot_imp_instability(tables_dir: Path, threshold: float) -> Figure:
    """Instability of IMP subnetworks (and baselines) vs % weights remaining, train and test."""
    df, path = style.read_table(tables_dir, "instability", ["experiment", "variant",
                                                            "rewind_step", "level", "density",
                                                            "split", "barrier"])
    if df[df["variant"] == "imp"].empty:
        raise ValueError(f"no IMP pairs (variant imp) in {path}")
    lines = style.variant_k_lines(df, path).assign(barrier_pct=lambda d: 100 * d["barrier"])
    splits = _split_hue(lines)
    fig, axes = plt.subplots(1, len(splits), figsize=(style.WIDTH + 0.5, 3.5), sharey=True,
                             squeeze=False)
    order = list(dict.fromkeys(lines["line"]))
    for ax, split in zip(axes[0], splits, strict=True):
        sns.lineplot(lines[lines["split"] == split], x="pct", y="barrier_pct", hue="line",
                     style="line", hue_order=order, style_order=order, markers=True,
                     dashes=False, errorbar="sd", ax=ax, legend=ax is axes[0][-1])
        thr = style.threshold_line(ax, threshold)
        style.sparsity_axis(ax, subs=(1.0, 2.0, 5.0))  # narrow panels
        ax.set(title=split, ylabel="instability: error barrier (%)")
    last = axes[0][-1]
    style.legend(last, [*style.legend_entries(last), thr])
    fig.suptitle(style.title(df, "instability of sparse subnetworks"))
    fig.tight_layout()
    return fig
