"""Curvature of the training loss at one IMP level's solution θ_L and along its next pruning step.

Paper C (§3.3) bounds what a further pruning step can remove by the curvature at θ_L. At θ_L
(mask m_L) this measures the largest Hessian eigenvalue, the Hessian trace and the second-order
loss change ½ΔᵀHΔ along the next pruning step — Δ = −θ_L ⊙ (m_L − m_{L+1}) for magnitude pruning
(the mask the pipeline's level L+1 uses) and for a random removal of the same number of weights —
on a fixed training subset. The linear algebra is ``lmcpipe.hessian``; this module picks the
subset, the seeds and the two removals. The ``lmcpipe curvature`` entrypoint
(``lmcpipe.stages.curvature``) reads the level's files and writes the row.
"""

from __future__ import annotations

import torch

from lmcpipe import data, hessian, masks
from lmcpipe.hparams import AnalysisHParams
from lmcpipe.models import PrunableModel
from lmcpipe.seeds import generator

CURVATURE_COLUMNS = ["level", "density", "loss", "grad_norm", "top_eigenvalue", "trace",
                     "trace_stderr", "quad_magnitude", "quad_random", "n_pruned", "examples"]


def curvature_row(model: PrunableModel, dataset: data.Data, mask: masks.Mask | None,
                  ap: AnalysisHParams, batch_size: int, fraction: float, seed: int, k: int,
                  level: int, counting: str = "prunable", frozen: int = 0) -> dict:
    """One ``CURVATURE_COLUMNS`` row for the solution θ_L held by ``model``, with mask m_L
    (None: every weight kept, level 0); ``frozen`` is the record's ``masks.frozen_count``.

    The subset is the first ``ap.curvature_examples`` of a fixed permutation (the same at every
    level and chain); Lanczos, Hutchinson and the random removal are seeded by (seed, k, level).
    """
    device = dataset.device
    model.to(device)
    names = model.prunable_names()
    theta = {n: model.get_parameter(n).detach() for n in names}
    mask = mask or masks.ones_like(theta)
    mask = {n: m.to(device) for n, m in mask.items()}
    n = min(ap.curvature_examples, len(dataset.train_x))
    idx = torch.randperm(len(dataset.train_x), generator=generator("curvature"))[:n]
    idx = idx.to(dataset.train_x.device)
    x, y = dataset.prepare(dataset.train_x[idx]), dataset.train_y[idx].to(device)
    curv = hessian.Curvature(model, x, y, names, mask, batch_size=batch_size)
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
