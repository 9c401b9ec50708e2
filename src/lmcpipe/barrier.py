"""The error barrier of an interpolation path, on its own so that table stages need no torch.

Paper A's instability: the largest error along the linear path between two networks minus the
mean of the two endpoints' errors (per split).
"""

from __future__ import annotations

import pandas as pd


def barrier(path: pd.DataFrame) -> pd.DataFrame:
    """Per split: max error on the path minus the mean endpoint error."""
    out = []
    for split, g in path.groupby("split", sort=False):
        g = g.sort_values("alpha")
        ends = (g["error"].iloc[0] + g["error"].iloc[-1]) / 2
        out.append({"split": split, "barrier": g["error"].max() - ends,
                    "max_error": g["error"].max(), "endpoint_error": ends})
    return pd.DataFrame(out)
