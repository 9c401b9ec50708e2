"""Paper A's figures beyond Figs 2/3 and the sparsity sweep: Fig 4, Fig 5, Table 2, Figs 6/7.

Each ``plot_*`` has the signature of ``lmcpipe.figures.FIGURES`` (``(tables_dir, threshold) ->
Figure``) and reuses that module's helpers and style; importing this module adds them to
``figures.FIGURES``:

* ``control`` (Fig 4): dense instability vs fork step k, copies trained the remaining T - k
  steps vs. copies trained T steps with schedule and data order restarted;
* ``interp_imp`` (Fig 5): test error along the path at k = 0 of the deepest IMP level, of random
  pruning / reinit there, and of the dense network;
* ``table2`` (Table 2): accuracy at k = 0 of IMP / random pruning / reinit at the deepest level
  vs. dense, matching yes/no (a rendered table; ``table2_frame`` gives it as a DataFrame);
* ``rewind_instability`` (Fig 6): instability vs rewind step k at the deepest level;
* ``rewind_accuracy`` (Fig 7): test accuracy vs rewind step k there, dense accuracy as a band;
* Fig 9 (``sparsity_ranges``) lives in ``lmcpipe.figures_ranges``.

"Deepest level" is the largest pruning level of an IMP row in the table the figure reads. Every
figure renders for small experiments too (one rewind step, no restart pairs, unpaired
baselines): what is missing is said in a note on the panel. A ``ValueError`` naming the file is
raised only when a table lacks the rows everything else is relative to (e.g. no dense runs).
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterable
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from lmcpipe import figures as base
from lmcpipe import summary

VARIANTS = ("imp", "randprune", "reinit")
COLORS = {"imp": "C0", "randprune": "C1", "reinit": "C2", "restart": "C3", "dense": "0.35"}
MARKERS = {"imp": "o", "randprune": "s", "reinit": "^", "restart": "D", "dense": "X"}
ID = ["experiment", "variant", "rewind_step", "level", "density"]
NO_BASELINE_PAIRS = "no random pruning / reinit pairs (prune.baseline_pairs: false)"


# --- helpers --------------------------------------------------------------------------------
def _pct(density: float) -> str:
    return f"{100 * density:.3g}%"


def _deepest(df: pd.DataFrame) -> int:
    """Largest pruning level of an IMP row (0 when the experiment prunes nothing)."""
    imp = df[df["variant"] == "imp"]
    return int(imp["level"].max()) if not imp.empty else 0


def _note(ax: plt.Axes, lines: Iterable[str], loc: str = "side") -> None:
    """A small grey remark saying what this experiment lacks.

    ``side``: right of the axes, below an outside legend; ``center``: inside, for empty axes.
    """
    width = 44 if loc == "side" else 70
    text = "\n".join(textwrap.fill(t, width) for t in lines if t)
    if not text:
        return
    x, y, ha, va = (1.03, 0.0, "left", "bottom") if loc == "side" else (0.5, 0.5, "center",
                                                                         "center")
    ax.text(x, y, text, transform=ax.transAxes, ha=ha, va=va, fontsize=7, color="0.25",
            style="italic", zorder=5)


def _k_axis(ax: plt.Axes, ks: Iterable[float], label: str, axis: str = "x") -> None:
    """Symlog axis of steps k (linear below the smallest positive k), ticks at the tested k."""
    ks = sorted({float(k) for k in ks})
    positive = [k for k in ks if k > 0]
    linthresh = min(positive) if positive else 1.0
    if axis == "x":
        ax.set_xscale("symlog", linthresh=linthresh)
        set_lim, set_ticks, set_label = ax.set_xlim, ax.set_xticks, ax.set_xlabel
    else:
        ax.set_yscale("symlog", linthresh=linthresh)
        set_lim, set_ticks, set_label = ax.set_ylim, ax.set_yticks, ax.set_ylabel
    if axis == "x":
        if len(ks) == 1:
            set_lim(ks[0] - linthresh, ks[0] + linthresh)
        elif ks:
            set_lim(ks[0] - 0.1 * linthresh, 1.3 * max(ks[-1], linthresh))
    if 0 < len(ks) <= 10:
        set_ticks(ks, [f"{k:g}" for k in ks])
    set_label(label)


def _lineplot(ax: plt.Axes, df: pd.DataFrame, x: str, y: str, key: str, label: str,
              dashes: bool = False) -> None:
    """One mean ± sd curve over the rows of ``df`` sharing an x, styled by ``key``."""
    style = "bars" if df[x].nunique() == 1 else "band"  # a band of one point is invisible
    sns.lineplot(df, x=x, y=y, color=COLORS[key], marker=MARKERS[key], errorbar="sd",
                 err_style=style, label=label, ax=ax, ls="--" if dashes else "-", markersize=5)


def _dense_band(ax: plt.Axes, mean: float, sd: float) -> tuple[object, str]:
    sd = 0.0 if pd.isna(sd) else sd
    ax.axhspan(mean - sd, mean + sd, color="0.5", alpha=0.2, lw=0, zorder=0)
    line = ax.axhline(mean, color="0.4", lw=1, zorder=1)
    return (line, Patch(color="0.5", alpha=0.2)), "dense, k=0 (mean ± sd)"


def _finish_legend(ax: plt.Axes, extra: list[tuple[object, str]] | None = None,
                   outside: bool = True) -> None:
    handles, labels = ax.get_legend_handles_labels()
    for h, lab in extra or []:
        handles.append(h)
        labels.append(lab)
    if not handles:
        return
    if outside:
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1), frameon=False)
    else:
        ax.legend(handles, labels, loc="best")


def _copy1(runs: pd.DataFrame) -> pd.DataFrame:
    out = runs[runs["copy"] == 1]
    return out.assign(acc=100 * (1 - out["test_error"]))


def _dense_runs(runs: pd.DataFrame, path: Path) -> pd.DataFrame:
    dense = runs[(runs["variant"] == "imp") & (runs["level"] == 0) & (runs["rewind_step"] == 0)]
    if dense.empty:
        raise ValueError(f"no dense runs (variant imp, level 0, k=0, copy 1) in {path}")
    return dense


def _label(variant: str, density: float) -> str:
    if variant == "dense":
        return "dense (100%)"
    return f"{base.VARIANT_LABELS.get(variant, variant)} ({_pct(density)})"


# --- Fig 4: the T - k vs restarted-schedule control ------------------------------------------
def plot_control(tables_dir: Path, threshold: float) -> Figure:
    """Paper A Fig 4: instability of the dense network vs fork step k, two ways of training.

    *T - k*: the copies forked at W_k train the remaining T - k steps with the schedule
    continuing from step k (variant ``imp``, level 0; the curve of Fig 3). *Restarted*: the
    copies train the full T steps from W_k with learning-rate schedule and data order restarted
    from step 0 (variant ``restart``). At k = 0 both are the same computation, so the restarted
    curve shares the k = 0 pairs. Train and test barriers, mean ± sd over pairs.
    """
    df, path = base._read(tables_dir, "instability", [*ID, "split", "barrier"])
    dense = df[(df["variant"] == "imp") & (df["level"] == 0)]
    if dense.empty:
        raise ValueError(f"no dense pairs (variant imp, level 0) in {path}")
    restart = df[(df["variant"] == "restart") & (df["level"] == 0)]
    if not restart.empty:
        restart = pd.concat([dense[dense["rewind_step"] == 0], restart])
    curves = [(dense, "imp", "T − k steps (schedule continues from k)")]
    if not restart.empty:
        curves.append((restart, "restart", "T steps, schedule and data order restarted"))
    splits = [s for s in base.SPLITS if s in set(df["split"])]
    fig, axes = plt.subplots(1, len(splits), figsize=(base.WIDTH + 1.5, 3.4), sharey=True,
                             squeeze=False)
    ks = set(dense["rewind_step"]) | set(restart["rewind_step"] if not restart.empty else [])
    for ax, split in zip(axes[0], splits, strict=True):
        for frame, key, label in curves:
            sub = frame[frame["split"] == split]
            _lineplot(ax, sub.assign(b=100 * sub["barrier"]), "rewind_step", "b", key, label,
                      dashes=key == "restart")
        thr = base._threshold(ax, threshold)
        _k_axis(ax, ks, "fork step k (iterations)")
        ax.set(title=split, ylabel="instability: error barrier (%)")
        ax.get_legend().remove()
    _finish_legend(axes[0][-1], [thr])
    if restart.empty:
        _note(axes[0][-1], ["no restart pairs in this experiment (instability.control: false)"])
    fig.suptitle(base._title(df, "control: T − k steps vs. restarted schedule (dense)"))
    fig.tight_layout()
    return fig


# --- Fig 5: paths of sparse subnetworks at k = 0 ----------------------------------------------
def plot_interp_imp(tables_dir: Path, threshold: float) -> Figure:
    """Paper A Fig 5: test error along the linear path at k = 0 of the deepest IMP level.

    Curves: IMP at the deepest level present in ``paths.csv`` at k = 0, random pruning and
    random reinit at that level when their pairs exist, and the dense network (level 0) for
    reference; mean ± sd over pairs at each alpha.
    """
    df, path = base._read(tables_dir, "paths", [*ID, "alpha", "split", "error"])
    if df.empty:
        raise ValueError(f"no pairs at all in {path}")
    k0 = df[(df["rewind_step"] == 0) & (df["split"] == "test")]
    k0 = k0.assign(error_pct=100 * k0["error"])
    level = _deepest(k0)
    fig, ax = plt.subplots(figsize=(base.WIDTH, 3.5))
    notes = []
    dense = k0[(k0["variant"] == "imp") & (k0["level"] == 0)]
    if not dense.empty:
        _lineplot(ax, dense, "alpha", "error_pct", "dense", _label("dense", 1.0))
    if level > 0:
        for v in VARIANTS:
            sub = k0[(k0["variant"] == v) & (k0["level"] == level)]
            if not sub.empty:
                _lineplot(ax, sub, "alpha", "error_pct", v, _label(v, sub["density"].mean()))
        if not set(k0.loc[k0["level"] == level, "variant"]) & {"randprune", "reinit"}:
            notes.append(NO_BASELINE_PAIRS)
    else:
        notes.append("no pruned levels in this experiment (prune.levels: 0)")
    if k0.empty:
        notes.append("no pairs at k = 0 in this experiment")
    ax.set(xlabel=r"interpolation $\alpha$", ylabel="test error (%)", xlim=(0, 1),
           title=base._title(df, f"test error along the path, k=0, level {level}"))
    _finish_legend(ax)
    _note(ax, notes)
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
    runs, path = base._read(tables_dir, "runs", [*ID, "seed", "order", "copy", "test_error"])
    inst, _ = base._read(tables_dir, "instability", [*ID, "seed", "order", "split", "barrier"])
    if runs.empty:
        raise ValueError(f"no runs in {path}")
    _dense_runs(runs[runs["copy"] == 1], path)
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
    fig, ax = plt.subplots(figsize=(base.WIDTH + 0.5, 1.3 + 0.32 * len(cells)))
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
    ax.set_title(f"{', '.join(sorted(t['experiment'].astype(str).unique()))}: "
                 "accuracy at k = 0 (paper A Table 2)")
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
            _lineplot(ax, sub, "rewind_step", y, key, label, dashes=key == "dense")


def plot_rewind_instability(tables_dir: Path, threshold: float) -> Figure:
    """Paper A Fig 6: train/test instability vs rewind step k at the deepest IMP level.

    IMP, random pruning and random reinit at the deepest level (trained from W_k, reinit from a
    fresh init at step k), and the dense network forked at the same k for reference (dashed);
    mean ± sd over pairs. Baselines without pairs are named in a note.
    """
    df, path = base._read(tables_dir, "instability", [*ID, "split", "barrier"])
    if df.empty:
        raise ValueError(f"no pairs at all in {path}")
    rows, level, notes = _rewind_rows(df, path)
    rows = rows.assign(b=100 * rows["barrier"])
    if level > 0 and not set(rows["key"]) & {"randprune", "reinit"}:
        notes.append(NO_BASELINE_PAIRS)
    splits = [s for s in base.SPLITS if s in set(rows["split"])]
    fig, axes = plt.subplots(1, len(splits), figsize=(base.WIDTH + 1.5, 3.4), sharey=True,
                             squeeze=False)
    for ax, split in zip(axes[0], splits, strict=True):
        _draw_by_key(ax, rows[rows["split"] == split], "b")
        thr = base._threshold(ax, threshold)
        _k_axis(ax, rows["rewind_step"], "rewind step k (iterations)")
        ax.set(title=split, ylabel="instability: error barrier (%)")
        ax.get_legend().remove()
    _finish_legend(axes[0][-1], [thr])
    _note(axes[0][-1], notes)
    fig.suptitle(base._title(df, f"instability vs. rewind step, level {level}"))
    fig.tight_layout()
    return fig


def plot_rewind_accuracy(tables_dir: Path, threshold: float) -> Figure:
    """Paper A Fig 7: test accuracy vs rewind step k at the deepest IMP level.

    Same curves as ``rewind_instability`` from the copy-1 runs (mean ± sd over replicates), with
    the dense accuracy at k = 0 as reference line and ± sd band.
    """
    runs, path = base._read(tables_dir, "runs", [*ID, "copy", "test_error"])
    if runs.empty:
        raise ValueError(f"no runs in {path}")
    runs = _copy1(runs)
    dense = _dense_runs(runs, path)
    rows, level, notes = _rewind_rows(runs, path)
    fig, ax = plt.subplots(figsize=(base.WIDTH, 3.6))
    band = _dense_band(ax, dense["acc"].mean(), dense["acc"].std(ddof=1))
    _draw_by_key(ax, rows, "acc")
    _k_axis(ax, rows["rewind_step"], "rewind step k (iterations)")
    ax.set(ylabel="test accuracy (%)",
           title=base._title(runs, f"accuracy vs. rewind step, level {level}"))
    _finish_legend(ax, [band])
    _note(ax, notes)
    fig.tight_layout()
    return fig


FIGURES: dict[str, Callable[[Path, float], Figure]] = {
    "control": plot_control,
    "interp_imp": plot_interp_imp,
    "table2": plot_table2,
    "rewind_instability": plot_rewind_instability,
    "rewind_accuracy": plot_rewind_accuracy,
}
base.FIGURES.update(FIGURES)
