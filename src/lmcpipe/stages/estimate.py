"""``lmcpipe estimate <targets>``: what the targets cost, before anything runs.

Snakemake's dry run of the targets (finished work left out; ``--all`` counts it too), each job's
work counted and timed on this machine (``lmcpipe.estimate``), the per-rule table, the wall time
on ``--cores`` (and the GPUs here) with its critical path, and with ``--device-spec`` the same on
``--gpus`` datasheet devices. The Snakemake options that choose the plan are passed on.
"""

from __future__ import annotations

import argparse
import sys

from lmcpipe.dryrun import SnakemakeOptions


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("targets", nargs="*", help="Snakemake targets (default: its default target)")
    p.add_argument("--cores", "-c", type=int, default=1,
                   help="cores to plan and play the jobs out on, as snakemake's --cores")
    p.add_argument("--gpus", type=int, default=None,
                   help="GPU slots: of the --device-spec machine (default 1), else of this one "
                        "(default: every GPU torch sees)")
    p.add_argument("--device-spec", default="",
                   help="h100, a100, h200 or a YAML file: a roofline bound and projection there")
    p.add_argument("--all", action="store_true",
                   help="count every job of the targets, finished or not (snakemake --forceall)")
    p.add_argument("--snakefile", "-s", default="")
    p.add_argument("--directory", "-d", default="")
    p.add_argument("--configfile", action="append", default=[],
                   help="a config file for Snakemake (repeat the flag for several)")
    p.add_argument("--config", "-C", action="append", default=[],
                   help="KEY=VALUE for Snakemake's --config (repeat the flag for several)")
    p.add_argument("--profile", default="")


def main(args: argparse.Namespace) -> None:
    from lmcpipe.errors import InputError
    from lmcpipe.estimate import estimate
    from lmcpipe.estimate_table import report
    from lmcpipe.roofline import device_spec

    if args.cores < 1:
        raise InputError(f"--cores {args.cores}: give at least 1")
    if args.gpus is not None and args.gpus < 1:
        raise InputError(f"--gpus {args.gpus}: give at least 1")
    spec = device_spec(args.device_spec) if args.device_spec else None
    options = SnakemakeOptions(tuple(args.targets), args.snakefile, args.directory,
                               tuple(args.configfile), tuple(args.config), args.profile,
                               args.cores, args.all)
    result = estimate(options, args.cores, args.gpus, spec,
                      log=lambda line: print(line, file=sys.stderr, flush=True))
    print(report(result, tuple(args.targets)))
