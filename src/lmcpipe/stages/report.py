"""``lmcpipe report``: the reproduction-report page of one experiment or sweep.

Judges every claim of ``lmcpipe/report/claims.yaml`` that applies to the experiment's network
on its tidy tables, then writes the page (claims, figures, provenance, config) and the judged
claims as a CSV. Reads tables and figure files only: no torch, no checkpoints.
"""

from __future__ import annotations

import argparse
import json
import math

from lmcpipe.data.registry import DATASETS
from lmcpipe.hparams import Experiment, JsonFlag, to_json
from lmcpipe.report import claims, pages


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--experiment", required=True, action=JsonFlag, schema=Experiment,
                   help="Experiment JSON (for a sweep: its first member, whose recipe is shown)")
    p.add_argument("--sweep", default="", help="the page is this sweep's (its tables)")
    p.add_argument("--members", default=[], action=JsonFlag, schema=list[str],
                   help="JSON list of the sweep's members")
    p.add_argument("--tables", required=True, help="directory of the tables")
    p.add_argument("--figures", default="", help="comma-separated figures built for it")
    p.add_argument("--out", required=True, help="HTML page to write")
    p.add_argument("--claims-out", required=True, help="CSV of the judged claims")


def main(args: argparse.Namespace) -> None:
    exp = args.experiment
    per_epoch = math.ceil(DATASETS[exp.train.dataset].train_size / exp.train.batch_size)
    name, scope = (args.sweep, "sweep") if args.sweep else (exp.name, "experiment")
    subject = pages.subject_of(name, scope, exp.train.model, exp.train, per_epoch,
                               [f for f in args.figures.split(",") if f])
    members = tuple(args.members)
    shown = json.loads(to_json(exp))  # the experiment as validated, defaults filled in
    if args.sweep:
        shown = {"sweep": args.sweep, "members": list(members), "first member": shown}
    rows = pages.write_page(subject, args.tables, args.out, args.claims_out, shown,
                            pages.built_from(), members)
    n = claims.counts(rows)
    print(f"wrote {args.out}: {len(rows)} claims, "
          + ", ".join(f"{v} {c}" for v, c in n.items()))

