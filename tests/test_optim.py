"""lmcpipe's SGD and Adam follow torch.optim's update rules, on the fused and the foreach path."""

from __future__ import annotations

import pytest
import torch

from lmcpipe import optim

SHAPES = [(7, 5), (7,), (3, 7), (3,)]


def run(make, steps: int = 6, lr: float = 0.05) -> list[torch.Tensor]:
    """Parameters after ``steps`` updates with the same seeded gradients, lr changing per step."""
    gen = torch.Generator().manual_seed(0)
    params = [torch.randn(s, generator=gen).requires_grad_() for s in SHAPES]
    opt = make(params)
    for t in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen)
        step_lr = lr * (t + 1) / steps
        if isinstance(opt, torch.optim.Optimizer):
            for group in opt.param_groups:
                group["lr"] = step_lr
            opt.step()
        else:
            opt.step(step_lr)
    return [p.detach() for p in params]


def close(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.allclose(x, y, rtol=1e-5, atol=1e-6) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("momentum,weight_decay", [(0.0, 0.0), (0.9, 0.0), (0.9, 1e-2)])
def test_sgd_matches_torch(fused, momentum, weight_decay):
    ours = run(lambda ps: optim.SGD(ps, momentum=momentum, weight_decay=weight_decay,
                                    fused=fused))
    ref = run(lambda ps: torch.optim.SGD(ps, lr=0.0, momentum=momentum,
                                         weight_decay=weight_decay))
    assert close(ours, ref)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
def test_adam_matches_torch(fused, weight_decay):
    ours = run(lambda ps: optim.Adam(ps, weight_decay=weight_decay, fused=fused))
    ref = run(lambda ps: torch.optim.Adam(ps, lr=0.0, weight_decay=weight_decay))
    assert close(ours, ref)


def test_fused_is_the_default_on_cpu_and_can_be_turned_off():
    p = [torch.zeros(2, requires_grad=True)]
    assert optim.Adam(p).fused and optim.SGD(p).fused
    assert not optim.Adam(p, fused=False).fused


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_state_round_trip_continues_identically(kind):
    """A resumed optimiser (state_dict → new optimiser) takes the same next step."""
    make = ((lambda ps: optim.SGD(ps, momentum=0.9)) if kind == "sgd" else optim.Adam)
    gen = torch.Generator().manual_seed(1)
    a = [torch.randn(4, generator=gen).requires_grad_()]
    b = [a[0].detach().clone().requires_grad_()]
    opt_a, opt_b = make(a), make(b)
    for _ in range(3):
        g = torch.randn(4, generator=gen)
        a[0].grad, b[0].grad = g.clone(), g.clone()
        opt_a.step(0.1)
        opt_b.step(0.1)
    resumed = make(b)
    resumed.load_state_dict(opt_b.state_dict())
    g = torch.randn(4, generator=gen)
    a[0].grad, b[0].grad = g.clone(), g.clone()
    opt_a.step(0.1)
    resumed.step(0.1)
    assert torch.equal(a[0], b[0])
