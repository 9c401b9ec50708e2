"""``lmcpipe interpolate-pairs``: the paths of a cohort's pairs, in one process.

The per-job fixed cost (``import torch``, reading the data, building the network) dwarfs one
pair's evaluation, so the rules hand a cohort's pairs to one job as a JSON list.
"""

from __future__ import annotations

import argparse
import time
from typing import TypedDict

from lmcpipe import devices
from lmcpipe.hparams import InterpHParams, JsonFlag, TrainHParams


class Pair(TypedDict):
    """One path of ``--pairs``: between the model.pt files ``copy1`` and ``copy2``, to ``out``."""

    copy1: str
    copy2: str
    out: str


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hparams", required=True, action=JsonFlag, schema=TrainHParams,
                   help="TrainHParams as JSON (model and data)")
    p.add_argument("--interp", required=True, action=JsonFlag, schema=InterpHParams,
                   help="InterpHParams as JSON")
    p.add_argument("--pairs", required=True, action=JsonFlag, schema=list[Pair],
                   help="JSON list of {copy1, copy2, out}")
    p.add_argument("--threads", type=int, default=1)
    devices.add_arguments(p)


def main(args: argparse.Namespace) -> None:
    # the heavy imports (torch) here, not at the top: the CLI imports this module to parse the
    # flags, so a bad one is refused in a fraction of a second, not after ~3 s of imports
    import torch

    from lmcpipe import interpolate

    job_start = time.perf_counter()
    if not args.pairs:
        raise SystemExit("lmcpipe interpolate-pairs: --pairs lists no pair")
    # training's numerics: the path is evaluated as training evaluated the copies (under bf16
    # autocast when they trained in bf16), so its endpoints reproduce their recorded errors
    device = devices.from_args(args, args.hparams.precision)
    torch.set_num_threads(args.threads)
    interpolate.interpolate_files(args.hparams, args.interp, args.pairs, device, job_start)
