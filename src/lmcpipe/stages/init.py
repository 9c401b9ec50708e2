"""``lmcpipe init``: W_0 of an init seed, the start point every run of that seed trains from.

A job of its own, without data or training, so that the rewind points and the k = 0 runs all
read the same W_0 file (at k = 0 it is the rewind point) instead of each drawing it again.
"""

from __future__ import annotations

import argparse

from lmcpipe.hparams import JsonFlag, TrainHParams


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hparams", required=True, action=JsonFlag, schema=TrainHParams,
                   help="TrainHParams as JSON")
    p.add_argument("--seed", type=int, required=True, help="init seed s")
    p.add_argument("--out", required=True)


def main(args: argparse.Namespace) -> None:
    # the heavy imports (torch) here, not at the top: the CLI imports this module to parse the
    # flags, so a bad one is refused in a fraction of a second, not after ~3 s of imports
    from lmcpipe import atomic, models
    from lmcpipe.training.checkpoint import model_record

    hp = args.hparams
    model = models.build_initialised(hp.model, hp.dataset, args.seed, bias=hp.bias_init,
                                     init=hp.model_init, image_size=hp.image_size)
    atomic.save_torch(model_record(model, hp.model, 0), args.out)
