"""The one list of lmcpipe's figures: name -> family, the function drawing it, tables it reads.

The Snakemake rules (targets, figure rules) and ``lmcpipe figure`` read it at parse time, so this
module imports nothing but the standard library: a function is named by a
``"module:function"`` string and imported only when a figure is drawn (``Spec.function``).
Adding a figure is one line here plus its ``plot_*`` function.

Families:

* ``PAPER_A``: every experiment's figures, drawn from its tidy tables (``runs``, ``paths``,
  ``instability``); ``rule all`` builds them for every experiment;
* ``ANALYSIS``: papers B/C analyses of IMP chains. ``tables`` names the experiment tables the
  figure reads: the first is required (the figure is built only when the experiment switches
  that analysis on), the others are drawn when present (their analysis is switched on too);
* ``SWEEP``: figures of a paper-B sweep, drawn from the sweep's own tables under its name.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

PAPER_A = "paper_a"
ANALYSIS = "analysis"
SWEEP = "sweep"
FAMILIES = (PAPER_A, ANALYSIS, SWEEP)

_PACKAGE = "lmcpipe.figures"


@dataclass(frozen=True)
class Spec:
    """How one figure is made: ``draw`` is ``"<module of lmcpipe.figures>:<function>"``, the
    function taking ``(tables_dir, threshold)`` and returning a matplotlib Figure."""

    family: str
    draw: str
    tables: tuple[str, ...] = ()
    pruned: bool = False  # about pruned subnetworks: not a target of an unpruned experiment

    @property
    def module(self) -> str:
        return f"{_PACKAGE}.{self.draw.partition(':')[0]}"

    def function(self) -> Callable:
        """The drawing function (imports its module, and so matplotlib, on first use)."""
        module, _, name = self.draw.partition(":")
        return getattr(importlib.import_module(f"{_PACKAGE}.{module}"), name)


def _a(draw: str, pruned: bool = True) -> Spec:
    return Spec(PAPER_A, draw, pruned=pruned)


def _bc(draw: str, *tables: str) -> Spec:
    return Spec(ANALYSIS, draw, tables)


def _sweep(draw: str) -> Spec:
    return Spec(SWEEP, draw)


# Order matters: rules and tests iterate these lists.
FIGURES: dict[str, Spec] = {
    # paper A (Frankle et al. 2020)
    "interp_k0": _a("paper_a:plot_interp_k0", pruned=False),  # Fig 2
    "instability": _a("paper_a:plot_instability", pruned=False),  # Fig 3
    "imp": _a("paper_a:plot_imp"),
    "imp_instability": _a("paper_a:plot_imp_instability"),
    "control": _a("paper_a:plot_control", pruned=False),  # Fig 4
    "interp_imp": _a("paper_a_deepest:plot_interp_imp"),  # Fig 5
    "table2": _a("paper_a_deepest:plot_table2"),  # Table 2
    "rewind_instability": _a("paper_a_deepest:plot_rewind_instability"),  # Fig 6
    "rewind_accuracy": _a("paper_a_deepest:plot_rewind_accuracy"),  # Fig 7
    "sparsity_ranges": _a("ranges:plot_sparsity_ranges"),  # Fig 9
    # papers B (Maene et al. 2021) and C (Paul et al. 2023): one IMP chain's analyses
    "successive": _bc("chains:plot_successive", "successive"),
    "curvature": _bc("chains:plot_curvature", "curvature"),
    "angles": _bc("chains:plot_angles", "angles"),
    "thresholds": _bc("chains:plot_thresholds", "thresholds"),
    "histograms": _bc("chains:plot_histograms", "histograms"),
    "small_weights": _bc("chains:plot_small_weights", "small_weights"),
    "perturb": _bc("probes:plot_perturb", "perturb"),
    "max_prune": _bc("probes:plot_max_prune", "oneshot", "curvature"),
    # paper B's training-recipe sweeps
    "sweep_accuracy": _sweep("sweep:plot_sweep_accuracy"),
    "sweep_instability": _sweep("sweep:plot_sweep_instability"),
}


def names(family: str | None = None) -> tuple[str, ...]:
    """Figure names of ``family`` (all when None), in registry order."""
    if family is not None and family not in FAMILIES:
        raise ValueError(f"unknown figure family {family!r}, not one of {FAMILIES}")
    return tuple(n for n, s in FIGURES.items() if family is None or s.family == family)


def analysis_tables() -> dict[str, tuple[str, ...]]:
    """Papers B/C figure -> the tables it reads (the first required, the others if present)."""
    return {n: s.tables for n, s in FIGURES.items() if s.family == ANALYSIS}



# The figure lists the rules and tests read (``lmcpipe.paths`` spells the figures' file names).
PAPER_A_FIGURES = names(PAPER_A)
ANALYSIS_FIGURES = analysis_tables()
SWEEP_FIGURES = names(SWEEP)
PRUNED_FIGURES = tuple(n for n, s in FIGURES.items() if s.pruned)
