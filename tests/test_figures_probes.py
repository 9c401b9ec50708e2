"""Paper C probe figures (perturb, max_prune) render from small synthetic tables."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from lmcpipe import paths
from lmcpipe.csvfiles import save_frame
from lmcpipe.figures import probes, registry
from lmcpipe.figures.render import render
from lmcpipe.stages import figure as figure_stage

SEEDS, KS, LEVELS, SCALES, STEPS = (0, 1), (0, 100), 3, (0.0, 1.0, 2.0), (1, 2, 3)
CHAIN_LEVELS = 4  # the IMP chain's levels 0..3: imp_error is NaN beyond
F = 0.2


def _rows() -> list[dict]:
    return [dict(experiment="synth", seed=s, rewind_step=k, level=n)
            for s in SEEDS for k in KS for n in range(LEVELS)]


def write_tables(root: Path, curvature: bool = True) -> Path:
    """perturb, oneshot and (optionally) curvature: 2 seeds x 2 rewind steps x 3 levels."""
    rng = np.random.default_rng(0)
    d = lambda n: (1 - F) ** n  # noqa: E731
    perturb = []
    for r in _rows():
        dist = 0.5 * d(r["level"])
        for c in SCALES:
            for split in ("train", "test"):
                b = abs(0.01 * c * (1 + r["level"]) * (r["rewind_step"] == 0)
                        + rng.normal(0, 0.002))
                perturb.append({**r, "density": d(r["level"] + 1), "scale": c, "distance": dist,
                                "noise_norm": c * dist, "split": split, "barrier": b,
                                "max_error": 0.1 + b, "endpoint_error": 0.1, "error": 0.1,
                                "error_ref": 0.1, "dense_error": 0.1, "matching": b < 0.02,
                                "matching_ref": r["level"] < 2, "bn_mode": "none"})
    oneshot = []
    for r in _rows():
        for method in ("magnitude", "random"):
            for j in STEPS:
                depth = r["level"] + j
                for split in ("train", "test"):
                    b = abs(0.005 * j * (1 + 3 * (method == "random")) + rng.normal(0, 0.002))
                    err = 0.1 + 0.01 * j * (1 + (method == "random")) + rng.normal(0, 0.002)
                    imp = 0.1 + 0.005 * depth if depth < CHAIN_LEVELS else np.nan
                    oneshot.append({**r, "density_source": d(r["level"]), "method": method,
                                    "steps": j, "fraction": 1 - (1 - F) ** j,
                                    "density": d(depth), "split": split, "barrier": b,
                                    "max_error": err + b, "endpoint_error": err, "error": err,
                                    "error_source": 0.1, "imp_error": imp, "dense_error": 0.1,
                                    "matching": err < 0.125, "connected": b <= 0.02,
                                    "bn_mode": "none"})
    curv = [{**r, "density": d(r["level"]), "loss": 0.1, "grad_norm": 0.01,
             "top_eigenvalue": 10 * (1 + r["level"]) + rng.uniform(0, 1), "trace": 100.0,
             "trace_stderr": 2.0, "quad_magnitude": 1e-3, "quad_random": 1e-1, "n_pruned": 100,
             "examples": 512} for r in _rows()]
    root.mkdir(parents=True, exist_ok=True)
    tables = [("perturb", perturb), ("oneshot", oneshot)] + [("curvature", curv)] * curvature
    for name, rows in tables:
        save_frame(pd.DataFrame(rows), root / f"{name}.csv")
    return root


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> Path:
    return write_tables(tmp_path_factory.mktemp("tables_probes"))


def _legend_texts(fig) -> set[str]:
    """Texts of every legend, including one kept with ``add_artist``."""
    legends = [a for ax in fig.axes for a in [ax.get_legend(), *ax.artists] if a is not None]
    return {t.get_text() for leg in legends if hasattr(leg, "texts") for t in leg.texts}


def test_registered() -> None:
    assert {"perturb", "max_prune"} <= set(registry.FIGURES)
    assert all(registry.FIGURES[n].function() is getattr(probes, f"plot_{n}")
               for n in ("perturb", "max_prune"))


def test_max_prune_ratio_hand_built() -> None:
    fr = [0.2, 0.36, 0.488]
    rows = []
    # (level, split, matching, connected): level 0 -> p* = 0.36, level 1 -> nothing qualifies
    for level, split, match, conn in [(0, "test", [1, 1, 0], [1, 1, 1]),
                                      (0, "train", [1, 1, 1], [1, 1, 1]),
                                      (1, "test", [0, 1, 1], [1, 0, 0]),
                                      (1, "train", [1, 1, 1], [1, 1, 1])]:
        rows += [dict(experiment="x", seed=0, rewind_step=5, level=level,
                      density_source=0.8 ** level, method="magnitude", steps=j + 1,
                      fraction=f, split=split, matching=bool(m), connected=bool(c))
                 for j, (f, m, c) in enumerate(zip(fr, match, conn, strict=True))]
    out = probes.max_prune_ratio(pd.DataFrame(rows))
    assert list(out.columns) == ["experiment", "seed", "rewind_step", "level", "density_source",
                                 "method", "p_star"]
    assert len(out) == 2
    got = dict(zip(out["level"], out["p_star"], strict=True))
    assert got[0] == pytest.approx(0.36)
    assert got[1] == 0.0
    assert out.loc[out["level"] == 1, "density_source"].item() == pytest.approx(0.8)
    # CSV-style string booleans work too; train only -> empty frame with the same columns
    as_str = pd.DataFrame(rows).astype({"matching": str, "connected": str})
    assert probes.max_prune_ratio(as_str)["p_star"].tolist() == out["p_star"].tolist()
    train = probes.max_prune_ratio(pd.DataFrame(rows).query("split == 'train'"))
    assert train.empty and list(train.columns) == list(out.columns)


def test_perturb(tables: Path, tmp_path: Path) -> None:
    fig = render("perturb", tables, 0.02)
    try:
        assert len(fig.axes) == len(KS) * 2  # rows k, columns split
        titles = {ax.get_title() for ax in fig.axes}
        assert {"train, k = 0", "test, k = 100"} <= titles
        assert fig._suptitle.get_text().startswith("synth:")
        labels = _legend_texts(fig)
        assert {"0→1 (80.0% weights)", "1→2 (64.0% weights)", "2→3 (51.2% weights)"} <= labels
        assert {"threshold (2%)", "unperturbed L+1 matching", "not matching"} <= labels
        ticks = [t.get_text() for t in fig.axes[-1].get_xticklabels()]
        assert ticks == ["0", "1", "2"]
        assert all(ax.lines and ax.collections for ax in fig.axes)
    finally:
        plt.close(fig)
    out = tmp_path / "perturb.pdf"
    figure_stage.main(argparse.Namespace(name="perturb", tables=str(tables), threshold=0.02,
                                         out=str(out), png=None))
    assert out.read_bytes().startswith(b"%PDF")


def _titles(fig) -> list[str]:
    return [ax.get_title() for ax in fig.axes]


def test_max_prune_panels(tables: Path, tmp_path: Path) -> None:
    fig = render("max_prune", tables, 0.02)
    try:
        assert _titles(fig) == ["(a) p* per level", "(b) flatter solutions can be pruned more",
                                "(c) re-pruning without retraining"]
        assert fig._suptitle.get_text().startswith("synth:")
        labels = _legend_texts(fig)
        assert {"k = 0", "k = 100", "magnitude pruning", "random pruning",
                "IMP chain (level L+2)"} <= labels
        assert fig.axes[1].get_xscale() == "log" and fig.axes[1].collections
        assert all(ax.lines for ax in (fig.axes[0], fig.axes[2]))
    finally:
        plt.close(fig)
    bare = tmp_path / "no_curvature"
    bare.mkdir()
    for name in ("oneshot.csv", paths.check_file("oneshot.csv")):  # a table and its check
        shutil.copy(tables / name, bare)
    fig = render("max_prune", bare, 0.02)
    try:
        assert _titles(fig) == ["(a) p* per level", "(c) re-pruning without retraining"]
    finally:
        plt.close(fig)
    df = pd.read_csv(tables / "oneshot.csv")
    save_frame(df[df["steps"] != 2], bare / "oneshot.csv")
    fig = render("max_prune", bare, 0.02)
    try:
        assert _titles(fig) == ["(a) p* per level"]
        assert {"k = 0", "magnitude pruning"} <= _legend_texts(fig)
    finally:
        plt.close(fig)
    out = tmp_path / "max_prune.pdf"
    figure_stage.main(argparse.Namespace(name="max_prune", tables=str(tables), threshold=0.02,
                                         out=str(out), png=None))
    assert out.read_bytes().startswith(b"%PDF")


@pytest.mark.parametrize("name,table", [("perturb", "perturb"), ("max_prune", "oneshot")])
def test_missing_or_empty_table(name: str, table: str, tables: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=f"{table}.csv"):
        render(name, tmp_path, 0.02)
    df = pd.read_csv(tables / f"{table}.csv")
    save_frame(df.iloc[:0], tmp_path / f"{table}.csv")
    with pytest.raises(ValueError, match=f"{table}.csv"):
        render(name, tmp_path, 0.02)
    save_frame(df.assign(split="val"), tmp_path / f"{table}.csv")
    with pytest.raises(ValueError, match=f"{table}.csv"):
        render(name, tmp_path, 0.02)
    plt.close("all")
