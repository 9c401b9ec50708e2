"""Stage: publication figures of one experiment, rendered from its tidy tables.

Figures read only ``results/tables/<exp>/*.csv`` (never checkpoints), so restyling a plot reruns
this cheap stage alone. Every curve is the mean over replicates (init seeds x data orders) with a
band of one standard deviation. A figure whose rows are missing fails with a ``ValueError`` that
names the table, instead of saving an empty plot that looks finished.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

from lmcpipe.atomic import write_atomic  # noqa: E402
from lmcpipe.summary import LABELS  # noqa: E402

VARIANT_LABELS = LABELS  # one definition of the variants' names, in lmcpipe.summary
SPLITS = ["train", "test"]
WIDTH = 6.5


def _read(tables_dir: Path, name: str, columns: list[str]) -> tuple[pd.DataFrame, Path]:
    """Load ``<tables_dir>/<name>.csv`` and check it has ``columns``."""
    path = Path(tables_dir) / f"{name}.csv"
    if not path.exists():
        raise FileNotFoundError(f"missing table {path} (written by `lmcpipe aggregate`)")
    df = pd.read_csv(path)
    missing = sorted(set(columns) - set(df.columns))
    if missing:
        raise ValueError(f"{path} lacks columns {missing}")
    return df, path


def _title(df: pd.DataFrame, what: str, width: int = 48) -> str:
    """"<experiments>: <what>", broken after the colon when longer than ``width`` characters
    so that a long experiment name (a sweep member) does not run off a one-panel figure."""
    names = ", ".join(sorted(df["experiment"].astype(str).unique()))
    sep = ":\n" if len(names) + len(what) + 2 > width else ": "
    return f"{names}{sep}{what}"


def _label(variant: str, k: int) -> str:
    return f"{VARIANT_LABELS.get(variant, variant)} (k={k})"


def _lines(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Rows of each (variant, k) curve over sparsity, with ``line`` and ``pct`` columns.

    A curve exists for each (variant, k) with pruned levels; IMP curves start at their level 0
    (the dense network trained from W_k). Without any pruned level the dense IMP k=0 point stays.
    """
    pruned = df[df["level"] >= 1]
    keys = set(zip(pruned["variant"], pruned["rewind_step"], strict=True)) or {("imp", 0)}
    keep = [(df["variant"] == v) & (df["rewind_step"] == k) for v, k in keys]
    out = df[pd.concat(keep, axis=1).any(axis=1)].copy()
    if out.empty:
        raise ValueError(f"no rows of (variant, k) in {sorted(keys)} in {path}")
    # density is identical across replicates up to rounding: one x per level keeps means aligned
    out["pct"] = 100 * out.groupby(["variant", "rewind_step", "level"])["density"].transform("mean")
    order = {v: i for i, v in enumerate(VARIANT_LABELS)}
    out = out.sort_values(["variant", "rewind_step", "level"],
                          key=lambda s: s.map(order) if s.name == "variant" else s)
    out["line"] = [_label(v, k) for v, k in zip(out["variant"], out["rewind_step"], strict=True)]
    return out


def _sparsity_axis(ax: plt.Axes, subs: tuple[float, ...] = (1.0, 2.0, 3.0, 5.0)) -> None:
    """Log-scaled % weights remaining, dense (100) on the left, ticks at ``subs`` x 10^n."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    lo, hi = ax.get_xlim()
    ax.set_xlim(min(max(lo, hi), 115), min(lo, hi))  # nothing exceeds 100 %
    ax.set_xlabel("weights remaining (%)")


def _legend(ax: plt.Axes, extra: list[tuple[object, str]], outside: bool = True) -> None:
    """Redraw seaborn's legend with ``extra`` (handle, label) entries, outside the axes."""
    old = ax.get_legend()
    handles = list(old.legend_handles) if old else []
    labels = [t.get_text() for t in old.texts] if old else []
    for handle, label in extra:
        handles.append(handle)
        labels.append(label)
    if outside:
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1), frameon=False)
    else:
        ax.legend(handles, labels, loc="best")


def _threshold(ax: plt.Axes, threshold: float) -> tuple[Line2D, str]:
    line = ax.axhline(100 * threshold, color="0.3", ls="--", lw=1, zorder=1)
    return line, f"threshold ({100 * threshold:g}%)"


def plot_interp_k0(tables_dir: Path, threshold: float) -> Figure:
    """Error along the linear path between two dense copies trained from W_0 (paper A Fig 2)."""
    df, path = _read(tables_dir, "paths", ["experiment", "variant", "rewind_step", "level",
                                           "alpha", "split", "error"])
    df = df[(df["variant"] == "imp") & (df["level"] == 0) & (df["rewind_step"] == 0)]
    if df.empty:
        raise ValueError(f"no dense pairs at k=0 in {path}")
    df = df.assign(error_pct=100 * df["error"])
    fig, ax = plt.subplots(figsize=(WIDTH, 3.5))
    hue = [s for s in SPLITS if s in set(df["split"])]
    sns.lineplot(df, x="alpha", y="error_pct", hue="split", style="split", hue_order=hue,
                 style_order=hue, markers=True, dashes=False, errorbar="sd", ax=ax)
    ax.set(xlabel=r"interpolation $\alpha$", ylabel="error (%)", xlim=(0, 1),
           title=_title(df, "dense network, copies forked at k=0"))
    _legend(ax, [], outside=False)
    fig.tight_layout()
    return fig


def plot_instability(tables_dir: Path, threshold: float) -> Figure:
    """Instability of the dense network vs the fork step k (paper A Fig 3)."""
    df, path = _read(tables_dir, "instability", ["experiment", "variant", "rewind_step", "level",
                                                 "split", "barrier"])
    df = df[(df["variant"] == "imp") & (df["level"] == 0)]
    if df.empty:
        raise ValueError(f"no dense pairs (variant imp, level 0) in {path}")
    df = df.assign(barrier_pct=100 * df["barrier"])
    fig, ax = plt.subplots(figsize=(WIDTH, 3.5))
    hue = [s for s in SPLITS if s in set(df["split"])]
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
           title=_title(df, "instability of the dense network"))
    _legend(ax, [_threshold(ax, threshold)], outside=False)
    fig.tight_layout()
    return fig


def plot_imp(tables_dir: Path, threshold: float) -> Figure:
    """Test accuracy of IMP subnetworks and baselines vs % weights remaining."""
    df, path = _read(tables_dir, "runs", ["experiment", "variant", "rewind_step", "level",
                                          "density", "copy", "test_error"])
    df = df[df["copy"] == 1].assign(acc=100 * (1 - df["test_error"]))
    dense = df[(df["variant"] == "imp") & (df["level"] == 0) & (df["rewind_step"] == 0)]
    if dense.empty:
        raise ValueError(f"no dense runs (variant imp, level 0, k=0, copy 1) in {path}")
    lines = _lines(df, path)
    fig, ax = plt.subplots(figsize=(WIDTH, 3.8))
    mean, sd = dense["acc"].mean(), dense["acc"].std(ddof=1)
    sd = 0.0 if pd.isna(sd) else sd
    ax.axhspan(mean - sd, mean + sd, color="0.5", alpha=0.2, lw=0, zorder=0)
    band = ax.axhline(mean, color="0.4", lw=1, zorder=1)
    order = list(dict.fromkeys(lines["line"]))
    sns.lineplot(lines, x="pct", y="acc", hue="line", style="line", hue_order=order,
                 style_order=order, markers=True, dashes=False, errorbar="sd", ax=ax)
    _sparsity_axis(ax)
    ax.set(ylabel="test accuracy (%)", title=_title(df, "accuracy of sparse subnetworks"))
    _legend(ax, [((band, Patch(color="0.5", alpha=0.2)), "dense (mean ± sd)")])
    fig.tight_layout()
    return fig


def plot_imp_instability(tables_dir: Path, threshold: float) -> Figure:
    """Instability of IMP subnetworks (and baselines) vs % weights remaining, train and test."""
    df, path = _read(tables_dir, "instability", ["experiment", "variant", "rewind_step", "level",
                                                 "density", "split", "barrier"])
    if df[df["variant"] == "imp"].empty:
        raise ValueError(f"no IMP pairs (variant imp) in {path}")
    lines = _lines(df, path).assign(barrier_pct=lambda d: 100 * d["barrier"])
    splits = [s for s in SPLITS if s in set(lines["split"])]
    fig, axes = plt.subplots(1, len(splits), figsize=(WIDTH + 0.5, 3.5), sharey=True,
                             squeeze=False)
    order = list(dict.fromkeys(lines["line"]))
    for ax, split in zip(axes[0], splits, strict=True):
        sns.lineplot(lines[lines["split"] == split], x="pct", y="barrier_pct", hue="line",
                     style="line", hue_order=order, style_order=order, markers=True,
                     dashes=False, errorbar="sd", ax=ax, legend=ax is axes[0][-1])
        thr = _threshold(ax, threshold)
        _sparsity_axis(ax, subs=(1.0, 2.0, 5.0))  # narrow panels
        ax.set(title=split, ylabel="instability: error barrier (%)")
    _legend(axes[0][-1], [thr])
    fig.suptitle(_title(df, "instability of sparse subnetworks"))
    fig.tight_layout()
    return fig


FIGURES: dict[str, Callable[[Path, float], Figure]] = {
    "interp_k0": plot_interp_k0,
    "instability": plot_instability,
    "imp": plot_imp,
    "imp_instability": plot_imp_instability,
}

# Paper A's further figures (control, interp_imp, table2, rewind_instability, rewind_accuracy,
# sparsity_ranges) live in figures_paper_a, which reuses the helpers above and adds itself to
# FIGURES when imported (so either module may be imported first).
from lmcpipe import (  # noqa: E402, F401
    figures_bc,
    figures_paper_a,
    figures_probes,
    figures_ranges,
    figures_sweep,
)

DENSITY_TEXT = {"all_weights": "all conv/linear weights", "prunable_weights": "prunable weights"}


def render(name: str, tables_dir: Path, threshold: float = 0.02) -> Figure:
    """Build figure ``name`` in the project's style, then say what it rests on (``annotate``)."""
    sns.set_theme(style="whitegrid", context="paper")
    fig = FIGURES[name](Path(tables_dir), threshold)
    annotate(fig, Path(tables_dir) / "runs.csv")
    return fig


def annotate(fig: Figure, runs_csv: Path) -> None:
    """What every figure of an experiment says about its runs (read from ``runs.csv``):

    * a "weights remaining (%)" axis names the set the density is over (``density_of``);
    * runs that ended at chance error (``at_chance``) are counted in a footnote, since their
      accuracy is noise and their pairs look stable.
    """
    if not runs_csv.exists():  # a sweep's figures: its members' tables say it
        return
    runs = pd.read_csv(runs_csv)
    bases = set(runs["density_of"]) if "density_of" in runs else set()
    if len(bases) == 1:
        basis = DENSITY_TEXT.get(bases.pop())
        for ax in fig.axes:
            label = ax.get_xlabel()
            if basis and "weights remaining" in label and "(%)" in label:
                ax.set_xlabel(label.replace("(%)", f"(% of {basis})"))
    if "at_chance" in runs and runs["at_chance"].astype(bool).any():
        n = int(runs["at_chance"].astype(bool).sum())
        fig.text(0.01, 0.005, f"Note: {n} of {len(runs)} runs ended at chance error "
                 "(at_chance in runs.csv); they are included", fontsize=7, color="firebrick",
                 ha="left", va="bottom")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", required=True, choices=sorted(FIGURES))
    p.add_argument("--tables", required=True, help="directory holding the experiment's CSVs")
    p.add_argument("--threshold", type=float, default=0.02,
                   help="stability threshold on the error barrier (fraction)")
    p.add_argument("--out", required=True, help="PDF file to write")


def main(args: argparse.Namespace) -> None:
    fig = render(args.name, args.tables, args.threshold)
    try:
        write_atomic(args.out, lambda tmp: fig.savefig(tmp, format="pdf"))
    finally:
        plt.close(fig)
    print(f"wrote {args.out}")
