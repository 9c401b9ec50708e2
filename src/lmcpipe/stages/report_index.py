"""``lmcpipe report-index``: the reproduction report's index, from the pages' claim tables."""

from __future__ import annotations

import argparse

from lmcpipe.report import pages


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--names", nargs="+", required=True, help="experiments and sweeps, in order")
    p.add_argument("--claims", nargs="+", required=True, help="their judged-claims CSVs")
    p.add_argument("--out", required=True, help="index.html to write")


def main(args: argparse.Namespace) -> None:
    if len(args.names) != len(args.claims):
        raise SystemExit("lmcpipe report-index: --names and --claims differ in length")
    total = pages.write_index(args.names, args.claims, args.out, pages.built_from())
    print(f"wrote {args.out}: " + ", ".join(f"{v} {n}" for v, n in total.items()))

