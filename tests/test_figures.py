"""Figures render from small synthetic tables shaped exactly like ``lmcpipe aggregate``'s."""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from lmcpipe.csvfiles import DamagedTable, save_frame
from lmcpipe.figures import registry
from lmcpipe.figures.render import render
from lmcpipe.stages import figure as figure_stage

ID = ["experiment", "variant", "seed", "rewind_step", "level", "density", "order"]
SEEDS, ORDERS, LEVELS = (0, 1), (0, 1, 2), 6
FORK_STEPS, REWIND_STEPS = (0, 25, 100, 500, 2000), (0, 100)


def _pairs(baselines: tuple[str, ...], levels: int) -> list[dict]:
    """Pair identities as ``plan.pairs`` enumerates them, with a density per level."""
    out = []
    for s in SEEDS:
        for d in ORDERS:
            for k in sorted(set(FORK_STEPS) | set(REWIND_STEPS)):
                out.append(dict(variant="imp", seed=s, rewind_step=k, level=0, order=d))
            for k in REWIND_STEPS:
                for n in range(1, levels + 1):
                    for v in ("imp", *baselines):
                        out.append(dict(variant=v, seed=s, rewind_step=k, level=n, order=d))
    for p in out:
        p.update(experiment="synth", density=0.8 ** p["level"])
    return out


def _error(p: dict, rng: np.random.Generator, base: float) -> float:
    """Error that grows with sparsity for the baselines, a little noise for replicates."""
    penalty = {"imp": 0.002, "randprune": 0.006, "reinit": 0.01}[p["variant"]] * p["level"]
    return float(np.clip(base + penalty + rng.normal(0, 0.002), 0, 1))


def _barrier(p: dict, rng: np.random.Generator) -> float:
    """Unstable at k=0 and for baselines, stable once forked late or rewound."""
    unstable = p["rewind_step"] == 0 or p["variant"] != "imp"
    scale = 0.04 if unstable else 0.005 * 100 / (100 + p["rewind_step"])
    return float(abs(scale * (1 + 0.3 * p["level"] * unstable) + rng.normal(0, 0.003)))


def write_tables(root: Path, baselines: tuple[str, ...] = ("randprune", "reinit"),
                 levels: int = LEVELS) -> Path:
    rng = np.random.default_rng(0)
    runs, paths, inst, curves = [], [], [], []
    for p in _pairs(baselines, levels):
        ends = {}
        for c in (1, 2):
            m = {f"{s}_{k}": v for s, b in (("train", 0.002), ("test", 0.02))
                 for k, v in (("error", _error(p, rng, b)), ("loss", 0.1))}
            runs.append({**p, "copy": c, "step": 1000, **m})
            ends[c] = m
            for step in (0, 500, 1000):
                for split in ("train", "test"):
                    err = ends[c][f"{split}_error"] + 0.5 * (1 - step / 1000) ** 2
                    curves.append({**p, "copy": c, "step": step, "split": split,
                                   "loss": 2 * err, "error": err})
        for split in ("train", "test"):
            b = _barrier(p, rng)
            e1, e2 = ends[1][f"{split}_error"], ends[2][f"{split}_error"]
            alphas = np.linspace(0, 1, 11)
            errs = (1 - alphas) * e2 + alphas * e1 + 4 * b * alphas * (1 - alphas)
            paths += [{**p, "alpha": a, "split": split, "loss": 2 * e, "error": e}
                      for a, e in zip(alphas, errs, strict=True)]
            end = (e1 + e2) / 2
            inst.append({**p, "split": split, "barrier": errs.max() - end,
                         "max_error": errs.max(), "endpoint_error": end,
                         "stable": errs.max() - end < 0.02})
    root.mkdir(parents=True, exist_ok=True)
    cols = {
        "runs": [*ID, "copy", "step", "train_loss", "train_error", "test_loss", "test_error"],
        "paths": [*ID, "alpha", "split", "loss", "error"],
        "instability": [*ID, "split", "barrier", "max_error", "endpoint_error", "stable"],
        "curves": [*ID, "copy", "step", "split", "loss", "error"],
    }
    for name, rows in (("runs", runs), ("paths", paths), ("instability", inst),
                       ("curves", curves)):
        save_frame(pd.DataFrame(rows)[cols[name]], root / f"{name}.csv")
    return root


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tables(tmp_path_factory.mktemp("tables") / "synth")


def _run(name: str, tables: Path, out: Path, png: Path | None = None) -> None:
    figure_stage.main(argparse.Namespace(name=name, tables=str(tables), threshold=0.02,
                                         out=str(out), png=str(png) if png else None))


# papers B/C figures read their own tables: tests/test_figures_bc.py renders them
@pytest.mark.parametrize("name", sorted(registry.names(registry.PAPER_A)))
def test_every_figure_renders_a_pdf(name: str, tables: Path, tmp_path: Path) -> None:
    out, png = tmp_path / "figs" / f"{name}.pdf", tmp_path / "figs" / f"{name}.png"
    _run(name, tables, out, png)
    assert out.read_bytes().startswith(b"%PDF")
    assert out.stat().st_size > 1000
    assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 5000
    assert registry.FIGURES[name].caption and registry.FIGURES[name].paper == "A"
    assert not [p for p in out.parent.iterdir() if p.suffix == ".tmp"]


def test_cli_parses_arguments() -> None:
    p = argparse.ArgumentParser()
    figure_stage.add_arguments(p)
    args = p.parse_args(["--name", "imp", "--tables", "t", "--out", "x.pdf"])
    assert args.threshold == 0.02
    with pytest.raises(SystemExit):
        p.parse_args(["--name", "nope", "--tables", "t", "--out", "x.pdf"])


def _legend_texts(fig) -> set[str]:
    return {t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().texts}


def _data_lines(ax) -> list:
    """Seaborn's curves: lines with markers (the dense and threshold lines have none)."""
    return [ln for ln in ax.get_lines()
            if len(ln.get_xdata()) > 0 and ln.get_marker() not in (None, "None", "")]


def test_imp_has_one_line_per_variant_and_k(tables: Path) -> None:
    fig = render("imp", tables)
    expected = {f"{name} (k={k})" for name in ("IMP", "random pruning", "random reinit")
                for k in REWIND_STEPS}
    assert expected <= _legend_texts(fig)
    assert len(_data_lines(fig.axes[0])) == len(expected)
    lo, hi = fig.axes[0].get_xlim()
    assert lo > hi  # inverted: dense on the left
    plt.close(fig)


def test_figures_without_baselines(tmp_path: Path) -> None:
    root = write_tables(tmp_path / "nobase", baselines=())
    fig = render("imp", root)
    assert len(_data_lines(fig.axes[0])) == len(REWIND_STEPS)
    assert not any(t.startswith("random") for t in _legend_texts(fig))
    plt.close(fig)
    _run("imp_instability", root, tmp_path / "ii.pdf")
    assert (tmp_path / "ii.pdf").stat().st_size > 1000


def test_missing_rows_raise_helpful_errors(tables: Path, tmp_path: Path) -> None:
    root = tmp_path / "partial"
    root.mkdir()
    for name in ("paths", "instability", "runs"):
        df = pd.read_csv(tables / f"{name}.csv")
        save_frame(df[df["level"] > 0], root / f"{name}.csv")
    with pytest.raises(ValueError, match=r"no dense pairs at k=0 in .*paths\.csv"):
        render("interp_k0", root)
    with pytest.raises(ValueError, match=r"no dense pairs .* in .*instability\.csv"):
        render("instability", root)
    with pytest.raises(ValueError, match=r"no dense runs .* in .*runs\.csv"):
        render("imp", root)
    out = tmp_path / "never.pdf"
    with pytest.raises(ValueError):
        _run("interp_k0", root, out)
    assert not out.exists()


def test_missing_table_or_column(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="paths.csv"):
        render("interp_k0", tmp_path)
    save_frame(pd.DataFrame({"experiment": ["x"], "variant": ["imp"]}), tmp_path / "runs.csv")
    with pytest.raises(DamagedTable, match=r"runs\.csv is damaged \(no column "):
        render("imp", tmp_path)


# --- the registry -------------------------------------------------------------------------------
def test_every_registered_figure_resolves_to_a_plot_function() -> None:
    for name, spec in registry.FIGURES.items():
        assert spec.family in registry.FAMILIES, name
        fn = spec.function()
        assert callable(fn) and fn.__name__.startswith("plot_"), name
        assert fn.__module__ == spec.module, name
        assert (spec.family == registry.ANALYSIS) == bool(spec.tables), name


def test_every_plot_function_of_the_package_is_registered() -> None:
    """A ``plot_*`` function outside the registry would be a figure no rule can build."""
    import importlib
    import inspect
    import pkgutil

    import lmcpipe.figures

    registered = {(s.module, s.function().__name__) for s in registry.FIGURES.values()}
    found = set()
    for info in pkgutil.iter_modules(lmcpipe.figures.__path__):
        module = importlib.import_module(f"lmcpipe.figures.{info.name}")
        found |= {(module.__name__, n) for n, f in inspect.getmembers(module, inspect.isfunction)
                  if n.startswith("plot_") and f.__module__ == module.__name__}
    assert found == registered


def test_the_rules_lists_are_the_registry_families() -> None:
    from lmcpipe import paths

    assert registry.names(registry.PAPER_A) == registry.PAPER_A_FIGURES
    assert registry.names(registry.SWEEP) == registry.SWEEP_FIGURES
    assert registry.analysis_tables() == registry.ANALYSIS_FIGURES
    assert (set(registry.PAPER_A_FIGURES) | set(registry.SWEEP_FIGURES)
            | set(registry.ANALYSIS_FIGURES)) == set(registry.FIGURES)
    # the first table of an analysis figure is one an analysis switch produces
    assert {t[0] for t in registry.ANALYSIS_FIGURES.values()} <= set(paths.ANALYSIS_TABLES)


def test_registry_and_paths_import_without_matplotlib() -> None:
    """paths and the registry are read while Snakemake parses the rules: no plotting stack."""
    import os
    import subprocess
    import sys

    src = str(Path(__file__).resolve().parents[1] / "src")
    code = ("import sys; import lmcpipe.paths, lmcpipe.figures.registry; "
            "bad = {'matplotlib', 'pandas', 'seaborn', 'torch'} & set(sys.modules); "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60,
                   env={**os.environ, "PYTHONPATH": src})
