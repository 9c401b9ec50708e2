"""Figures of a paper-B training-recipe sweep (Maene et al. 2021, Figs 1–3).

A sweep runs one experiment per combination of training values (batch size ± warmup, or the
repellent/attractive weight λ); ``lmcpipe sweep-table`` concatenates their tables into
``sweep_runs.csv`` and ``sweep_instability.csv``, whose column ``swept`` names the sweep's keys
("batch_size|warmup_steps"), each also a column of values. A member is an experiment, so its
curves look like paper A's (``style.variant_k_lines``) and its IMP rounds are picked as the
chain figures pick levels (``chains.spread``):

* ``sweep_accuracy`` (paper B Fig 1; Fig 3 for λ): test accuracy of IMP vs random reinit vs %
  weights remaining, one panel per combination of the swept values;
* ``sweep_instability`` (paper B Fig 2): IMP instability (test and train error barrier) vs the
  first swept key, one line per chosen IMP round.

Curves are the mean over seeds (and data orders) with a band of one standard deviation. A table
whose needed rows are empty raises a ``ValueError`` naming it, so an empty plot is never saved.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import NullLocator

from lmcpipe.figures import chains, style

PAPER_LEVELS = [5, 10, 15]  # the rounds paper B Fig 2 shows
TEST_FIRST = ("test", "train")  # paper B Fig 2's panel order (style.SPLITS is train first)
STYLES = ["-", ":", "-.", (0, (6, 2, 1, 2, 1, 2))]  # not "--": the threshold's
MARKERS = ["o", "X", "s", "D"]
KEY_TITLES = {"batch_size": "batch size", "warmup_steps": "warmup (iterations)",
              "repel_lambda": "λ (repel > 0, attract < 0)"}


def choose_levels(levels: Iterable[int], most: int = 3) -> list[int]:
    """IMP rounds to draw: [5, 10, 15] when all exist, else ``most`` evenly spaced rounds ≥ 1.

    Evenly spaced means the first, last and (for three) middle of the rounds present, fewer when
    fewer exist; the dense level 0 is never chosen.
    """
    present = sorted({int(n) for n in levels if int(n) >= 1})
    if most == len(PAPER_LEVELS) and set(PAPER_LEVELS) <= set(present):
        return list(PAPER_LEVELS)
    return chains.spread(present, most)


def value_label(key: str, value: object) -> str:
    """Panel / legend label of one swept value: "batch 512", "no warmup", "warmup 1ep",
    "λ = 2 (repel)"; a value as written in the sweep ("1ep") is shown as written."""
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            prefix = {"batch_size": "batch", "warmup_steps": "warmup"}.get(key)
            return f"{prefix} {value}" if prefix else f"{key} = {value}"
        value = int(number) if number.is_integer() else number
    if not isinstance(value, int | float):
        return f"{key} = {value}"
    shown = f"{value:g}".replace("-", "−")
    if key == "batch_size":
        return f"batch {shown}"
    if key == "warmup_steps":
        return "no warmup" if value == 0 else f"warmup {shown} it"
    if key == "repel_lambda":
        kind = "IMP" if value == 0 else ("repel" if value > 0 else "attract")
        return f"λ = {shown} ({kind})"
    return f"{key} = {shown}"


def _swept(df: pd.DataFrame, path: Path) -> list[str]:
    """The sweep's keys from the ``swept`` column, each checked to be a column."""
    names = df["swept"].dropna().astype(str)
    keys = [k for k in names.iloc[0].split("|") if k] if len(names) else []
    if not keys:
        raise ValueError(f"no swept keys in column 'swept' of table {path}")
    missing = [k for k in keys if k not in df.columns]
    if missing:
        raise ValueError(f"{path} lacks the swept columns {missing}")
    return keys


def _values(df: pd.DataFrame, key: str) -> list:
    return sorted(v.item() if hasattr(v, "item") else v for v in df[key].dropna().unique())


def _facets(df: pd.DataFrame, keys: list[str]) -> list[str]:
    """Per swept key, the column members are grouped by: the value as written in the sweep
    (``<key>_setting``: "1ep" is one panel although it is 469 iterations at batch 128 and 30 at
    2048) when the table has it, else the value as trained."""
    return [f"{k}_setting" if f"{k}_setting" in df.columns else k for k in keys]


def _facet_values(df: pd.DataFrame, column: str, key: str) -> list:
    """The values of a facet column, ordered by the trained value they stand for."""
    if column == key:
        return _values(df, key)
    first = df.groupby(column)[key].min().sort_values(kind="stable")
    return [v.item() if hasattr(v, "item") else v for v in first.index]


def _pick(df: pd.DataFrame, keys: list[str], values: tuple) -> pd.DataFrame:
    """Rows whose ``keys`` columns equal ``values`` (all rows when there are no keys)."""
    return df[(df[keys] == list(values)).all(axis=1)] if keys else df


# --- accuracy ---------------------------------------------------------------------------------
def plot_sweep_accuracy(tables_dir: Path, threshold: float) -> Figure:
    """Paper B Fig 1 (Fig 3 for λ): test accuracy of IMP and random reinit across the sweep.

    One panel per combination of swept values: columns are the first key's values, rows the
    combinations of the others (e.g. no warmup / warmup); test accuracy (%) vs % weights
    remaining (log axis), one curve per (variant, k), mean ± sd over seeds and orders, with the
    member's dense network (level-0 IMP runs) as a grey mean ± sd band. Shared axes.
    """
    df, path = style.load_table(tables_dir, "sweep_runs", ["sweep", "experiment", "variant",
                                                           "seed", "rewind_step", "level",
                                                           "density", "copy", "test_error",
                                                           "swept"])
    keys = _swept(df, path)
    df = df[df["copy"] == 1].assign(acc=100 * (1 - df["test_error"]))
    lines = style.variant_k_lines(df, path)
    facets = _facets(df, keys)
    lines["pct"] = 100 * lines.groupby([*facets, "variant", "rewind_step", "level"])[
        "density"].transform("mean")
    k0 = df["rewind_step"].min()
    dense = df[(df["variant"] == "imp") & (df["level"] == 0) & (df["rewind_step"] == k0)]
    style.require_rows(dense, path, f"dense runs (variant imp, level 0, k={k0:g}, copy 1)")
    cols = _facet_values(df, facets[0], keys[0])
    rows = list(itertools.product(*[_facet_values(df, f, k)
                                    for f, k in zip(facets[1:], keys[1:], strict=True)]))
    order = list(dict.fromkeys(lines["line"]))
    palette = {line: f"C{i}" for i, line in enumerate(order)}
    markers = {line: MARKERS[i % len(MARKERS)] for i, line in enumerate(order)}
    fig, axes = plt.subplots(len(rows), len(cols), sharex=True, sharey=True, squeeze=False,
                             figsize=(2.3 * len(cols) + 1.9, 2.3 * len(rows) + 0.6))
    band = None
    for r, rest in enumerate(rows):
        for c, first in enumerate(cols):
            ax, values = axes[r][c], (first, *rest)
            sub, dense_sub = _pick(lines, facets, values), _pick(dense, facets, values)
            ax.set_title(", ".join(value_label(k, v) for k, v in zip(keys, values, strict=True)))
            if sub.empty:
                ax.text(0.5, 0.5, "no runs", transform=ax.transAxes, ha="center", va="center")
                continue
            if not dense_sub.empty:
                band = style.dense_band(ax, dense_sub["acc"])
            sns.lineplot(sub, x="pct", y="acc", hue="line", style="line", palette=palette,
                         hue_order=order, style_order=order, markers=markers, dashes=False,
                         markersize=4, errorbar="sd", ax=ax, legend=False)
    for ax in axes.flat:
        style.sparsity_axis(ax, subs=(1.0, 2.0, 5.0))
        ax.set_ylabel("test accuracy (%)")
        ax.label_outer()
    entries = [(Line2D([], [], color=palette[n], marker=markers[n], markersize=4), n)
               for n in order]
    if band is not None:
        entries.append(band)
    style.legend(axes[0][-1], entries, small=True)
    fig.suptitle(style.title(df, "test accuracy of sparse subnetworks across the sweep",
                             by="sweep", width=None))
    fig.tight_layout()
    return fig


# --- instability --------------------------------------------------------------------------------
def _round_label(level: int, pct: float) -> str:
    if level == 0:
        return "round 0 (dense)"
    shown = f"{pct:.1f}" if pct >= 1 else f"{pct:.2g}"
    return f"round {level} ({shown}% weights)"


def _x_axis(ax: plt.Axes, key: str, values: list) -> None:
    """Log2 axis for batch sizes, linear otherwise, ticks at the swept values."""
    if key == "batch_size" and all(v > 0 for v in values):
        ax.set_xscale("log", base=2)
        ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticks(values, [f"{v:g}".replace("-", "−") for v in values])
    ax.set_xlabel(KEY_TITLES.get(key, key))


def plot_sweep_instability(tables_dir: Path, threshold: float) -> Figure:
    """Paper B Fig 2: instability of IMP subnetworks vs the first swept key (e.g. batch size).

    Panels test and train: the error barrier (%) between the two copies of an IMP pair vs the
    first swept key's value (log2 axis for batch size), one colour per chosen round (see
    ``choose_levels``; the dense round 0 in grey when its pairs were measured), one line style
    per combination of the other keys (solid: the first, e.g. no warmup; dotted: the second),
    mean ± sd over seeds and pairs, the stability threshold dashed. A non-numeric first key is
    drawn as categories.
    """
    df, path = style.load_table(tables_dir, "sweep_instability", ["sweep", "experiment",
                                                                  "variant", "seed", "level",
                                                                  "density", "split",
                                                                  "barrier", "swept"])
    keys = _swept(df, path)
    df = df[(df["variant"] == "imp") & df["split"].isin(style.SPLITS)]
    style.require_rows(df, path, "IMP pairs (variant imp) of split train or test")
    # the dense network (round 0) too, in grey, when its pairs were measured: in a regime where
    # pruned rounds are stable at every batch size, it is where a stabiliser shows
    levels = [0] * bool((df["level"] == 0).any()) + choose_levels(df["level"].unique())
    df = df[df["level"].isin(levels)]
    style.require_rows(df, path, "IMP pairs")
    xs = _values(df, keys[0])
    numeric = all(isinstance(v, int | float) for v in xs)
    df = df.assign(b=100 * df["barrier"], x=df[keys[0]] if numeric else df[keys[0]].map(
        {v: i for i, v in enumerate(xs)}))
    pct = 100 * df.groupby("level")["density"].mean()
    cmap = plt.get_cmap("viridis")
    pruned = [n for n in levels if n]
    colors = {n: cmap(i / max(len(pruned) - 1, 1) * 0.85) for i, n in enumerate(pruned)}
    colors = {0: "0.45", **colors} if 0 in levels else colors
    facets = _facets(df, keys)
    rest = list(itertools.product(*[_facet_values(df, f, k)
                                    for f, k in zip(facets[1:], keys[1:], strict=True)]))
    styles = {r: STYLES[i % len(STYLES)] for i, r in enumerate(rest)}
    splits = [s for s in TEST_FIRST if s in set(df["split"])]
    fig, axes = plt.subplots(1, len(splits), figsize=(style.WIDTH + 2.0, 3.5), sharey=True,
                             squeeze=False)
    for ax, split in zip(axes[0], splits, strict=True):
        sub = df[df["split"] == split]
        for (level, color), (r, ls) in itertools.product(colors.items(), styles.items()):
            mine = _pick(sub[sub["level"] == level], facets[1:], r)
            style.mean_sd_curve(ax, mine, "x", "b", color, ls=ls)
        thr = style.threshold_line(ax, threshold)
        if numeric:
            _x_axis(ax, keys[0], xs)
        else:
            ax.set_xticks(range(len(xs)), [str(v) for v in xs])
            ax.set_xlabel(KEY_TITLES.get(keys[0], keys[0]))
        ax.set(title=split, ylabel="instability: error barrier (%)")
    entries = [(Line2D([], [], color=c, marker="o", markersize=4), _round_label(n, pct[n]))
               for n, c in colors.items()]
    if len(styles) > 1:
        entries += [(Line2D([], [], color="0.3", ls=ls),
                     ", ".join(value_label(k, v) for k, v in zip(keys[1:], r, strict=True)))
                    for r, ls in styles.items()]
    style.legend(axes[0][-1], [*entries, thr], title="IMP round", small=True)
    fig.suptitle(style.title(df, "instability of IMP subnetworks across the sweep", by="sweep",
                             width=None))
    fig.tight_layout()
    return fig
