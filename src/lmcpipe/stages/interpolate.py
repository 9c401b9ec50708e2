"""``lmcpipe interpolate``: error and loss along the path between the two copies of one pair.

A single pair per job; the pipeline's rules interpolate a whole cohort's pairs per job
(``lmcpipe interpolate-pairs``), which reads the data and builds the network once. Both call
``lmcpipe.interpolate.interpolate_files``, so a pair's ``path.csv`` is the same either way.
"""

from __future__ import annotations

import argparse
import time

from lmcpipe import devices
from lmcpipe.hparams import InterpHParams, JsonFlag, TrainHParams


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hparams", required=True, action=JsonFlag, schema=TrainHParams,
                   help="TrainHParams as JSON (model and data)")
    p.add_argument("--interp", required=True, action=JsonFlag, schema=InterpHParams,
                   help="InterpHParams as JSON")
    p.add_argument("--copy1", required=True)
    p.add_argument("--copy2", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=1)
    devices.add_arguments(p)


def main(args: argparse.Namespace) -> None:
    # the heavy imports (torch) here, not at the top: the CLI imports this module to parse the
    # flags, so a bad one is refused in a fraction of a second, not after ~3 s of imports
    import torch

    from lmcpipe import interpolate

    job_start = time.perf_counter()
    # training's numerics: the path is evaluated as training evaluated the copies (under bf16
    # autocast when they trained in bf16), so its endpoints reproduce their recorded errors
    device = devices.from_args(args, args.hparams.precision)
    torch.set_num_threads(args.threads)
    interpolate.interpolate_files(
        args.hparams, args.interp, [{"copy1": args.copy1, "copy2": args.copy2, "out": args.out}],
        device, job_start)
