"""Paper B sweep figures (sweep_accuracy, sweep_instability) render from synthetic sweep tables."""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from lmcpipe.csvfiles import save_frame
from lmcpipe.figures import registry, sweep
from lmcpipe.figures.render import render
from lmcpipe.stages import figure as figure_stage

SEEDS, LEVELS = (0, 1), 7  # levels 0..6
BATCHES, WARMUPS, LAMBDAS = (128, 512, 2048), (0, 100), (0.0, 2.0, -1.0)
NAMES = ("sweep_accuracy", "sweep_instability")


def write_tables(root: Path, swept: dict[str, tuple], epochs: bool = False) -> Path:
    """sweep_runs / sweep_instability of one member per combination of ``swept`` values.

    ``epochs``: warmups are written as epochs ("1ep"), trained as 12 800 / batch iterations, as
    the sweep-table stage writes them (value as trained, ``<key>_setting`` as written).
    """
    rng = np.random.default_rng(0)
    runs, inst = [], []
    keys = list(swept)
    for values in itertools.product(*swept.values()):
        setting = dict(zip(keys, values, strict=True))
        member = dict(setting)
        if epochs:
            ep = int(str(setting["warmup_steps"]).removesuffix("ep"))
            member["warmup_steps"] = ep * 12_800 // setting["batch_size"]
            member.update({f"{k}_setting": str(v) for k, v in setting.items()})
        name = "m-" + "-".join(str(v) for v in values)
        scale = 1 + member.get("batch_size", 128) / 1024 - member.get("warmup_steps", 0) / 200
        for s, n in itertools.product(SEEDS, range(LEVELS)):
            ident = dict(sweep="recipe", experiment=name, seed=s, rewind_step=0, level=n,
                         density=0.8 ** n, order=0, **member, swept="|".join(keys))
            for v in ("imp", "reinit") if n else ("imp",):
                err = 0.1 + 0.01 * n * (v == "reinit") + rng.normal(0, 0.003)
                runs.append({**ident, "variant": v, "copy": 1, "step": 1000, "train_loss": 0.1,
                             "train_error": 0.01, "test_loss": 0.3, "test_error": err})
                for split in ("train", "test"):
                    b = abs(0.01 * scale * (1 + n / 3) + rng.normal(0, 0.002))
                    inst.append({**ident, "variant": v, "bn_mode": "none", "split": split,
                                 "barrier": b, "max_error": err + b, "endpoint_error": err,
                                 "stable": b < 0.02})
    root.mkdir(parents=True, exist_ok=True)
    save_frame(pd.DataFrame(runs), root / "sweep_runs.csv")
    save_frame(pd.DataFrame(inst), root / "sweep_instability.csv")
    return root


@pytest.fixture(scope="module")
def two_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tables(tmp_path_factory.mktemp("bs_warmup"),
                        {"batch_size": BATCHES, "warmup_steps": WARMUPS})


@pytest.fixture(scope="module")
def one_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tables(tmp_path_factory.mktemp("repel"), {"repel_lambda": LAMBDAS})


def _legend_texts(fig) -> set[str]:
    return {t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().texts}


def test_registered() -> None:
    assert set(NAMES) <= set(registry.FIGURES)
    assert all(registry.FIGURES[n].function() is getattr(sweep, f"plot_{n}") for n in NAMES)


def test_choose_levels() -> None:
    assert sweep.choose_levels(range(21)) == [5, 10, 15]
    assert sweep.choose_levels(range(7)) == [1, 3, 6]
    assert sweep.choose_levels([0, 1, 2, 3, 4, 5, 10]) == [1, 3, 10]  # 15 missing
    assert sweep.choose_levels([0, 4, 2]) == [2, 4]
    assert sweep.choose_levels([0]) == []


def test_value_labels() -> None:
    label = sweep.value_label
    assert label("batch_size", 512) == "batch 512"
    assert (label("warmup_steps", 0), label("warmup_steps", 100)) == ("no warmup",
                                                                      "warmup 100 it")
    assert [label("repel_lambda", v) for v in (2.0, -1.0, 0.0)] == [
        "λ = 2 (repel)", "λ = −1 (attract)", "λ = 0 (IMP)"]
    assert label("lr", 0.1) == "lr = 0.1"


def test_accuracy_two_keys_grid(two_keys: Path, tmp_path: Path) -> None:
    fig = render("sweep_accuracy", two_keys, 0.02)
    try:
        assert len(fig.axes) == len(WARMUPS) * len(BATCHES)  # 2 x 3 grid
        assert [ax.get_title() for ax in fig.axes[:3]] == [
            "batch 128, no warmup", "batch 512, no warmup", "batch 2048, no warmup"]
        assert fig.axes[3].get_title() == "batch 128, warmup 100 it"
        assert fig.axes[0].get_shared_y_axes().joined(fig.axes[0], fig.axes[5])
        assert {"IMP (k=0)", "random reinit (k=0)", "dense (mean ± sd)"} <= _legend_texts(fig)
        assert fig._suptitle.get_text().startswith("recipe: ")
        lo, hi = fig.axes[0].get_xlim()
        assert lo > hi  # dense on the left
        assert all(len(ax.get_lines()) >= 3 for ax in fig.axes)  # dense, IMP, reinit
    finally:
        plt.close(fig)


def test_accuracy_one_key_row(one_key: Path) -> None:
    fig = render("sweep_accuracy", one_key, 0.02)
    try:
        assert [ax.get_title() for ax in fig.axes] == [
            "λ = −1 (attract)", "λ = 0 (IMP)", "λ = 2 (repel)"]
    finally:
        plt.close(fig)


def test_instability_two_keys(two_keys: Path) -> None:
    fig = render("sweep_instability", two_keys, 0.02)
    try:
        assert [ax.get_title() for ax in fig.axes] == ["test", "train"]
        ax = fig.axes[0]
        assert ax.get_xscale() == "log"
        assert [t.get_text() for t in ax.get_xticklabels()] == ["128", "512", "2048"]
        assert ax.get_xlabel() == "batch size"
        labels = _legend_texts(fig)
        assert {"round 0 (dense)", "round 1 (80.0% weights)", "round 3 (51.2% weights)",
                "round 6 (26.2% weights)", "no warmup", "warmup 100 it",
                "threshold (2%)"} <= labels
        # the dense round is drawn (grey) beside the pruned ones, one line per warmup
        grey = [ln for ln in ax.get_lines() if ln.get_color() == "0.45" and
                len(ln.get_xdata()) == 3]
        assert len(grey) == 2
        styles = {ln.get_linestyle() for ln in ax.get_lines() if len(ln.get_xdata()) == 3}
        assert styles == {"-", ":"}  # one per warmup
    finally:
        plt.close(fig)


def test_instability_one_key(one_key: Path) -> None:
    fig = render("sweep_instability", one_key, 0.02)
    try:
        ax = fig.axes[0]
        assert ax.get_xscale() == "linear"
        assert [t.get_text() for t in ax.get_xticklabels()] == ["−1", "0", "2"]
        assert not {"no warmup"} & _legend_texts(fig)
    finally:
        plt.close(fig)


@pytest.mark.parametrize("name", NAMES)
def test_main_writes_pdf(name: str, two_keys: Path, tmp_path: Path) -> None:
    out = tmp_path / f"{name}.pdf"
    figure_stage.main(argparse.Namespace(name=name, tables=str(two_keys), threshold=0.02,
                                         out=str(out), png=None))
    assert out.read_bytes().startswith(b"%PDF")


@pytest.mark.parametrize("name,table", [("sweep_accuracy", "sweep_runs"),
                                        ("sweep_instability", "sweep_instability")])
def test_missing_and_empty_tables(name: str, table: str, two_keys: Path,
                                  tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=table):
        render(name, tmp_path / "nothing")
    empty = tmp_path / "empty"
    empty.mkdir()
    save_frame(pd.read_csv(two_keys / f"{table}.csv").iloc[:0], empty / f"{table}.csv")
    with pytest.raises(ValueError, match=table):
        render(name, empty)
    only_reinit = tmp_path / "reinit"
    only_reinit.mkdir()
    df = pd.read_csv(two_keys / f"{table}.csv")
    save_frame(df[df["variant"] == "reinit"], only_reinit / f"{table}.csv")
    with pytest.raises(ValueError, match=table):
        render(name, only_reinit)


def test_warmup_in_epochs_is_one_panel_row_and_one_line_style(tmp_path: Path) -> None:
    """"1ep" trains 100 iterations at batch 128 and 6 at 2048: still one setting, not three."""
    root = write_tables(tmp_path, {"batch_size": BATCHES, "warmup_steps": (0, "1ep")},
                        epochs=True)
    assert pd.read_csv(root / "sweep_runs.csv")["warmup_steps"].nunique() == 4
    fig = render("sweep_accuracy", root, 0.02)
    try:
        assert len(fig.axes) == 2 * len(BATCHES)
        assert [ax.get_title() for ax in fig.axes[3:]] == [
            "batch 128, warmup 1ep", "batch 512, warmup 1ep", "batch 2048, warmup 1ep"]
        assert not any(t.get_text() == "no runs" for ax in fig.axes for t in ax.texts)
    finally:
        plt.close(fig)
    fig = render("sweep_instability", root, 0.02)
    try:
        assert {"no warmup", "warmup 1ep"} <= _legend_texts(fig)
        ax = fig.axes[0]
        styles = {ln.get_linestyle() for ln in ax.get_lines() if len(ln.get_xdata()) == 3}
        assert styles == {"-", ":"}
    finally:
        plt.close(fig)
