"""``lmcpipe <stage>``: one thin subcommand per pipeline stage.

Stage modules are imported only when their subcommand runs, so a training job never pays for
pandas/seaborn imports it does not need beyond its own.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from lmcpipe.errors import StageError  # stdlib only: no torch import

DESCRIPTION = "lmcpipe: lottery tickets and linear mode connectivity, one subcommand per stage."

# subcommand -> (module, add_arguments, main, help); a stage lives in stages/<subcommand>.py
# ("-" written "_", see lmcpipe.stages)
STAGES = {
    "init": ("stages.init", "add_arguments", "main", "write W_0 of an init seed"),
    "train": ("stages.train", "add_arguments", "main",
              "train from a start point with a mask (dense, rewind, retrain, fork copies)"),
    "cohort": ("stages.cohort", "add_arguments", "main",
               "train the runs of one (seed, k, level) together: a cohort"),
    "prune": ("stages.prune", "add_arguments", "main",
              "IMP mask of the next level (and the random-pruning baseline's)"),
    "interpolate": ("stages.interpolate", "add_arguments", "main",
                    "error along the path of a pair"),
    "interpolate-pairs": ("stages.interpolate_pairs", "add_arguments", "main",
                          "error along the paths of a cohort's pairs, in one process"),
    "aggregate": ("stages.aggregate", "add_arguments", "main", "tidy tables of an experiment"),
    "rounds": ("stages.rounds", "add_arguments", "main",
               "angles, thresholds, histograms and new small weights of one IMP chain"),
    "curvature": ("stages.curvature", "add_arguments", "main",
                  "Hessian top eigenvalue, trace and pruning-step curvature at one level"),
    "perturb": ("stages.perturb", "add_arguments", "main",
                "perturbed pruned rewind point (paper C, robustness)"),
    "oneshot-mask": ("stages.oneshot_mask", "add_arguments", "main",
                     "one-shot mask from a level's solution (paper C, maximal pruning ratio)"),
    "aggregate-analysis": ("stages.aggregate_analysis", "add_arguments", "main",
                           "one papers B/C table of an experiment"),
    "sweep-table": ("stages.sweep_table", "add_arguments", "main", "tables of a paper-B sweep"),
    "figure": ("stages.figure", "add_arguments", "main", "render one figure from the tables"),
    "download": ("stages.download", "add_arguments", "main",
                 "download a dataset with torchvision"),
    "check-config": ("stages.check_config", "add_arguments", "main", "validate a config file"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="lmcpipe", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="stage", metavar="STAGE")
    for name, (_, _, _, help_text) in STAGES.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if not argv:
        parser.print_help(sys.stderr)
        return 2
    if argv[0] not in STAGES:
        parser.parse_args(argv)  # prints help (-h) or "invalid choice" and exits
        return 2
    module_name, add_name, main_name, help_text = STAGES[argv[0]]
    module = importlib.import_module(f"lmcpipe.{module_name}")
    stage_parser = argparse.ArgumentParser(prog=f"lmcpipe {argv[0]}", description=help_text)
    getattr(module, add_name)(stage_parser)
    args = stage_parser.parse_args(argv[1:])
    try:
        getattr(module, main_name)(args)
    except StageError as e:  # e.g. a damaged file or a diverged run: one line, no traceback
        print(f"lmcpipe {argv[0]}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
