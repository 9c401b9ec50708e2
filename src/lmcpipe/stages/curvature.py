"""``lmcpipe curvature``: the curvature row of one IMP level's solution θ_L (paper C §3.3).

One job per level: the Hessian products are the cost and the levels are independent, so they run
in parallel. The stage reads the data, θ_L and m_L, and writes the row that
``lmcpipe.curvature.curvature_row`` computes.
"""

from __future__ import annotations

import argparse

import pandas as pd
import torch

from lmcpipe import atomic, csvfiles, curvature, data, devices, masks, models
from lmcpipe.hparams import AnalysisHParams, JsonFlag, TrainHParams


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hparams", required=True, action=JsonFlag, schema=TrainHParams,
                   help="TrainHParams as JSON (model and data)")
    p.add_argument("--analyses", required=True, action=JsonFlag, schema=AnalysisHParams,
                   help="AnalysisHParams as JSON")
    masks.add_pruning_arguments(p, model="the level's solution θ_L", mask="m_L (omit at level 0)",
                                fraction="fraction pruned per level")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--k", type=int, required=True)
    p.add_argument("--level", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=1)
    devices.add_arguments(p)


def main(args: argparse.Namespace) -> None:
    hp, ap = args.hparams, args.analyses
    device = devices.from_args(args, devices.evaluation_precision(hp.precision))
    torch.set_num_threads(args.threads)
    dataset = data.load(hp.dataset, hp.data_root, device, hp.image_size)
    record = atomic.load_torch(args.model)  # read once: weights and the frozen count
    model = models.build(hp.model, hp.dataset, hp.image_size)
    model.load_state_dict(record["state_dict"])
    row = curvature.curvature_row(model, dataset, masks.load(args.mask), ap, hp.batch_size,
                                  args.fraction, args.seed, args.k, args.level, args.counting,
                                  masks.frozen_count(record, args.counting))
    csvfiles.save_frame(pd.DataFrame([row], columns=curvature.CURVATURE_COLUMNS), args.out)
    print(", ".join(f"{c} {row[c]:.4g}" for c in ("density", "top_eigenvalue", "trace",
                                                   "quad_magnitude", "quad_random")))
