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
    paper: str = "A"  # the paper whose figure it reproduces: the reports' category
    caption: str = ""  # one sentence under it in both reports

    @property
    def module(self) -> str:
        return f"{_PACKAGE}.{self.draw.partition(':')[0]}"

    def function(self) -> Callable:
        """The drawing function (imports its module, and so matplotlib, on first use)."""
        module, _, name = self.draw.partition(":")
        return getattr(importlib.import_module(f"{_PACKAGE}.{module}"), name)


def _a(draw: str, caption: str, pruned: bool = True) -> Spec:
    return Spec(PAPER_A, draw, pruned=pruned, caption=caption)


def _bc(draw: str, paper: str, caption: str, *tables: str) -> Spec:
    return Spec(ANALYSIS, draw, tables, paper=paper, caption=caption)


def _sweep(draw: str, caption: str) -> Spec:
    return Spec(SWEEP, draw, paper="B", caption=caption)


# Order matters: rules and tests iterate these lists.
FIGURES: dict[str, Spec] = {
    # paper A (Frankle et al. 2020)
    "interp_k0": _a("paper_a:plot_interp_k0", "Paper A Fig 2: train and test error along the "
                    "linear path between two dense copies trained from k = 0.", pruned=False),
    "instability": _a("paper_a:plot_instability", "Paper A Fig 3: train and test instability "
                      "(error barrier) of the dense network vs. the fork step k.", pruned=False),
    "imp": _a("paper_a:plot_imp", "Test accuracy of IMP subnetworks and their baselines vs. "
              "weights remaining, per rewind step k."),
    "imp_instability": _a("paper_a:plot_imp_instability", "Test instability of IMP "
                          "subnetworks and their baselines vs. weights remaining."),
    "control": _a("paper_a:plot_control", "Paper A Fig 4: instability of copies trained the "
                  "remaining T - k steps vs. copies with the schedule restarted at k.",
                  pruned=False),
    "interp_imp": _a("paper_a_deepest:plot_interp_imp", "Paper A Fig 5: test error along the "
                     "path at k = 0 for IMP subnetworks at the deepest sparsity."),
    "table2": _a("paper_a_deepest:plot_table2", "Paper A Table 2: accuracy at k = 0 of IMP, "
                 "random pruning and random reinit at the deepest level, with matching."),
    "rewind_instability": _a("paper_a_deepest:plot_rewind_instability", "Paper A Fig 6: "
                             "instability vs. rewind step k of IMP and baseline subnetworks."),
    "rewind_accuracy": _a("paper_a_deepest:plot_rewind_accuracy", "Paper A Fig 7: test "
                          "accuracy vs. rewind step k, dense accuracy as reference."),
    "sparsity_ranges": _a("ranges:plot_sparsity_ranges", "Paper A Fig 9: rewind step from "
                          "which subnetworks are stable and matching, and the ranges I/II/III."),
    # papers B (Maene et al. 2021) and C (Paul et al. 2023): one IMP chain's analyses
    "successive": _bc("chains:plot_successive", "C", "Paper C Sec. 3.1 (and paper B Fig 8): "
                      "barrier between successive IMP levels vs. density, matching marked.",
                      "successive"),
    "curvature": _bc("chains:plot_curvature", "C", "Paper C Sec. 3.3: Hessian top eigenvalue, "
                     "trace and curvature along the pruning step per level.", "curvature"),
    "angles": _bc("chains:plot_angles", "B", "Paper B Fig 4: angular distance between the "
                  "IMP rounds' solutions.", "angles"),
    "thresholds": _bc("chains:plot_thresholds", "B", "Paper B Fig 6: magnitude pruning "
                      "threshold per round vs. sparsity.", "thresholds"),
    "histograms": _bc("chains:plot_histograms", "B", "Paper B Fig 5: histograms of the "
                      "surviving weights per round.", "histograms"),
    "small_weights": _bc("chains:plot_small_weights", "C", "Paper C: overlap of the smallest "
                         "weights before and after retraining.", "small_weights"),
    "perturb": _bc("probes:plot_perturb", "C", "Paper C Sec. 3.2: barrier between perturbed "
                   "and unperturbed solutions vs. perturbation scale.", "perturb"),
    "max_prune": _bc("probes:plot_max_prune", "C", "Paper C Sec. 3.3: largest one-shot prune "
                     "fraction that stays matching, magnitude vs. random.", "oneshot",
                     "curvature"),
    # paper B's training-recipe sweeps
    "sweep_accuracy": _sweep("sweep:plot_sweep_accuracy", "Paper B Fig 1: accuracy vs. "
                             "sparsity of IMP and reinit over the swept training recipes."),
    "sweep_instability": _sweep("sweep:plot_sweep_instability", "Paper B Fig 2: instability "
                                "of IMP subnetworks over the swept training recipes."),
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
