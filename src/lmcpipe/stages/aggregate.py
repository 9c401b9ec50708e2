"""``lmcpipe aggregate``: the tidy tables of one experiment (``lmcpipe.aggregate``).

Writes ``runs``, ``paths``, ``instability``, ``curves`` and ``provenance``, then ``summary``
and ``table2`` derived from them, so every figure of the experiment reads tables rather than
artifacts. Runs that ended at chance error are counted in the log: their pairs look stable and
would otherwise pass unnoticed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lmcpipe import aggregate, csvfiles, paths
from lmcpipe.hparams import Experiment, JsonFlag
from lmcpipe.summary import summarise, table2


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--experiment", required=True, action=JsonFlag, schema=Experiment,
                   help="Experiment as JSON")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--classes", type=int, default=10,
                   help="classes of the dataset (sets the at_chance flags)")


def main(args: argparse.Namespace) -> None:
    exp = args.experiment
    out = Path(args.out_dir)
    frames = aggregate.tables(exp, args.classes)
    for name, frame in frames.items():
        csvfiles.save_frame(frame, out / paths.table_file(name))
    runs, inst = frames["runs"], frames["instability"]
    frames["summary"] = aggregate.with_flags(summarise(runs, inst, exp.interp.threshold), runs,
                                             exp)
    csvfiles.save_frame(frames["summary"], out / paths.table_file("summary"))
    frames["table2"] = aggregate.with_flags(table2(runs, inst, exp.interp.threshold), runs, exp)
    csvfiles.save_frame(frames["table2"], out / paths.table_file("table2"))
    flagged = runs[runs["at_chance"].astype(bool)]
    if len(flagged):
        print(f"warning: {len(flagged)} of {len(runs)} runs ended at chance error "
              f"(at_chance in runs.csv)")
    for name, frame in frames.items():
        print(f"{name}.csv: {len(frame)} rows")
