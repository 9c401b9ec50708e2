"""``lmcpipe download``: fetch a dataset that is not on disk (rule ``download_<dataset>``).

Snakemake schedules it only when the network answers; the work is ``lmcpipe.data.download``.
"""

from __future__ import annotations

import argparse

from lmcpipe.data import DATASETS, download


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    p.add_argument("--root", required=True)


def main(args: argparse.Namespace) -> None:
    """Stage: download a dataset that is not on disk (only run when the network answers)."""
    files = download(args.dataset, args.root)
    print("downloaded " + ", ".join(str(f) for f in files))
