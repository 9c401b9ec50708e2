"""The look every lmcpipe figure shares, and the table reading every figure starts with.

One definition of each piece so that two figures of the same quantity look alike: a figure
module draws its own panels but takes from here how a table is read (a missing table or column
fails naming the file), how the title, the legend, the stability threshold, the dense accuracy
band and the "% weights remaining" axis look, and which order the train/test splits come in.

Nothing here knows a figure's name; the registry (``lmcpipe.figures.registry``) does.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are files, never windows: cluster nodes have no display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

from lmcpipe import csvfiles, paths  # noqa: E402
from lmcpipe.summary import LABELS  # noqa: E402

SPLITS = ("train", "test")  # panel and hue order; a figure that wants another says so
WIDTH = 6.5  # inches: one column of the papers' layout
SMALL = 7  # points: legends of figures with many curves (one per k or per level)

Entry = tuple[object, str]  # (legend handle, label)


# --- tables ---------------------------------------------------------------------------------
def read_table(tables_dir: Path, name: str, columns: list[str]) -> tuple[pd.DataFrame, Path]:
    """Load ``<tables_dir>/<name>.csv`` and check it has ``columns``.

    Both failures name the file, so a figure job's log says which stage to rerun.
    """
    path = Path(tables_dir) / paths.table_file(name)
    if not path.exists():
        raise FileNotFoundError(f"missing table {path} (written by `lmcpipe aggregate`)")
    return csvfiles.read(path, columns), path


def require_rows(df: pd.DataFrame, path: Path, what: str) -> None:
    """Refuse to draw from no rows: an empty plot would look like a finished figure."""
    if df.empty:
        raise ValueError(f"no {what} in table {path}")


def load_table(tables_dir: Path, name: str, columns: list[str]) -> tuple[pd.DataFrame, Path]:
    """``read_table`` that also refuses a table without rows."""
    df, path = read_table(tables_dir, name, columns)
    require_rows(df, path, "any rows")
    return df, path


def as_bool(s: pd.Series) -> pd.Series:
    """Booleans from a CSV column (True/False, true/false or 1/0): CSVs do not keep dtypes."""
    if s.dtype == bool:
        return s
    return s.astype(str).str.strip().str.lower().isin(["true", "1", "1.0", "yes"])


# --- text -----------------------------------------------------------------------------------
def title(df: pd.DataFrame, what: str, by: str = "experiment", width: int | None = 48) -> str:
    """"<names in column ``by``>: <what>", broken after the colon when longer than ``width``
    characters (never when ``width`` is None) so that a long experiment name (a sweep member)
    does not run off a one-panel figure."""
    names = ", ".join(sorted(df[by].astype(str).unique()))
    sep = ":\n" if width is not None and len(names) + len(what) + 2 > width else ": "
    return f"{names}{sep}{what}"


def curve_label(variant: str, k: int) -> str:
    """Legend label of one (variant, rewind step k) curve: "IMP (k=100)"."""
    return f"{LABELS.get(variant, variant)} (k={k})"


def note(ax: plt.Axes, lines: Iterable[str], loc: str = "side") -> None:
    """A small grey remark saying what this experiment lacks (a figure still renders for it).

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


# --- curves ---------------------------------------------------------------------------------
def variant_k_lines(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Rows of each (variant, k) curve over sparsity, with ``line`` and ``pct`` columns.

    A curve exists for each (variant, k) with pruned levels; IMP curves start at their level 0
    (the dense network trained from W_k). Without any pruned level the dense IMP k=0 point stays.
    Curves come in the order of ``summary.LABELS`` so colours mean the same in every figure.
    """
    pruned = df[df["level"] >= 1]
    keys = set(zip(pruned["variant"], pruned["rewind_step"], strict=True)) or {("imp", 0)}
    keep = [(df["variant"] == v) & (df["rewind_step"] == k) for v, k in keys]
    out = df[pd.concat(keep, axis=1).any(axis=1)].copy()
    if out.empty:
        raise ValueError(f"no rows of (variant, k) in {sorted(keys)} in {path}")
    # density is identical across replicates up to rounding: one x per level keeps means aligned
    out["pct"] = 100 * out.groupby(["variant", "rewind_step", "level"])["density"].transform("mean")
    order = {v: i for i, v in enumerate(LABELS)}
    out = out.sort_values(["variant", "rewind_step", "level"],
                          key=lambda s: s.map(order) if s.name == "variant" else s)
    out["line"] = [curve_label(v, k)
                   for v, k in zip(out["variant"], out["rewind_step"], strict=True)]
    return out


def mean_sd_curve(ax: plt.Axes, df: pd.DataFrame, x: str, y: str, color: object,
                  ls: str = "-", marker: str | None = "o") -> None:
    """One mean ± sd curve over the rows sharing an x (bars for a single x: a band of one
    point is invisible); no legend entry, the caller builds the legend."""
    df = df.dropna(subset=[x, y])
    if df.empty:
        return
    style = "bars" if df[x].nunique() == 1 else "band"
    sns.lineplot(df, x=x, y=y, color=color, errorbar="sd", err_style=style, marker=marker,
                 markersize=4, ls=ls, ax=ax, legend=False)


def dense_band(ax: plt.Axes, acc: pd.Series, label: str = "dense (mean ± sd)") -> Entry:
    """The dense network's accuracy as a line (mean) in a grey band (± sample sd, 0 for one
    run), behind the curves; returns its legend entry."""
    mean, sd = acc.mean(), acc.std(ddof=1)
    sd = 0.0 if pd.isna(sd) else sd
    ax.axhspan(mean - sd, mean + sd, color="0.5", alpha=0.2, lw=0, zorder=0)
    line = ax.axhline(mean, color="0.4", lw=1, zorder=1)
    return (line, Patch(color="0.5", alpha=0.2)), label


def threshold_line(ax: plt.Axes, threshold: float) -> tuple[Line2D, str]:
    """The stability threshold on an error-barrier axis in %, dashed; returns its legend entry."""
    line = ax.axhline(100 * threshold, color="0.3", ls="--", lw=1, zorder=1)
    return line, f"threshold ({100 * threshold:g}%)"


# --- axes -----------------------------------------------------------------------------------
def sparsity_axis(ax: plt.Axes, subs: tuple[float, ...] = (1.0, 2.0, 3.0, 5.0)) -> None:
    """Log-scaled % weights remaining, dense (100) on the left, ticks at ``subs`` x 10^n."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    lo, hi = ax.get_xlim()
    ax.set_xlim(min(max(lo, hi), 115), min(lo, hi))  # nothing exceeds 100 %
    ax.set_xlabel("weights remaining (%)")


def k_axis(ax: plt.Axes, ks: Iterable[float], label: str, axis: str = "x") -> None:
    """Symlog axis of steps k (linear below the smallest positive k), ticks at the tested k.

    Symlog because k = 0 matters and the tested k span decades.
    """
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


# --- legends --------------------------------------------------------------------------------
def legend_entries(ax: plt.Axes) -> list[Entry]:
    """The entries of the legend seaborn drew on ``ax`` (none without one), to extend it."""
    old = ax.get_legend()
    if old is None:
        return []
    return list(zip(old.legend_handles, [t.get_text() for t in old.texts], strict=True))


def labelled_entries(ax: plt.Axes) -> list[Entry]:
    """An entry per artist of ``ax`` drawn with a ``label``."""
    handles, labels = ax.get_legend_handles_labels()
    return list(zip(handles, labels, strict=True))


def legend(ax: plt.Axes, entries: Sequence[Entry], title: str | None = None,
           outside: bool = True, small: bool = False) -> None:
    """Draw exactly ``entries`` as the legend of ``ax`` (nothing when there are none).

    ``outside``: right of the axes, top-aligned, no frame (the figures' widths leave room);
    else wherever it hides least. ``small``: 7-point text, for figures with many entries.
    """
    if not entries:
        return
    handles, labels = [h for h, _ in entries], [lab for _, lab in entries]
    size = SMALL if small else None
    place = (dict(loc="upper left", bbox_to_anchor=(1.02, 1), frameon=False) if outside
             else dict(loc="best"))
    ax.legend(handles, labels, title=title, fontsize=size, title_fontsize=size, **place)
