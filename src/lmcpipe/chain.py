"""Stages that analyse one IMP chain (init seed s, rewind step k): papers B and C.

``rounds``: from the rewind point W_k, the chain's solutions θ_0 … θ_N (θ_0 = the dense network,
θ_L = level L's retrained network) and masks m_1 … m_N, the tables of ``lmcpipe.rounds`` —
angular distances between rounds with a row for W_k (paper B Fig 4; at k = 0, W_k is the original
initialisation), pruning thresholds (Fig 6), weight histograms (Fig 5), new small weights
(paper C).

``curvature``: at θ_L (mask m_L), the largest Hessian eigenvalue, the Hessian trace and the
second-order loss change ½ΔᵀHΔ along the next pruning step — Δ = −θ_L ⊙ (m_L − m_{L+1}) for
magnitude pruning (the mask the pipeline's level L+1 uses) and for a random removal of the same
number of weights — on a fixed training subset (paper C §3.3; ``lmcpipe.hessian``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from lmcpipe import atomic, data, hessian, masks, models, rounds
from lmcpipe.hparams import AnalysisHParams, TrainHParams, from_json
from lmcpipe.seeds import generator
from lmcpipe.train import pick_device

CURVATURE_COLUMNS = ["level", "density", "loss", "grad_norm", "top_eigenvalue", "trace",
                     "trace_stderr", "quad_magnitude", "quad_random", "n_pruned", "examples"]


def _weights(record: dict) -> dict[str, torch.Tensor]:
    return {n: record["state_dict"][n] for n in record["prunable"]}


def chain_tables(rewind: str, models: list[str], mask_files: list[str], fraction: float,
                 bins: int, counting: str = "prunable") -> dict:
    """Tables of one chain from its artifact files (``models[L]`` = θ_L, ``mask_files[L-1]`` =
    m_L); level 0's mask keeps every weight."""
    records = [atomic.load_torch(p) for p in models]
    solutions = {lvl: _weights(r) for lvl, r in enumerate(records)}
    level_masks = {0: masks.ones_like(solutions[0])}
    level_masks |= {lvl: masks.load(p) for lvl, p in enumerate(mask_files, start=1)}
    return rounds.chain_tables(_weights(atomic.load_torch(rewind)), solutions, level_masks,
                               fraction, bins, counting, masks.frozen_count(records[0], counting))


def curvature_row(hp: TrainHParams, ap: AnalysisHParams, model_file: str, mask_file: str | None,
                  fraction: float, seed: int, k: int, level: int,
                  device: torch.device, counting: str = "prunable") -> dict:
    """One ``curvature`` row for the solution θ_L in ``model_file``."""
    dataset = data.load(hp.dataset, hp.data_root, device, hp.image_size)
    record = atomic.load_torch(model_file)  # read once: weights and the frozen count
    frozen = masks.frozen_count(record, counting)
    model = models.build(hp.model, hp.dataset)
    model.load_state_dict(record["state_dict"])
    model.to(device)
    names = model.prunable_names()
    theta = {n: model.get_parameter(n).detach() for n in names}
    mask = masks.load(mask_file) or masks.ones_like(theta)
    mask = {n: m.to(device) for n, m in mask.items()}
    n = min(ap.curvature_examples, len(dataset.train_x))
    idx = torch.randperm(len(dataset.train_x), generator=generator("curvature"))[:n]
    idx = idx.to(dataset.train_x.device)
    x, y = dataset.prepare(dataset.train_x[idx]), dataset.train_y[idx].to(device)
    curv = hessian.Curvature(model, x, y, names, mask, batch_size=hp.batch_size)
    loss, grad = curv.loss_and_grad()
    top = hessian.top_eigenvalue(curv, generator("lanczos", seed, k, level),
                                 iters=ap.lanczos_iters)
    trace, stderr = hessian.hutchinson_trace(curv, generator("hutchinson", seed, k, level),
                                             ap.trace_samples)
    cpu_mask = {n_: m.cpu() for n_, m in mask.items()}
    nxt = masks.magnitude_prune({n_: w.cpu() for n_, w in theta.items()}, cpu_mask, fraction,
                                counting, frozen)
    removed = {n_: cpu_mask[n_] & ~nxt[n_] for n_ in names}
    count = sum(int(r.sum()) for r in removed.values())
    rand = masks.random_removal(cpu_mask, count, "curvature-random", seed, k, level)

    def quad(removal: masks.Mask) -> float:
        delta = {n_: -theta[n_] * removal[n_].to(device, theta[n_].dtype) for n_ in names}
        return hessian.quadratic_form(curv, curv.flatten(delta))

    return {"level": level, "density": masks.density(cpu_mask, frozen), "loss": loss,
            "grad_norm": float(grad.norm()), "top_eigenvalue": top, "trace": trace,
            "trace_stderr": stderr, "quad_magnitude": quad(removed), "quad_random": quad(rand),
            "n_pruned": count, "examples": n}


# --- CLI -------------------------------------------------------------------------------------
def add_rounds_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rewind", required=True, help="rewind point W_k (the chain's start)")
    p.add_argument("--models", nargs="+", required=True, help="θ_0 … θ_N in level order")
    p.add_argument("--masks", nargs="*", default=[], help="m_1 … m_N in level order")
    p.add_argument("--fraction", type=float, required=True, help="fraction pruned per level")
    p.add_argument("--counting", choices=masks.COUNTINGS, default="open_lth",
                   help="which weights the count and the density are over (prune.counting)")
    p.add_argument("--bins", type=int, default=60)
    p.add_argument("--out-dir", required=True)


def rounds_main(args: argparse.Namespace) -> None:
    if len(args.masks) != len(args.models) - 1:
        raise SystemExit(f"lmcpipe rounds: {len(args.models)} models need "
                         f"{len(args.models) - 1} masks, got {len(args.masks)}")
    tables = chain_tables(args.rewind, args.models, args.masks, args.fraction, args.bins,
                          args.counting)
    for name, frame in tables.items():
        atomic.save_frame(frame, str(Path(args.out_dir) / f"{name}.csv"))
    print(f"wrote {', '.join(tables)} to {args.out_dir}")


def add_curvature_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hparams", required=True, help="TrainHParams as JSON (model and data)")
    p.add_argument("--analyses", required=True, help="AnalysisHParams as JSON")
    p.add_argument("--model", required=True, help="the level's solution θ_L")
    p.add_argument("--mask", help="m_L (omit at level 0)")
    p.add_argument("--fraction", type=float, required=True, help="fraction pruned per level")
    p.add_argument("--counting", choices=masks.COUNTINGS, default="open_lth",
                   help="which weights the count and the density are over (prune.counting)")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--k", type=int, required=True)
    p.add_argument("--level", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="auto")


def curvature_main(args: argparse.Namespace) -> None:
    import pandas as pd

    torch.set_num_threads(args.threads)
    row = curvature_row(from_json(TrainHParams, args.hparams),
                        from_json(AnalysisHParams, args.analyses), args.model, args.mask,
                        args.fraction, args.seed, args.k, args.level, pick_device(args.device),
                        args.counting)
    atomic.save_frame(pd.DataFrame([row], columns=CURVATURE_COLUMNS), args.out)
    print(", ".join(f"{c} {row[c]:.4g}" for c in ("density", "top_eigenvalue", "trace",
                                                   "quad_magnitude", "quad_random")))
