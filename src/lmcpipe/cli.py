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

# subcommand -> help; its code is lmcpipe.stages.<subcommand> ("-" written "_"): see ``module``
STAGES = {
    "init": "write W_0 of an init seed",
    "train": "train from a start point with a mask (dense, rewind, retrain, fork copies)",
    "cohort": "train the runs of one (seed, k, level) together: a cohort",
    "prune": "IMP mask of the next level (and the random-pruning baseline's)",
    "interpolate": "error along the path of a pair",
    "interpolate-pairs": "error along the paths of a cohort's pairs, in one process",
    "aggregate": "tidy tables of an experiment",
    "rounds": "angles, thresholds, histograms and new small weights of one IMP chain",
    "curvature": "Hessian top eigenvalue, trace and pruning-step curvature at one level",
    "perturb": "perturbed pruned rewind point (paper C, robustness)",
    "oneshot-mask": "one-shot mask from a level's solution (paper C, maximal pruning ratio)",
    "aggregate-analysis": "one papers B/C table of an experiment",
    "sweep-table": "tables of a paper-B sweep",
    "figure": "render one figure from the tables",
    "report": "reproduction-report page of an experiment or sweep: the papers' claims judged",
    "report-index": "reproduction report's index page",
    "download": "download a dataset with torchvision",
    "check-config": "validate a config file",
}


def module(stage: str) -> str:
    """The module behind ``lmcpipe <stage>``: named after the subcommand, so a rule's shell
    line says where its code is (and ``codever.version`` of that name hashes it)."""
    return f"stages.{stage.replace('-', '_')}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="lmcpipe", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="stage", metavar="STAGE")
    for name, help_text in STAGES.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if not argv:
        parser.print_help(sys.stderr)
        return 2
    if argv[0] not in STAGES:
        parser.parse_args(argv)  # prints help (-h) or "invalid choice" and exits
        return 2
    stage = importlib.import_module(f"lmcpipe.{module(argv[0])}")
    stage_parser = argparse.ArgumentParser(prog=f"lmcpipe {argv[0]}", description=STAGES[argv[0]])
    stage.add_arguments(stage_parser)
    args = stage_parser.parse_args(argv[1:])
    try:
        stage.main(args)
    except StageError as e:  # e.g. a damaged file or a diverged run: one line, no traceback
        print(f"lmcpipe {argv[0]}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
