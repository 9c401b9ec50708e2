"""``lmcpipe init``: W_0 of an init seed, the start point every run of that seed trains from.

A job of its own, without data or training, so that the rewind points and the k = 0 runs all
read the same W_0 file (at k = 0 it is the rewind point) instead of each drawing it again.
"""

from __future__ import annotations

import argparse

from lmcpipe import atomic, models
from lmcpipe.hparams import TrainHParams, from_json
from lmcpipe.train import model_record


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hparams", required=True, help="TrainHParams as JSON")
    p.add_argument("--seed", type=int, required=True, help="init seed s")
    p.add_argument("--out", required=True)


def main(args: argparse.Namespace) -> None:
    hp = from_json(TrainHParams, args.hparams)
    model = models.build_initialised(hp.model, hp.dataset, args.seed, bias=hp.bias_init)
    atomic.save_torch(model_record(model, hp.model, 0), args.out)
