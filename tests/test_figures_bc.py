"""Paper B/C figures render from small synthetic tables with the aggregate stage's columns."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from lmcpipe.csvfiles import DamagedTable, save_frame
from lmcpipe.figures import chains, registry
from lmcpipe.figures.render import render
from lmcpipe.stages import figure as figure_stage

SEEDS, KS, LEVELS = (0, 1), (0, 100), 4
ROOT = Path(__file__).resolve().parents[1]


def _rows(levels: range) -> list[dict]:
    return [dict(experiment="synth", seed=s, rewind_step=k, level=n)
            for s in SEEDS for k in KS for n in levels]


def write_tables(root: Path) -> Path:
    """The six tables of papers B/C: 2 seeds x 2 rewind steps x 4 levels."""
    rng = np.random.default_rng(0)
    d = lambda n: 0.8 ** n  # noqa: E731
    succ = []
    for r in _rows(range(LEVELS - 1)):
        for split in ("train", "test"):
            b = abs(0.03 * (r["rewind_step"] == 0) + rng.normal(0, 0.003))
            succ.append({**r, "density": d(r["level"]), "density_next": d(r["level"] + 1),
                         "split": split, "barrier": b, "max_error": 0.1 + b,
                         "endpoint_error": 0.1, "error": 0.1, "error_next": 0.1,
                         "dense_error": 0.1, "matching": True,
                         "matching_next": r["level"] < 2, "bn_mode": "none"})
    angles = [dict(experiment="synth", seed=s, rewind_step=k, row=i, col=j,
                   angle=0.0 if i == j else min(1.0, 0.2 * abs(j - i) + rng.uniform(0, .05)))
              for s in SEEDS for k in KS for i in range(-1, LEVELS) for j in range(LEVELS)]
    thr = [{**r, "density_before": d(r["level"]), "density_after": d(r["level"] + 1),
            "threshold": 0.01 * (r["level"] + 1) + rng.uniform(0, 1e-3), "min_kept": 0.02}
           for r in _rows(range(LEVELS - 1))]
    edges = np.linspace(-0.5, 0.5, 21)
    hist = [{**r, "density": d(r["level"]), "bin_left": lo, "bin_right": hi,
             "count": int(1000 * d(r["level"]) * np.exp(-((lo + hi) / 2 / 0.2) ** 2))}
            for r in _rows(range(LEVELS)) for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    small = [{**r, "density": d(r["level"] + 1), "overlap": 0.6 + rng.uniform(0, 0.1),
              "jaccard": 0.4, "chance": 0.2, "n_set": 50, "n_kept": 400}
             for r in _rows(range(LEVELS - 1))]
    curv = [{**r, "density": d(r["level"]), "loss": 0.1, "grad_norm": 0.01,
             "top_eigenvalue": 10 * (1 + r["level"]) + rng.uniform(0, 1),
             "trace": 100 + rng.uniform(0, 5), "trace_stderr": 2.0,
             "quad_magnitude": 1e-3 * (1 + r["level"]), "quad_random": 1e-1,
             "n_pruned": 100, "examples": 512} for r in _rows(range(LEVELS))]
    for name, rows in [("successive", succ), ("angles", angles), ("thresholds", thr),
                       ("histograms", hist), ("small_weights", small), ("curvature", curv)]:
        save_frame(pd.DataFrame(rows), root / f"{name}.csv")
    return root


# name -> (axes incl. colour bars, panel titles that must appear)
EXPECTED = {
    "successive": (2, ["train", "test"]),
    "angles": (3, ["k = 0", "k = 100"]),
    "thresholds": (1, []),
    "histograms": (1, []),
    "small_weights": (1, []),
    "curvature": (3, ["sharpness", "trace", "next pruning step"]),
}


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> Path:
    return write_tables(tmp_path_factory.mktemp("tables_bc"))


def test_registered() -> None:
    assert set(EXPECTED) <= set(registry.FIGURES)
    assert all(registry.FIGURES[n].function() is getattr(chains, f"plot_{n}") for n in EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_render_and_save(name: str, tables: Path, tmp_path: Path) -> None:
    fig = render(name, tables, 0.02)
    try:
        n_axes, titles = EXPECTED[name]
        assert len(fig.axes) == n_axes
        shown = {ax.get_title() for ax in fig.axes}
        assert set(titles) <= shown
        heading = fig._suptitle.get_text() if fig._suptitle else fig.axes[0].get_title()
        assert heading.startswith("synth:")
        plotted = [ax for ax in fig.axes if ax.lines or ax.collections]
        assert plotted, "nothing drawn"
        assert any(ax.get_legend() for ax in fig.axes) or name == "angles"
        assert all(ax.get_xlabel() and ax.get_ylabel() for ax in fig.axes[:len(titles) or 1])
    finally:
        plt.close(fig)
    out = tmp_path / f"{name}.pdf"
    figure_stage.main(argparse.Namespace(name=name, tables=str(tables), threshold=0.02,
                                         out=str(out), png=None))
    assert out.read_bytes().startswith(b"%PDF")


def test_angles_init_row_last(tables: Path) -> None:
    df = pd.read_csv(tables / "angles.csv")
    m = chains._angle_matrix(df[df["rewind_step"] == 0])
    assert list(m.index) == ["0", "1", "2", "3", "init"]
    assert list(m.columns) == [0, 1, 2, 3]
    assert m.loc["0", 0] == 0.0


def test_spread_levels() -> None:
    assert chains.spread(list(range(4))) == [0, 1, 2, 3]
    picked = chains.spread(list(range(20)))
    assert len(picked) == 6 and picked[0] == 0 and picked[-1] == 19


def test_successive_marks_matching(tables: Path) -> None:
    fig = render("successive", tables, 0.02)
    try:
        labels = [t.get_text() for t in fig.axes[-1].get_legend().texts]
        assert {"matching (level L+1)", "not matching", "threshold (2%)"} <= set(labels)
        assert {"k = 0", "k = 100"} <= set(labels)
    finally:
        plt.close(fig)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_missing_or_empty_table(name: str, tables: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=f"{name}.csv"):
        render(name, tmp_path, 0.02)
    header = pd.read_csv(tables / f"{name}.csv").iloc[:0]
    save_frame(header, tmp_path / f"{name}.csv")
    with pytest.raises(ValueError, match=f"{name}.csv"):
        render(name, tmp_path, 0.02)
    plt.close("all")


def test_missing_column_and_no_split_rows(tables: Path, tmp_path: Path) -> None:
    df = pd.read_csv(tables / "successive.csv")
    save_frame(df.drop(columns="barrier"), tmp_path / "successive.csv")
    with pytest.raises(DamagedTable, match=r"successive\.csv is damaged \(no column barrier\)"):
        render("successive", tmp_path, 0.02)
    save_frame(df.assign(split="val"), tmp_path / "successive.csv")
    with pytest.raises(ValueError, match="successive.csv"):
        render("successive", tmp_path, 0.02)


def test_cli(tables: Path, tmp_path: Path) -> None:
    out = tmp_path / "successive.pdf"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    res = subprocess.run([sys.executable, "-m", "lmcpipe", "figure", "--name", "successive",
                          "--tables", str(tables), "--threshold", "0.02", "--out", str(out)],
                         env=env, capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    assert out.read_bytes().startswith(b"%PDF")
