"""``lmcpipe sweep-table``: the tables of a paper-B sweep, from its member experiments' tables.

The sweep's figures compare members, so their rows are concatenated into ``sweep_runs.csv`` and
``sweep_instability.csv`` with the swept values as columns (``lmcpipe.sweep.sweep_tables``). The
member values come as JSON because the config expands the sweep, not this stage.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lmcpipe import csvfiles, paths, sweep
from lmcpipe.hparams import JsonFlag


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", required=True, help="sweep name")
    p.add_argument("--members", required=True, action=JsonFlag, schema=dict[str, dict[str, Any]],
                   help="JSON {member experiment: {train key: value (in iterations)}}")
    p.add_argument("--settings", action=JsonFlag, schema=dict[str, dict[str, Any]],
                   help="JSON {member experiment: {train key: value as written in the sweep}}")
    p.add_argument("--tables-root", default=paths.TABLES_ROOT)
    p.add_argument("--out-dir", required=True)


def main(args: argparse.Namespace) -> None:
    tables = sweep.sweep_tables(args.name, args.members, args.tables_root, args.settings)
    for table, frame in tables.items():
        csvfiles.save_frame(frame, str(Path(args.out_dir) / paths.table_file(table)))
    print(f"wrote {', '.join(tables)} of sweep {args.name} to {args.out_dir}")
