"""Paper A's further figures and the summary: synthetic tables, hand-made cases, small runs."""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from lmcpipe import summary
from lmcpipe.csvfiles import save_frame
from lmcpipe.figures import paper_a_deepest, registry
from lmcpipe.figures.render import render
from lmcpipe.stages import figure as figure_stage
from tests.test_figures import write_tables

NEW = ("control", "interp_imp", "table2", "rewind_instability", "rewind_accuracy",
       "sparsity_ranges")
TABLES = ("runs", "paths", "instability", "curves")


def _read_all(root: Path) -> dict[str, pd.DataFrame]:
    return {t: pd.read_csv(root / f"{t}.csv") for t in TABLES}


def _write_all(root: Path, frames: dict[str, pd.DataFrame]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, df in frames.items():
        save_frame(df, root / f"{name}.csv")
    return root


def _with_restart(frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Add ``restart`` rows: copies of the dense pairs forked at k > 0, slightly less stable."""
    out = {}
    for name, df in frames.items():
        dense = df[(df["variant"] == "imp") & (df["level"] == 0) & (df["rewind_step"] > 0)]
        restart = dense.assign(variant="restart")
        if "barrier" in restart:
            restart = restart.assign(barrier=restart["barrier"] * 1.1)
        out[name] = pd.concat([df, restart], ignore_index=True)
    return out


def _demo_like(frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Like the LeNet demo: IMP levels at k = 0 only, no restart, baselines run but unpaired."""
    out = {}
    for name, df in frames.items():
        keep = (df["level"] == 0) | (df["rewind_step"] == 0)
        baseline = df["variant"].isin(["randprune", "reinit"])
        if name in ("paths", "instability"):
            keep &= ~baseline
        else:
            keep &= ~baseline | (df["copy"] == 1)
        out[name] = df[keep]
    return out


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("paper_a")
    frames = _with_restart(_read_all(write_tables(root / "base")))
    return _write_all(root / "full", frames)


@pytest.fixture(scope="module")
def demo(full: Path) -> Path:
    frames = {t: df[df["variant"] != "restart"] for t, df in _read_all(full).items()}
    return _write_all(full.parent / "demo", _demo_like(frames))


@pytest.fixture(scope="module")
def dense_only(full: Path) -> Path:
    frames = {t: df[(df["level"] == 0) & (df["variant"] == "imp")]
              for t, df in _read_all(full).items()}
    return _write_all(full.parent / "dense_only", frames)


def _run(name: str, tables: Path, out: Path) -> None:
    figure_stage.main(argparse.Namespace(name=name, tables=str(tables), threshold=0.02,
                                         out=str(out), png=None))


def test_registered_everywhere() -> None:
    assert set(NEW) <= set(registry.FIGURES)
    assert set(NEW) <= set(registry.PAPER_A_FIGURES)
    assert set(registry.PAPER_A_FIGURES) <= set(registry.FIGURES)  # rule all can build every target
    owners = {registry.FIGURES[n].function().__module__ for n in NEW}
    assert owners == {"lmcpipe.figures.paper_a", "lmcpipe.figures.paper_a_deepest",
                      "lmcpipe.figures.ranges"}


@pytest.mark.parametrize("case", ["full", "demo", "dense_only"])
def test_every_new_figure_renders(case: str, request: pytest.FixtureRequest,
                                  tmp_path: Path) -> None:
    tables = request.getfixturevalue(case)
    for name in NEW:
        out = tmp_path / f"{name}.pdf"
        _run(name, tables, out)
        assert out.read_bytes().startswith(b"%PDF")
        assert out.stat().st_size > 1000


@pytest.mark.parametrize("case", ["full", "demo", "dense_only"])
def test_table2_text_lies_inside_the_page(case: str, request: pytest.FixtureRequest) -> None:
    """Every cell (the last column too), the title and the caption are drawn inside the figure,
    and no cell's text runs over its column's borders."""
    fig = render("table2", request.getfixturevalue(case))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    page, ax = fig.bbox, fig.axes[0]
    cells = ax.tables[0].get_celld().values()
    assert len(cells) % 7 == 0
    for text in [c.get_text() for c in cells] + ax.texts + [ax.title]:
        box = text.get_window_extent(renderer)
        assert page.x0 <= box.x0 and box.x1 <= page.x1, text.get_text()
        assert page.y0 <= box.y0 and box.y1 <= page.y1, text.get_text()
    for cell in cells:
        box, edges = cell.get_text().get_window_extent(renderer), cell.get_window_extent(renderer)
        assert edges.x0 <= box.x0 and box.x1 <= edges.x1, cell.get_text().get_text()
    plt.close(fig)


def _texts(fig) -> str:
    texts = [t.get_text() for ax in fig.axes for t in ax.texts] + [t.get_text() for t in fig.texts]
    return " ".join(" ".join(texts).split())  # notes are wrapped


def test_small_experiments_say_what_is_missing(demo: Path) -> None:
    fig = render("control", demo)
    assert "no restart pairs in this experiment (instability.control: false)" in _texts(fig)
    plt.close(fig)
    fig = render("rewind_instability", demo)
    assert "baseline_pairs: false" in _texts(fig)
    assert "only k = 0" in _texts(fig)
    plt.close(fig)


def test_control_has_both_curves(full: Path) -> None:
    fig = render("control", full)
    labels = {t.get_text() for t in fig.axes[-1].get_legend().texts}
    assert any(lab.startswith("T − k") for lab in labels)
    assert any("restarted" in lab for lab in labels)
    assert fig.axes[0].get_xscale() == "symlog"
    plt.close(fig)


def test_empty_runs_raise(tmp_path: Path, full: Path) -> None:
    frames = _read_all(full)
    frames["runs"] = frames["runs"].iloc[:0]
    root = _write_all(tmp_path / "empty", frames)
    for name in ("table2", "rewind_accuracy", "sparsity_ranges"):
        with pytest.raises(ValueError, match=r"runs\.csv"):
            render(name, root)


# --- summarise on a hand-made case ------------------------------------------------------------
def _runs(rows: list[tuple[str, int, int, int, int, float]]) -> pd.DataFrame:
    """(variant, k, level, seed, copy, test_error) -> a runs table (order 0, density 0.8^level)."""
    return pd.DataFrame([dict(experiment="x", variant=v, seed=s, rewind_step=k, level=n,
                              density=0.8 ** n, order=0, copy=c, test_error=e)
                         for v, k, n, s, c, e in rows])


def _inst(rows: list[tuple[str, int, int, int, float]]) -> pd.DataFrame:
    """(variant, k, level, seed, test barrier) -> instability rows (train barrier = half)."""
    out = []
    for v, k, n, s, b in rows:
        for split, value in (("test", b), ("train", b / 2)):
            out.append(dict(experiment="x", variant=v, seed=s, rewind_step=k, level=n,
                            density=0.8 ** n, order=0, split=split, barrier=value))
    return pd.DataFrame(out)


def test_summarise_hand_made() -> None:
    runs = _runs([
        ("imp", 0, 0, 0, 1, 0.10), ("imp", 0, 0, 1, 1, 0.12), ("imp", 0, 0, 0, 2, 0.50),
        ("imp", 0, 2, 0, 1, 0.115), ("imp", 0, 2, 1, 1, 0.115),   # 88.5: >= 89 - 1.414
        ("randprune", 0, 2, 0, 1, 0.13), ("randprune", 0, 2, 1, 1, 0.14),  # 86.5: not
    ])
    inst = _inst([("imp", 0, 0, 0, 0.05), ("imp", 0, 0, 1, 0.03),
                  ("imp", 0, 2, 0, 0.01), ("imp", 0, 2, 1, 0.02)])
    s = summary.summarise(runs, inst, threshold=0.02).set_index(["variant", "level"])
    dense = s.loc[("imp", 0)]
    assert dense["n"] == 2  # copy 2 is not a replicate
    assert dense["test_accuracy_mean"] == pytest.approx(89.0)
    assert dense["test_accuracy_std"] == pytest.approx(np.sqrt(2))
    assert dense["test_barrier_mean"] == pytest.approx(0.04)
    assert dense["train_barrier_mean"] == pytest.approx(0.02)
    assert not dense["stable"]
    imp = s.loc[("imp", 2)]
    assert imp["density"] == pytest.approx(0.64)
    assert imp["dense_accuracy_mean"] == pytest.approx(89.0)
    assert imp["accuracy_drop"] == pytest.approx(0.5)
    assert imp["matching"]
    assert imp["test_barrier_mean"] == pytest.approx(0.015)
    assert imp["stable"]
    rp = s.loc[("randprune", 2)]
    assert not rp["matching"]
    assert rp["n_pairs"] == 0 and pd.isna(rp["test_barrier_mean"]) and pd.isna(rp["stable"])
    # Fig 9's rule: drop < 0.2 points
    t = summary.summarise(runs, inst, 0.02, matching_tolerance=0.002).set_index(
        ["variant", "level"])
    assert not t.loc[("imp", 2), "matching"]
    assert t.loc[("imp", 0), "matching"]


def test_sparsity_ranges_hand_made() -> None:
    dense = [("imp", 0, 0, s, 1, 0.10) for s in (0, 1, 2)]  # dense mean 90.0
    rows, pairs = list(dense), []
    # level 1: IMP matching from k=0; random pruning matching from k=100 for 2 of 3 seeds
    # level 2: IMP matching from k=100 (seeds 0, 1), never (seed 2); random pruning never
    # level 3: nothing matching
    acc = {1: {"imp": {0: [0.101] * 3, 100: [0.10] * 3},
               "randprune": {0: [0.12] * 3, 100: [0.1015, 0.1015, 0.2]}},
           2: {"imp": {0: [0.11] * 3, 100: [0.101, 0.101, 0.11]},
               "randprune": {0: [0.2] * 3, 100: [0.2] * 3}},
           3: {"imp": {0: [0.11] * 3, 100: [0.11] * 3},
               "randprune": {0: [0.2] * 3, 100: [0.2] * 3}}}
    for n, by_v in acc.items():
        for v, by_k in by_v.items():
            for k, errs in by_k.items():
                rows += [(v, k, n, s, 1, e) for s, e in enumerate(errs)]
    # IMP level 2 stable at k=100 for seeds 0, 1 and at k=0 for seed 2: median first k = 100
    for s, b0, b100 in ((0, 0.05, 0.01), (1, 0.05, 0.01), (2, 0.01, 0.05)):
        pairs += [("imp", 0, 2, s, b0), ("imp", 100, 2, s, b100)]
    r = summary.sparsity_ranges(_runs(rows), _inst(pairs), threshold=0.02)
    r = r.set_index(["variant", "level"])
    assert r.loc[("imp", 1), "matching_k"] == 0
    assert r.loc[("randprune", 1), "matching_k"] == 100
    assert r.loc[("imp", 2), "matching_k"] == 100
    assert r.loc[("imp", 2), "stable_k"] == 100
    assert np.isinf(r.loc[("randprune", 2), "matching_k"])
    assert np.isinf(r.loc[("imp", 3), "matching_k"])
    assert pd.isna(r.loc[("imp", 1), "stable_k"])  # no pairs at level 1
    assert r.loc[("imp", 2), "n_pairs"] == 3 and r.loc[("imp", 1), "n_pairs"] == 0
    ranges = r.reset_index().groupby("level")["range"].first().to_dict()
    assert ranges == {1: "I", 2: "II", 3: "III"}
    bare = summary.sparsity_ranges(_runs(rows).drop(columns="experiment"),
                                   _inst(pairs).drop(columns="experiment"), threshold=0.02)
    assert bare.groupby("level")["range"].first().to_dict() == ranges
    # without random pruning, ranges I/II cannot be told apart
    no_rp = _runs([row for row in rows if row[0] != "randprune"])
    assert summary.sparsity_ranges(no_rp, _inst(pairs), 0.02)["range"].isna().all()


def test_median_never_counts_as_infinity() -> None:
    assert summary._median(pd.Series([0.0, np.inf, np.inf])) == np.inf
    assert summary._median(pd.Series([0.0, 100.0, np.inf])) == 100
    assert summary._median(pd.Series([100.0, np.inf])) == np.inf


def test_table2_frame(full: Path, demo: Path) -> None:
    t = paper_a_deepest.table2_frame(full)
    assert list(t["subnetwork"]) == ["dense", "IMP", "random pruning", "random reinit"]
    assert (t["rewind_step"] == 0).all()
    assert list(t["level"]) == [0, 6, 6, 6]
    assert t["density_pct"].iloc[1] == pytest.approx(100 * 0.8 ** 6)
    runs = pd.read_csv(full / "runs.csv")
    one = runs[(runs["variant"] == "randprune") & (runs["level"] == 6)
               & (runs["rewind_step"] == 0) & (runs["copy"] == 1)]
    row = t.set_index("subnetwork").loc["random pruning"]
    assert row["accuracy_mean"] == pytest.approx(100 * (1 - one["test_error"]).mean())
    assert row["n"] == len(one)
    assert t["dense_accuracy_mean"].nunique() == 1
    assert row["matching"] == (row["accuracy_mean"]
                               >= row["dense_accuracy_mean"] - row["dense_accuracy_std"])
    d = paper_a_deepest.table2_frame(demo).set_index("subnetwork")
    assert d.loc["random pruning", "n_pairs"] == 0 and pd.isna(d.loc["random pruning", "stable"])
