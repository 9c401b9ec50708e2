"""``lmcpipe interpolate``: error and loss along the path between the two copies of one pair.

A single pair per job; the pipeline's rules interpolate a whole cohort's pairs per job
(``lmcpipe interpolate-pairs``), which reads the data and builds the network once. Both call
``lmcpipe.interpolate.interpolate_files``, so a pair's ``path.csv`` is the same either way.
"""

from __future__ import annotations

import argparse
import time

import torch

from lmcpipe import interpolate
from lmcpipe.devices import pick_device
from lmcpipe.hparams import InterpHParams, TrainHParams, from_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hparams", required=True, help="TrainHParams as JSON (model and data)")
    p.add_argument("--interp", required=True, help="InterpHParams as JSON")
    p.add_argument("--copy1", required=True)
    p.add_argument("--copy2", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="auto")


def main(args: argparse.Namespace) -> None:
    job_start = time.perf_counter()
    torch.set_num_threads(args.threads)
    interpolate.interpolate_files(
        from_json(TrainHParams, args.hparams), from_json(InterpHParams, args.interp),
        [{"copy1": args.copy1, "copy2": args.copy2, "out": args.out}], pick_device(args.device),
        job_start)
