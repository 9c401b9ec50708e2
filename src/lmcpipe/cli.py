"""``lmcpipe <stage>``: one thin subcommand per pipeline stage.

Stage modules are imported only when their subcommand runs, so a training job never pays for
pandas/seaborn imports it does not need beyond its own.

Nothing a user got wrong ends in a traceback: argparse's errors (a missing flag, a malformed or
mismatching JSON flag: ``lmcpipe.hparams.JsonFlag``) and ``StageError``s (a bad value, a damaged
or missing dataset: ``lmcpipe.data.DataError``, a diverged run) print one line naming the stage
and what is wrong, and exit non-zero. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NoReturn

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
    "estimate": "what targets cost before they run: work, time here, roofline on a GPU",
}


def module(stage: str) -> str:
    """The module behind ``lmcpipe <stage>``: named after the subcommand, so a rule's shell
    line says where its code is (and ``codever.version`` of that name hashes it)."""
    return f"stages.{stage.replace('-', '_')}"


def one_line(text: str) -> str:
    """``text`` with its line breaks as spaces: an error the CLI prints is one line."""
    return " ".join(text.splitlines())


class Parser(argparse.ArgumentParser):
    """argparse with its errors on one line ("lmcpipe train: the following arguments are
    required: --seed") instead of a usage block before it: a failed job's log then ends in the
    one line that says what is wrong. Exit status 2 as argparse's; ``-h`` prints the usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {one_line(message)}\n")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = Parser(prog="lmcpipe", description=DESCRIPTION)
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
    stage_parser = Parser(prog=f"lmcpipe {argv[0]}", description=STAGES[argv[0]])
    stage.add_arguments(stage_parser)
    args = stage_parser.parse_args(argv[1:])  # JSON flags are checked here, before any data
    try:
        stage.main(args)
    except StageError as e:  # e.g. a damaged file or a diverged run: one line, no traceback
        print(f"lmcpipe {argv[0]}: {one_line(str(e))}", file=sys.stderr)
        return 1
    except (FileNotFoundError, PermissionError, IsADirectoryError) as e:  # a file it was given
        what = f"{e.filename}: {e.strerror}" if e.filename else str(e)
        print(f"lmcpipe {argv[0]}: {one_line(what)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
