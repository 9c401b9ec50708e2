"""Paper A's figures of the deepest IMP level against its baselines: Fig 5, Table 2, Figs 6/7.

* ``interp_imp`` (Fig 5): test error along the path at k = 0 of the deepest IMP level, of random
  pruning / reinit there, and of the dense network;
* ``table2`` (Table 2): accuracy at k = 0 of IMP / random pruning / reinit at the deepest level
  vs. dense, matching yes/no (a rendered table; ``table2_frame`` gives it as a DataFrame);
* ``rewind_instability`` (Fig 6): instability vs rewind step k at the deepest level;
* ``rewind_accuracy`` (Fig 7): test accuracy vs rewind step k there, dense accuracy as a band.

"Deepest level" is the largest pruning level of an IMP row in the table the figure reads. Every
figure renders for small experiments too (one rewind step, no restart pairs, unpaired
baselines): what is missing is said in a note on the panel. A ``ValueError`` naming the file is
raised only when a table lacks the rows everything else is relative to (e.g. no dense runs).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from lmcpipe import summary
from lmcpipe.figures import style
from lmcpipe.figures.paper_a import (
    ID,
    VARIANTS,
    checked_dense_runs,
    keyed_curve,
    outside_legend,
    runs_and_instability,
)

NO_BASELINE_PAIRS = "no random pruning / reinit pairs (prune.baseline_pairs: false)"


def _pct(density: float) -> str:
    return f"{100 * density:.3g}%"


def _deepest(df: pd.DataFrame) -> int:
    """Largest pruning level of an IMP row (0 when the experiment prunes nothing)."""
    imp = df[df["variant"] == "imp"]
    return int(imp["level"].max()) if not imp.empty else 0


def _label(variant: str, density: float) -> str:
    """Legend label naming the variant and its % weights remaining: "IMP (26.2%)"."""
    if variant == "dense":
        return "dense (100%)"
    return f"{summary.LABELS.get(variant, variant)} ({_pct(density)})"


# --- Fig 5: paths of sparse subnetworks at k = 0 ----------------------------------------------
def plot_interp_imp(tables_dir: Path, threshold: float) -> Figure:
    """Paper A Fig 5: test error along the linear path at k = 0 of the deepest IMP level.

    Curves: IMP at the deepest level present in ``paths.csv`` at k = 0, random pruning and
    random reinit at that level when their pairs exist, and the dense network (level 0) for
    reference; mean ± sd over pairs at each alpha.
    """
    df, path = style.read_table(tables_dir, "paths", [*ID, "alpha", "split", "error"])
    if df.empty:
        raise ValueError(f"no pairs at all in {path}")
    k0 = df[(df["rewind_step"] == 0) & (df["split"] == "test")]
    k0 = k0.assign(error_pct=100 * k0["error"])
    level = _deepest(k0)
    fig, ax = plt.subplots(figsize=(style.WIDTH, 3.5))
    notes = []
    dense = k0[(k0["variant"] == "imp") & (k0["level"] == 0)]
    if not dense.empty:
        keyed_curve(ax, dense, "alpha", "error_pct", "dense", _label("dense", 1.0))
    if level > 0:
        for v in VARIANTS:
            sub = k0[(k0["variant"] == v) & (k0["level"] == level)]
            if not sub.empty:
                keyed_curve(ax, sub, "alpha", "error_pct", v, _label(v, sub["density"].mean()))
        if not set(k0.loc[k0["level"] == level, "variant"]) & {"randprune", "reinit"}:
            notes.append(NO_BASELINE_PAIRS)
    else:
        notes.append("no pruned levels in this experiment (prune.levels: 0)")
    if k0.empty:
        notes.append("no pairs at k = 0 in this experiment")
    ax.set(xlabel=r"interpolation $\alpha$", ylabel="test error (%)", xlim=(0, 1),
           title=style.title(df, f"test error along the path, k=0, level {level}"))
    outside_legend(ax)
    style.note(ax, notes)
    fig.tight_layout()
    return fig


# --- Table 2 ---------------------------------------------------------------------------------
def table2_frame(tables_dir: Path, threshold: float = 0.02) -> pd.DataFrame:
    """Paper A Table 2: accuracy at k = 0 of the deepest IMP level and its baselines vs dense.

    Rows: the dense network (``subnetwork`` "dense", variant imp, level 0), then IMP, random
    pruning and random reinit at the deepest IMP level of ``runs.csv`` at k = 0 (those that were
    run). Columns come from ``summary.summarise`` (accuracies in %, mean ± sd over copy-1
    replicates; ``matching`` = mean accuracy >= dense mean - dense sd; ``stable`` = mean test
    barrier < ``threshold``), plus ``density_pct`` (% weights remaining).
    """
    runs, inst = runs_and_instability(tables_dir)
    return summary.table2(runs, inst, threshold)


def _yes_no(value: object) -> str:
    return "–" if pd.isna(value) else ("yes" if value else "no")


def _pm(mean: float, sd: float, digits: int = 2) -> str:
    if pd.isna(mean):
        return "–"
    return f"{mean:.{digits}f}" + ("" if pd.isna(sd) else f" ± {sd:.{digits}f}")


def plot_table2(tables_dir: Path, threshold: float) -> Figure:
    """Paper A Table 2 rendered as a table: ``table2_frame`` with formatted cells."""
    t = table2_frame(tables_dir, threshold)
    header = ["subnetwork", "weights\nremaining", "test accuracy\n(%)", "drop vs.\ndense",
              "matching", "test\ninstability (%)", f"stable\n(< {100 * threshold:g}%)"]
    cells = []
    for r in t.itertuples():
        drop = "–" if r.subnetwork == "dense" or pd.isna(r.accuracy_drop) \
            else f"{r.accuracy_drop:+.2f}"
        barrier = ("no pairs" if r.n_pairs == 0
                   else _pm(100 * r.test_barrier_mean, 100 * r.test_barrier_std))
        cells.append([r.subnetwork, f"{r.density_pct:.3g}%", _pm(r.accuracy_mean, r.accuracy_std),
                      drop, "–" if r.subnetwork == "dense" else _yes_no(r.matching), barrier,
                      _yes_no(r.stable)])
    fig, ax = plt.subplots(figsize=(style.WIDTH + 0.5, 1.3 + 0.32 * len(cells)))
    ax.axis("off")
    table = ax.table(cellText=cells, colLabels=header, loc="upper center", cellLoc="center",
                     colWidths=[0.2, 0.12, 0.2, 0.11, 0.11, 0.15, 0.11])
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.scale(1, 1.5)
    for (row, _), cell in table.get_celld().items():
        cell.set_edgecolor("0.75")
        if row == 0:
            cell.set_height(cell.get_height() * 1.6)
            cell.set_text_props(weight="bold")
            cell.set_facecolor("0.92")
    d = t.iloc[0]
    dense_sd = 0.0 if pd.isna(d.dense_accuracy_std) else d.dense_accuracy_std
    caption = (f"k = 0, deepest IMP level {int(t['level'].max())}; mean ± sd over "
               f"{int(t['n'].max())} replicates (copy 1). Drop = dense mean − mean (points). "
               f"Matching: mean ≥ dense mean − dense sd = {d.dense_accuracy_mean - dense_sd:.2f}."
               f" Instability: mean test error barrier over pairs; stable if < "
               f"{100 * threshold:g}%.")
    if int(t["level"].max()) == 0:
        caption += " No pruned levels in this experiment (prune.levels: 0)."
    ax.text(0.5, 0.0, textwrap.fill(caption, 110), transform=ax.transAxes, ha="center",
            va="bottom", fontsize=7, color="0.25")
    ax.set_title(style.title(t, "accuracy at k = 0 (paper A Table 2)", width=None))
    fig.tight_layout()
    return fig


# --- Figs 6 and 7: against the rewind step ----------------------------------------------------
def _rewind_rows(df: pd.DataFrame, path: Path) -> tuple[pd.DataFrame, int, list[str]]:
    """Rows of the deepest level's variants (and dense at the same k), with a ``key`` column."""
    level = _deepest(df)
    notes = []
    if level == 0:
        notes.append("no pruned levels in this experiment (prune.levels: 0): dense only")
        out = df[(df["variant"] == "imp") & (df["level"] == 0)].assign(key="dense")
    else:
        deep = df[(df["level"] == level) & df["variant"].isin(VARIANTS)]
        ks = set(deep["rewind_step"])
        dense = df[(df["variant"] == "imp") & (df["level"] == 0) & df["rewind_step"].isin(ks)]
        out = pd.concat([dense.assign(key="dense"), deep.assign(key=deep["variant"])])
        if len(ks) == 1:
            notes.append(f"only k = {min(ks):g} in this experiment (prune.rewind_steps)")
    if out.empty:
        raise ValueError(f"no rows of the deepest level {level} in {path}")
    return out, level, notes


def _draw_by_key(ax: plt.Axes, df: pd.DataFrame, y: str) -> None:
    for key in ("dense", *VARIANTS):
        sub = df[df["key"] == key]
        if not sub.empty:
            label = ("dense, forked at k (100%)" if key == "dense"
                     else _label(key, sub["density"].mean()))
            keyed_curve(ax, sub, "rewind_step", y, key, label, dashes=key == "dense")


def plot_rewind_instability(tables_dir: Path, threshold: float) -> Figure:
    """Paper A Fig 6: train/test instability vs rewind step k at the deepest IMP level.

    IMP, random pruning and random reinit at the deepest level (trained from W_k, reinit from a
    fresh init at step k), and the dense network forked at the same k for reference (dashed);
    mean ± sd over pairs. Baselines without pairs are named in a note.
    """
    df, path = style.read_table(tables_dir, "instability", [*ID, "split", "barrier"])
    if df.empty:
        raise ValueError(f"no pairs at all in {path}")
    rows, level, notes = _rewind_rows(df, path)
    rows = rows.assign(b=100 * rows["barrier"])
    if level > 0 and not set(rows["key"]) & {"randprune", "reinit"}:
        notes.append(NO_BASELINE_PAIRS)
    splits = [s for s in style.SPLITS if s in set(rows["split"])]
    fig, axes = plt.subplots(1, len(splits), figsize=(style.WIDTH + 1.5, 3.4), sharey=True,
                             squeeze=False)
    for ax, split in zip(axes[0], splits, strict=True):
        _draw_by_key(ax, rows[rows["split"] == split], "b")
        thr = style.threshold_line(ax, threshold)
        style.k_axis(ax, rows["rewind_step"], "rewind step k (iterations)")
        ax.set(title=split, ylabel="instability: error barrier (%)")
        ax.get_legend().remove()
    outside_legend(axes[0][-1], [thr])
    style.note(axes[0][-1], notes)
    fig.suptitle(style.title(df, f"instability vs. rewind step, level {level}"))
    fig.tight_layout()
    return fig


def plot_rewind_accuracy(tables_dir: Path, threshold: float) -> Figure:
    """Paper A Fig 7: test accuracy vs rewind step k at the deepest IMP level.

    Same curves as ``rewind_instability`` from the copy-1 runs (mean ± sd over replicates), with
    the dense accuracy at k = 0 as reference line and ± sd band.
    """
    runs, path = style.read_table(tables_dir, "runs", [*ID, "copy", "test_error"])
    if runs.empty:
        raise ValueError(f"no runs in {path}")
    runs = runs[runs["copy"] == 1]
    runs = runs.assign(acc=100 * (1 - runs["test_error"]))
    dense = checked_dense_runs(runs, path)
    rows, level, notes = _rewind_rows(runs, path)
    fig, ax = plt.subplots(figsize=(style.WIDTH, 3.6))
    band = style.dense_band(ax, dense["acc"], "dense, k=0 (mean ± sd)")
    _draw_by_key(ax, rows, "acc")
    style.k_axis(ax, rows["rewind_step"], "rewind step k (iterations)")
    ax.set(ylabel="test accuracy (%)",
           title=style.title(runs, f"accuracy vs. rewind step, level {level}"))
    outside_legend(ax, [band])
    style.note(ax, notes)
    fig.tight_layout()
    return fig
