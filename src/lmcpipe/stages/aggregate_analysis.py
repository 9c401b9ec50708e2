"""``lmcpipe aggregate-analysis``: one experiment-level table of a papers B/C analysis.

One job per table, so each table waits for (and is rebuilt after a change of) only the
per-chain files it is built from (``lmcpipe.analysis_tables.analysis_table``).
"""

from __future__ import annotations

import argparse

from lmcpipe import analysis_tables, csvfiles, paths
from lmcpipe.hparams import Experiment, JsonFlag


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--experiment", required=True, action=JsonFlag, schema=Experiment,
                   help="Experiment as JSON")
    p.add_argument("--table", required=True, choices=sorted(paths.ANALYSIS_TABLES))
    p.add_argument("--out", required=True)


def main(args: argparse.Namespace) -> None:
    frame = analysis_tables.analysis_table(args.experiment, args.table)
    csvfiles.save_frame(frame, args.out)
    print(f"wrote {args.out}: {len(frame)} rows")
