"""Curvature measurements against the exact Hessian of a tiny network (float64)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lmcpipe.hessian import Curvature, hutchinson_trace, quadratic_form, top_eigenvalue

N = 16
NAMES = ["0.weight", "2.weight", "2.bias"]  # "0.bias" is held fixed


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()


def bn_net() -> nn.Module:
    """MLP with BatchNorm whose running statistics are far from the batch statistics."""
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Linear(5, 3)).double()
    with torch.no_grad():
        net[1].running_mean.copy_(torch.linspace(-0.5, 0.5, 5))
        net[1].running_var.copy_(torch.linspace(0.5, 2.0, 5))
        net[1].weight.copy_(torch.linspace(0.8, 1.2, 5))
    return net.train()


def batch(seed: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = gen(seed)
    x = torch.randn(N, 4, generator=g, dtype=torch.float64)
    return x, torch.randint(0, 3, (N,), generator=g)


def exact_hessian(model: nn.Module, x: torch.Tensor, y: torch.Tensor, names: list[str],
                  train: bool = False) -> torch.Tensor:
    """Dense Hessian of the mean cross-entropy w.r.t. the flattened ``names`` parameters."""
    params = dict(model.named_parameters())
    shapes = [params[n].shape for n in names]
    sizes = [params[n].numel() for n in names]
    flat0 = torch.cat([params[n].detach().reshape(-1) for n in names])

    def loss(flat: torch.Tensor) -> torch.Tensor:
        parts = torch.split(flat, sizes)
        new = {n: p.reshape(s) for n, p, s in zip(names, parts, shapes, strict=True)}
        buffers = {n: b.clone() for n, b in model.named_buffers()}  # train mode would update them
        out = torch.func.functional_call(model, {**new, **buffers}, (x,))
        return F.cross_entropy(out, y)

    flags = [(m, m.training) for m in model.modules()]
    model.train(train)
    try:
        return torch.autograd.functional.hessian(loss, flat0)
    finally:
        for m, flag in flags:
            m.training = flag


def random_mask(model: nn.Module, names: list[str], seed: int, p: float = 0.6) -> dict:
    g, params = gen(seed), dict(model.named_parameters())
    return {n: torch.rand(params[n].shape, generator=g) < p for n in names}


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_untouched(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    for k, v in before.items():
        assert torch.equal(after[k], v), k
    assert all(p.grad is None and p.requires_grad for p in model.parameters())


@pytest.fixture(scope="module")
def setup():
    model, (x, y) = mlp(), batch()
    return model, x, y, exact_hessian(model, x, y, NAMES)


def test_hvp_matches_exact(setup) -> None:
    model, x, y, h = setup
    curv = Curvature(model, x, y, NAMES)
    assert curv.dim == h.shape[0] == 20 + 15 + 3
    v = torch.randn(curv.dim, generator=gen(3), dtype=torch.float64)
    torch.testing.assert_close(curv.hvp(v), h @ v, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(curv.unflatten(curv.flatten(curv.unflatten(v)))["2.bias"], v[-3:])


def test_masked_hvp_and_eigenvalue(setup) -> None:
    model, x, y, h = setup
    mask = random_mask(model, NAMES, seed=4)
    curv = Curvature(model, x, y, NAMES, mask=mask)
    keep = torch.cat([mask[n].reshape(-1) for n in NAMES])
    p = torch.diag(keep.double())
    v = torch.randn(curv.dim, generator=gen(5), dtype=torch.float64)
    torch.testing.assert_close(curv.hvp(v), p @ h @ p @ v, rtol=1e-10, atol=1e-12)
    sub = torch.linalg.eigvalsh(h[keep][:, keep])[-1].item()
    lam, vec = top_eigenvalue(curv, gen(6), iters=100, tol=1e-10, return_vector=True)
    assert lam == pytest.approx(sub, rel=1e-8)
    assert torch.all(vec[~keep] == 0)
    torch.testing.assert_close(curv.hvp(vec), lam * vec, rtol=0, atol=1e-6 * abs(lam))


def test_top_eigenvalue_dense(setup) -> None:
    model, x, y, h = setup
    curv = Curvature(model, x, y, NAMES)
    lam = top_eigenvalue(curv, gen(7), iters=100, tol=1e-10)
    assert lam == pytest.approx(torch.linalg.eigvalsh(h)[-1].item(), rel=1e-8)
    # the default tolerance is still good to ~1e-6 relative
    assert top_eigenvalue(curv, gen(7)) == pytest.approx(lam, rel=1e-6)


class _Fixed:
    """Stand-in operator with a known spectrum whose largest |λ| is negative."""

    def __init__(self) -> None:
        q, _ = torch.linalg.qr(torch.randn(12, 12, generator=gen(8), dtype=torch.float64))
        self.evals = torch.tensor([-10.0, -3.0, -1.0, 0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0],
                                  dtype=torch.float64)
        self.a = q @ torch.diag(self.evals) @ q.T
        self.dim, self.dtype, self.device = 12, torch.float64, torch.device("cpu")

    def hvp(self, v: torch.Tensor) -> torch.Tensor:
        return self.a @ v

    def project(self, v: torch.Tensor) -> torch.Tensor:
        return v

    def random(self, generator: torch.Generator, rademacher: bool = False) -> torch.Tensor:
        return torch.randn(self.dim, generator=generator, dtype=self.dtype)


def test_top_eigenvalue_is_largest_algebraic() -> None:
    assert top_eigenvalue(_Fixed(), gen(9), iters=30, tol=1e-12) == pytest.approx(2.0, rel=1e-10)


def test_hutchinson_trace(setup) -> None:
    model, x, y, h = setup
    mask = random_mask(model, NAMES, seed=10)
    keep = torch.cat([mask[n].reshape(-1) for n in NAMES])
    for curv, exact in [(Curvature(model, x, y, NAMES), h.trace().item()),
                        (Curvature(model, x, y, NAMES, mask=mask), h.diag()[keep].sum().item())]:
        mean, se = hutchinson_trace(curv, gen(11), samples=1500)
        assert abs(mean - exact) < 4 * se
        assert se < 0.05 * abs(exact)
        assert abs(mean - exact) < 0.15 * abs(exact)


def test_quadratic_form_of_pruning_step(setup) -> None:
    model, x, y, h = setup
    params = dict(model.named_parameters())
    m_l = random_mask(model, NAMES, seed=12, p=0.8)
    m_next = {n: m & random_mask(model, NAMES, seed=13, p=0.7)[n] for n, m in m_l.items()}
    curv = Curvature(model, x, y, NAMES, mask=m_l)
    delta = curv.flatten({n: -params[n].detach() * (m_l[n].double() - m_next[n].double())
                          for n in NAMES})
    assert delta.abs().sum() > 0
    assert quadratic_form(curv, delta) == pytest.approx(0.5 * (delta @ h @ delta).item(), rel=1e-10)


def test_loss_and_grad(setup) -> None:
    model, x, y, _ = setup
    loss, grad = Curvature(model, x, y, NAMES, batch_size=5).loss_and_grad()
    model.zero_grad()
    ref = F.cross_entropy(model(x), y)
    ref.backward()
    params = dict(model.named_parameters())
    expect = torch.cat([params[n].grad.reshape(-1) for n in NAMES])
    model.zero_grad(set_to_none=True)
    assert loss == pytest.approx(ref.item(), rel=1e-12)
    torch.testing.assert_close(grad, expect, rtol=1e-10, atol=1e-14)


def test_chunked_equals_single_chunk(setup) -> None:
    model, x, y, _ = setup
    v = torch.randn(38, generator=gen(14), dtype=torch.float64)
    whole = Curvature(model, x, y, NAMES, batch_size=N).hvp(v)
    torch.testing.assert_close(Curvature(model, x, y, NAMES, batch_size=5).hvp(v), whole,
                               rtol=1e-12, atol=1e-14)


def test_reproducible_and_untouched(setup) -> None:
    model, x, y, _ = setup
    before = snapshot(model)
    model.train()
    curv = Curvature(model, x, y, NAMES, mask=random_mask(model, NAMES, seed=15))
    a = (top_eigenvalue(curv, gen(16), iters=10), hutchinson_trace(curv, gen(17), samples=5))
    b = (top_eigenvalue(curv, gen(16), iters=10), hutchinson_trace(curv, gen(17), samples=5))
    assert a == b
    assert hutchinson_trace(curv, gen(18), samples=5) != a[1]
    quadratic_form(curv, torch.ones(curv.dim, dtype=torch.float64))
    curv.loss_and_grad()
    assert model.training and all(m.training for m in model.modules())
    assert_untouched(model, before)


def test_batchnorm_uses_eval_mode_and_restores_it() -> None:
    model, (x, y) = bn_net(), batch(19)
    model[1].eval()  # mixed modes must come back exactly as they were
    before = snapshot(model)
    names = ["0.weight", "1.weight", "3.weight"]
    h_eval = exact_hessian(model, x, y, names, train=False)
    h_train = exact_hessian(model, x, y, names, train=True)
    assert not torch.allclose(h_eval, h_train, rtol=1e-3)
    curv = Curvature(model, x, y, names, batch_size=6)
    v = torch.randn(curv.dim, generator=gen(20), dtype=torch.float64)
    torch.testing.assert_close(curv.hvp(v), h_eval @ v, rtol=1e-10, atol=1e-12)
    lam = top_eigenvalue(curv, gen(21), iters=100, tol=1e-10)
    assert lam == pytest.approx(torch.linalg.eigvalsh(h_eval)[-1].item(), rel=1e-8)
    assert model.training and not model[1].training and model[0].training
    assert_untouched(model, before)


def test_float32_model() -> None:
    model64, (x, y) = mlp(), batch()
    model32 = mlp().float()
    curv = Curvature(model32, x.float(), y, NAMES)
    v = torch.randn(curv.dim, generator=gen(22))
    hv = curv.hvp(v)
    assert hv.dtype == torch.float32
    ref = Curvature(model64, x, y, NAMES).hvp(v.double())
    torch.testing.assert_close(hv.double(), ref, rtol=1e-4, atol=1e-5)
    assert isinstance(top_eigenvalue(curv, gen(23), iters=20), float)
