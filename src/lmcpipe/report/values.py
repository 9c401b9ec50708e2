"""What the report's measures share: the tables they read, the value they return, and the
two ways a measure declines (``NotRun``, ``NotComparable``).

``Tables`` reads an experiment's (or a sweep's) CSV tables once each; ``Value`` is lmcpipe's
side of a claim, a number with its spread and count and the sentence the report prints; the
helpers pick a claim's pruning level and the rows of one (variant, k, level).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lmcpipe import csvfiles, paths

DENSITY_FACTOR = 1.15  # a level "at" density d lies within this factor of d


class NotRun(Exception):
    """The tables lack what the measure needs; the message says what."""


class NotComparable(Exception):
    """The claim's premise does not hold for this experiment; the message says why."""


@dataclass(frozen=True)
class Value:
    """What lmcpipe found: ``mean`` (1.0/0.0 for a yes/no), its ``sd`` and ``n`` replicates,
    and ``text``, the sentence the report prints."""

    mean: float
    text: str
    sd: float = math.nan
    n: int = 0


class Tables:
    """An experiment's (or a sweep's) tables, each read once, None when the file is absent."""

    def __init__(self, directory: str | Path) -> None:
        self.directory, self._cache = Path(directory), {}

    def get(self, name: str) -> pd.DataFrame | None:
        if name not in self._cache:
            f = self.directory / paths.table_file(name)
            self._cache[name] = csvfiles.read(f) if f.exists() else None
        return self._cache[name]

    def need(self, name: str, what: str) -> pd.DataFrame:
        frame = self.get(name)
        if frame is None or frame.empty:
            raise NotRun(f"no {name}.csv rows: {what}")
        return frame


def pct(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"


def mean_sd(values: pd.Series, unit: str = "%", what: str = "replicates") -> Value:
    v = values.astype(float)
    sd = float(v.std(ddof=1)) if len(v) > 1 else math.nan
    spread = f" ± {pct(sd)}" if len(v) > 1 else ""
    return Value(float(v.mean()), f"{pct(float(v.mean()))}{spread} {unit} (n = {len(v)} {what})",
                 sd, len(v))


def flag(yes: bool, text: str, n: int = 0) -> Value:
    return Value(1.0 if yes else 0.0, text, n=n)


def truth(s: pd.Series) -> pd.Series:
    return s.map(lambda v: str(v).lower() == "true")


def summary_table(t: Tables) -> pd.DataFrame:
    s = t.need("summary", "the experiment's summary table")
    return s.assign(matching=truth(s["matching"]), stable=truth(s["stable"]),
                    has_pairs=s["n_pairs"] > 0)


def level_at(frame: pd.DataFrame, level: int | str | None, density: float | None) -> int:
    """The pruning level a claim is about: ``level`` (an int or "deepest"), or the level whose
    density is nearest ``density`` (within ``DENSITY_FACTOR``)."""
    levels = frame[["level", "density"]].drop_duplicates().sort_values("level")
    if density is None:
        if level == "deepest":
            if levels["level"].max() < 1:
                raise NotRun("no pruned level (prune.levels is 0)")
            return int(levels["level"].max())
        return int(level or 0)
    pruned = levels[levels["level"] >= 1]
    if pruned.empty:
        raise NotRun("no pruned level (prune.levels is 0)")
    ratio = np.abs(np.log(pruned["density"].to_numpy() / density))
    best = int(np.argmin(ratio))
    if ratio[best] > math.log(DENSITY_FACTOR):
        run = ", ".join(f"{100 * d:.3g} %" for d in pruned["density"])
        raise NotRun(f"no level near {100 * density:.3g} % of weights (levels run: {run})")
    return int(pruned["level"].iloc[best])


def test_pairs(t: Tables) -> pd.DataFrame:
    inst = t.need("instability", "no pairs were interpolated")
    return inst[inst["split"] == "test"]


def condition_row(s: pd.DataFrame, variant: str, k: int, level: int) -> pd.Series:
    rows = s[(s["variant"] == variant) & (s["rewind_step"] == k) & (s["level"] == level)]
    if rows.empty:
        raise NotRun(f"no {variant} runs at k = {k}, level {level}")
    return rows.iloc[0]


def acc_text(row: pd.Series) -> str:
    return (f"{pct(row['test_accuracy_mean'])} % vs dense {pct(row['dense_accuracy_mean'])} %"
            f" at {100 * row['density']:.3g} %")
