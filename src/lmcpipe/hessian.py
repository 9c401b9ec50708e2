"""Loss curvature at a trained (possibly pruned) network: Hessian-vector products and spectra.

Paper C (§3.3) argues that the Hessian of the training loss at the level-L solution bounds how
much a further pruning step can remove: the loss change along the removed weights δ is about
½ δᵀHδ, and the top eigenvalue bounds it by ½ λ_max ‖δ‖². This module measures those quantities.

The loss is the mean cross-entropy over a FIXED training subset (x, y), with the model in eval
mode (BatchNorm uses running statistics, dropout is off), so it is a deterministic function of
the parameters and repeated products agree. The Hessian is taken w.r.t. the parameters in
``names`` only; all other parameters and buffers are held fixed at their current values, which
are used as they are (pruned weights are expected to be zero already, as training keeps them).

Vectors are flat 1-D tensors in the parameters' dtype and device: the row-major flattening of
each named parameter, concatenated in ``names`` order (``Curvature.flatten`` / ``unflatten``
convert from and to name -> tensor dicts). With a mask (name -> bool tensor, True = kept) every
operator is the restricted Hessian H_m = P H P, where P zeroes the pruned coordinates.

Randomness comes only from the caller's ``torch.Generator``, so results are reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode for the duration; restores each module's own flag (modes may be mixed)."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


class Curvature:
    """Hessian-vector products of the mean cross-entropy over (x, y) w.r.t. ``names``.

    The subset is evaluated in chunks of ``batch_size`` (each chunk's summed loss divided by the
    total n), so memory is bounded while the function is the same as one full batch. Parameters
    are never modified: products use detached aliases through ``torch.func.functional_call``.
    """

    def __init__(self, model: nn.Module, x: Tensor, y: Tensor, names: list[str],
                 mask: dict[str, Tensor] | None = None, batch_size: int = 1024) -> None:
        params = dict(model.named_parameters())
        missing = [n for n in names if n not in params]
        if missing:
            raise KeyError(f"unknown parameter names: {missing}")
        if len(x) != len(y) or len(x) == 0:
            raise ValueError(f"need equally many (> 0) inputs and labels, got {len(x)}, {len(y)}")
        self.model, self.x, self.y, self.names = model, x, y, list(names)
        self.batch_size = batch_size
        self.shapes = [params[n].shape for n in self.names]
        self.sizes = [params[n].numel() for n in self.names]
        self.dim = sum(self.sizes)
        self.dtype, self.device = params[self.names[0]].dtype, params[self.names[0]].device
        self.keep: Tensor | None = None
        if mask is not None:
            keep = {n: mask.get(n, torch.ones(params[n].shape, dtype=torch.bool)) for n in names}
            self.keep = self.flatten(keep).to(torch.bool)

    def flatten(self, tensors: dict[str, Tensor]) -> Tensor:
        """Name -> tensor dict (shapes of the named parameters) to a flat vector."""
        return torch.cat([tensors[n].reshape(-1).to(self.device, self.dtype) for n in self.names])

    def unflatten(self, vec: Tensor) -> dict[str, Tensor]:
        """Flat vector to a name -> tensor dict shaped like the named parameters."""
        parts = torch.split(vec, self.sizes)
        return {n: p.reshape(s) for n, p, s in zip(self.names, parts, self.shapes, strict=True)}

    def project(self, vec: Tensor) -> Tensor:
        """P vec: zero the pruned coordinates (identity without a mask)."""
        return vec if self.keep is None else vec * self.keep

    def _chunks(self) -> Iterator[tuple[Tensor, Tensor]]:
        for i in range(0, len(self.x), self.batch_size):
            xb = self.x[i : i + self.batch_size].to(self.device)
            if xb.is_floating_point():
                xb = xb.to(self.dtype)
            yield xb, self.y[i : i + self.batch_size].to(self.device)

    def _loss(self, leaves: dict[str, Tensor], xb: Tensor, yb: Tensor) -> Tensor:
        """This chunk's share of the mean loss, as a function of the named parameters."""
        out = torch.func.functional_call(self.model, leaves, (xb,))
        return F.cross_entropy(out, yb, reduction="sum") / len(self.x)

    def _leaves(self) -> dict[str, Tensor]:
        """Detached aliases of the named parameters (same storage), as autograd leaves."""
        params = dict(self.model.named_parameters())
        return {n: params[n].detach().requires_grad_(True) for n in self.names}

    def loss_and_grad(self) -> tuple[float, Tensor]:
        """Mean loss and its (projected) flat gradient: how far from a stationary point we are."""
        total, grad = 0.0, torch.zeros(self.dim, dtype=self.dtype, device=self.device)
        with _eval_mode(self.model), torch.enable_grad():
            leaves = self._leaves()
            for xb, yb in self._chunks():
                loss = self._loss(leaves, xb, yb)
                grads = torch.autograd.grad(loss, list(leaves.values()), materialize_grads=True)
                grad += torch.cat([g.reshape(-1) for g in grads])
                total += float(loss.detach())
        return total, self.project(grad)

    def hvp(self, vec: Tensor) -> Tensor:
        """P H P vec by double backprop, summed over chunks (the loss is a sum of chunk terms)."""
        v = self.unflatten(self.project(vec.to(self.device, self.dtype)))
        out = torch.zeros(self.dim, dtype=self.dtype, device=self.device)
        with _eval_mode(self.model), torch.enable_grad():
            leaves = self._leaves()
            for xb, yb in self._chunks():
                grads = torch.autograd.grad(self._loss(leaves, xb, yb), list(leaves.values()),
                                            create_graph=True, materialize_grads=True)
                gv = sum((g * v[n]).sum() for g, n in zip(grads, self.names, strict=True))
                hv = torch.autograd.grad(gv, list(leaves.values()), materialize_grads=True)
                out += torch.cat([h.reshape(-1) for h in hv])
        return self.project(out)

    def random(self, generator: torch.Generator, rademacher: bool = False) -> Tensor:
        """A random vector inside the mask: standard normal, or ±1 (Rademacher) entries."""
        kw = {"generator": generator, "device": generator.device}
        if rademacher:
            z = torch.randint(0, 2, (self.dim,), **kw).to(self.dtype) * 2 - 1
        else:
            z = torch.randn(self.dim, dtype=self.dtype, **kw)
        return self.project(z.to(self.device, self.dtype))


def top_eigenvalue(curv: Curvature, generator: torch.Generator, iters: int = 64,
                   tol: float = 1e-6, return_vector: bool = False) -> float | tuple[float, Tensor]:
    """Largest ALGEBRAIC eigenvalue of P H P (paper C's "top eigenvalue") by Lanczos.

    Lanczos rather than power iteration because power iteration finds the largest |λ|, which
    away from an exact minimum can be a negative eigenvalue. Full reorthogonalisation keeps the
    Krylov basis exact (at the cost of storing ``iters`` vectors of length ``curv.dim``). Stops
    when the Ritz residual |β_k s_k| <= tol * |θ|, on breakdown (invariant subspace found), or
    after ``iters`` products. With a mask, pruned coordinates are excluded from the operator, so
    the zero eigenvalues they would add never show up as the answer for an all-negative H_m.
    Optionally returns the unit Ritz vector (flat, inside the mask).
    """
    q = curv.random(generator)
    q = q / q.norm()
    basis, alphas, betas = [q], [], []
    theta, s = 0.0, torch.ones(1, dtype=torch.float64)
    for k in range(iters):
        w = curv.hvp(basis[k])
        alphas.append(float(w @ basis[k]))
        q_mat = torch.stack(basis)
        for _ in range(2):  # twice is enough (Kahan's rule) to orthogonalise to working precision
            w = curv.project(w - q_mat.T @ (q_mat @ w))
        beta = float(w.norm())
        t = torch.diag(torch.tensor(alphas, dtype=torch.float64))
        if betas:
            off = torch.tensor(betas, dtype=torch.float64)
            t += torch.diag(off, 1) + torch.diag(off, -1)
        evals, evecs = torch.linalg.eigh(t)
        theta, s = float(evals[-1]), evecs[:, -1]
        scale = max(abs(theta), float(torch.tensor(alphas).abs().max()), 1e-30)
        if abs(beta * float(s[-1])) <= tol * abs(theta) or beta <= 1e-12 * scale:
            break
        if k + 1 < iters:
            betas.append(beta)
            basis.append(w / beta)
    if not return_vector:
        return theta
    vec = torch.stack(basis[: len(s)]).T @ s.to(curv.dtype).to(curv.device)
    return theta, vec / vec.norm()


def hutchinson_trace(curv: Curvature, generator: torch.Generator,
                     samples: int = 100) -> tuple[float, float]:
    """Estimate trace(P H P) = Σ over kept coordinates of H_ii, with its standard error.

    Rademacher probes z inside the mask give an unbiased zᵀ H_m z; the standard error
    (sample std / sqrt(samples)) says how many probes a comparison between levels needs.
    """
    if samples < 2:
        raise ValueError("need at least 2 samples for a standard error")
    vals = []
    for _ in range(samples):
        z = curv.random(generator, rademacher=True)
        vals.append(float(z @ curv.hvp(z)))
    est = torch.tensor(vals, dtype=torch.float64)
    return float(est.mean()), float(est.std() / math.sqrt(samples))


def quadratic_form(curv: Curvature, delta: Tensor) -> float:
    """½ δᵀ H_m δ: the second-order loss change along the flat direction δ (projected by P).

    E.g. δ = curv.flatten({n: -θ_n * (m_L - m_{L+1})}) for the weights a pruning step removes.
    """
    d = curv.project(delta.to(curv.device, curv.dtype))
    return 0.5 * float(d @ curv.hvp(d))
