"""``lmcpipe interpolate-pairs``: the paths of a cohort's pairs, in one process.

The per-job fixed cost (``import torch``, reading the data, building the network) dwarfs one
pair's evaluation, so the rules hand a cohort's pairs to one job as a JSON list.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from lmcpipe import interpolate
from lmcpipe.devices import pick_device
from lmcpipe.hparams import InterpHParams, TrainHParams, from_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hparams", required=True, help="TrainHParams as JSON (model and data)")
    p.add_argument("--interp", required=True, help="InterpHParams as JSON")
    p.add_argument("--pairs", required=True, help="JSON list of {copy1, copy2, out}")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="auto")


def main(args: argparse.Namespace) -> None:
    job_start = time.perf_counter()
    torch.set_num_threads(args.threads)
    pairs = json.loads(args.pairs)
    if not pairs:
        raise SystemExit("lmcpipe interpolate-pairs: --pairs lists no pair")
    interpolate.interpolate_files(
        from_json(TrainHParams, args.hparams), from_json(InterpHParams, args.interp), pairs,
        pick_device(args.device), job_start)
