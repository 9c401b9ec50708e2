"""The tables of a paper-B sweep, concatenated from its member experiments.

A sweep (``sweep:`` in an experiment of ``config.yaml``) runs one experiment per combination of
training values — batch size ± warmup (paper B Figs 1–2) or the repellent/attractive weight λ
(Fig 3). ``sweep_runs.csv`` holds the members' copy-1 runs and ``sweep_instability.csv`` their
pairs' barriers, each row with the member's swept values in columns named after the keys (as it
trained: iterations), the values as written in the sweep in ``<key>_setting`` ("1ep" is one epoch
at every batch size, a different iteration count for each), and the key names in ``swept``
("batch_size|warmup_steps"), so figures know the sweep's axes and group members by setting.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lmcpipe import csvfiles, paths

TABLES = paths.SWEEP_SOURCES  # sweep table -> the members' table it gathers


def sweep_tables(name: str, members: dict[str, dict], tables_root: str = paths.TABLES_ROOT,
                 settings: dict[str, dict] | None = None) -> dict[str, pd.DataFrame]:
    """{sweep table: frame} from each member's ``runs.csv`` / ``instability.csv``.

    ``members``: {member: {key: value as trained}}; ``settings``: {member: {key: value as
    written in the sweep}} (default: the trained values).
    """
    out = {}
    for table, source in TABLES.items():
        frames = []
        for member, values in members.items():
            frame = csvfiles.read(Path(tables_root) / member / paths.table_file(source))
            if source == "runs":
                frame = frame[frame["copy"] == 1]
            written = (settings or members)[member]
            frame = frame.assign(**values, **{f"{k}_setting": str(written[k]) for k in values},
                                 swept="|".join(values))
            frame.insert(0, "sweep", name)
            frames.append(frame)
        out[table] = pd.concat(frames, ignore_index=True)
    return out
