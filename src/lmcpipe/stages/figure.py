"""``lmcpipe figure``: render one figure of an experiment's (or a sweep's) tables to a PDF
(and the same figure as a PNG, for the reports).

The names come from the registry, so the CLI accepts exactly the figures the workflow can ask for.
"""

from __future__ import annotations

import argparse

import matplotlib.pyplot as plt

from lmcpipe.atomic import write_atomic
from lmcpipe.figures import registry, render

PNG_DPI = 110  # sharp at the reports' widths, ~50-150 KB a figure


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", required=True, choices=sorted(registry.FIGURES))
    p.add_argument("--tables", required=True, help="directory holding the experiment's CSVs")
    p.add_argument("--threshold", type=float, default=0.02,
                   help="stability threshold on the error barrier (fraction)")
    p.add_argument("--out", required=True, help="PDF file to write")
    p.add_argument("--png", help="also write the figure as a PNG (the reports show it inline)")


def main(args: argparse.Namespace) -> None:
    fig = render.render(args.name, args.tables, args.threshold)
    try:
        write_atomic(args.out, lambda tmp: fig.savefig(tmp, format="pdf"))
        if args.png:
            write_atomic(args.png, lambda tmp: fig.savefig(tmp, format="png", dpi=PNG_DPI))
    finally:
        plt.close(fig)
    print(f"wrote {args.out}")
