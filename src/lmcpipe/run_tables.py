"""A run's ``metrics.csv`` and a pair's ``path.csv``, read only when whole and as planned.

Both are checked twice (``lmcpipe.csvfiles``): against their check record (the bytes are what
the writer wrote) and against the plan (the file holds what this experiment asks for):

* ``metrics.csv``: one row per split (train, test) at every eval step from the run's start up
  to T, and at T. A file cut short at T lacks the final step: aggregating it once reported the
  dense run at step 0 with test error 0.0.
* ``path.csv``: one row per split at each of ``instability.alphas`` evenly spaced points of
  [0, 1]. Cut short, its barrier was NaN on one split and 0.0001 on the other (a pair marked
  stable); the clean values were 0.0033 and 0.0055.
"""

from __future__ import annotations

import pandas as pd

from lmcpipe import csvfiles
from lmcpipe.hparams import Experiment

SPLITS = ("train", "test")
METRIC_COLUMNS = ["step", "split", "loss", "error"]
PATH_COLUMNS = ["alpha", "split", "loss", "error"]
ALPHA_TOL = 1e-4  # of an alpha times (alphas - 1): far below the spacing 1, far above float32 error


def metric_steps(exp: Experiment, start_step: int) -> list[int]:
    """The steps a run from ``start_step`` evaluates at (``training.single.train``): the eval
    steps from its start on, and T."""
    steps = exp.train.steps
    return sorted({s for s in exp.train.eval_steps if start_step <= s < steps} | {steps})


def read_metrics(exp: Experiment, file: str, start_step: int) -> pd.DataFrame:
    """A run's training curve (``metrics.csv``), refused unless whole and as planned."""
    frame = csvfiles.read(file, METRIC_COLUMNS)
    steps = metric_steps(exp, start_step)
    csvfiles.expect_rows(frame, file, ["step", "split"],
                         {(s, split) for s in steps for split in SPLITS},
                         f"steps {', '.join(map(str, steps))} x {', '.join(SPLITS)}")
    return frame


def read_path(exp: Experiment, file: str) -> pd.DataFrame:
    """A pair's error along its path (``path.csv``), refused unless whole and as planned."""
    frame = csvfiles.read(file, PATH_COLUMNS)
    n = exp.interp.alphas
    # an alpha near a planned point i / (n - 1) stands for that point (the alphas are float32
    # linspace values written as text: equal up to ~1e-7); any other is kept and refused
    alpha = frame["alpha"].astype(float)
    planned = (alpha * (n - 1)).round() / (n - 1)
    on_grid = (alpha - planned).abs() * (n - 1) < ALPHA_TOL
    csvfiles.expect_rows(frame.assign(alpha=planned.where(on_grid, alpha)), file,
                         ["alpha", "split"],
                         {(i / (n - 1), split) for i in range(n) for split in SPLITS},
                         f"{n} alphas evenly spaced in [0, 1] x {', '.join(SPLITS)}")
    return frame
