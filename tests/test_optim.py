"""lmcpipe's SGD and Adam follow torch.optim's update rules, on the fused and the foreach path.

Against torch.optim's own fused / foreach implementations (the same kernels) the match is exact,
so a torch upgrade that changes the private calls' meaning, or drops them, fails here.
"""

from __future__ import annotations

import pytest
import torch

from lmcpipe import atomic, optim

SHAPES = [(7, 5), (7,), (3, 7), (3,), (4, 3, 7)]  # the last: stacked members, leading dim


def run(make, steps: int = 6, lr: float = 0.05, device: str = "cpu") -> list[torch.Tensor]:
    """Parameters after ``steps`` updates with the same seeded gradients, lr changing per step
    (drawn on the CPU, so every device sees the same numbers)."""
    gen = torch.Generator().manual_seed(0)
    params = [torch.randn(s, generator=gen).to(device).requires_grad_() for s in SHAPES]
    opt = make(params)
    for t in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen).to(device)
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


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def path_flag(fused: bool) -> dict:
    return {"fused": True} if fused else {"foreach": True}


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("momentum,weight_decay", [(0.0, 0.0), (0.0, 1e-2), (0.9, 0.0),
                                                   (0.9, 1e-2)])
def test_sgd_is_bit_identical_to_torch_fused_and_foreach(fused, momentum, weight_decay):
    ours = run(lambda ps: optim.SGD(ps, momentum=momentum, weight_decay=weight_decay,
                                    fused=fused))
    ref = run(lambda ps: torch.optim.SGD(ps, lr=0.0, momentum=momentum,
                                         weight_decay=weight_decay, **path_flag(fused)))
    assert same(ours, ref)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
def test_adam_is_bit_identical_to_torch_fused_and_foreach(fused, weight_decay):
    ours = run(lambda ps: optim.Adam(ps, weight_decay=weight_decay, fused=fused))
    ref = run(lambda ps: torch.optim.Adam(ps, lr=0.0, weight_decay=weight_decay,
                                          **path_flag(fused)))
    assert same(ours, ref)


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@CUDA
@pytest.mark.parametrize("kind", ["sgd", "sgd-momentum-wd", "adam", "adam-wd"])
def test_fused_kernels_on_cuda_match_torch_optim(kind):
    """The private fused calls on CUDA (what a GPU job runs; bench/gpu_check.sh runs this): bit
    for bit torch.optim's fused implementation on CUDA, and within float tolerance of the CPU."""
    def ours(ps):
        if kind.startswith("adam"):
            return optim.Adam(ps, weight_decay=1e-2 if kind.endswith("wd") else 0.0)
        wd = kind.endswith("wd")
        return optim.SGD(ps, momentum=0.9 if wd else 0.0, weight_decay=1e-2 if wd else 0.0)

    def reference(ps):
        if kind.startswith("adam"):
            return torch.optim.Adam(ps, lr=0.0, weight_decay=1e-2 if kind.endswith("wd") else 0.0,
                                    fused=True)
        wd = kind.endswith("wd")
        return torch.optim.SGD(ps, lr=0.0, momentum=0.9 if wd else 0.0,
                               weight_decay=1e-2 if wd else 0.0, fused=True)

    assert ours([torch.zeros(2, device="cuda", requires_grad=True)]).fused
    on_cuda = run(ours, device="cuda")
    assert same(on_cuda, run(reference, device="cuda"))
    assert close([t.cpu() for t in on_cuda], run(ours))


def test_fused_is_the_default_on_cpu_and_can_be_turned_off():
    p = [torch.zeros(2, requires_grad=True)]
    assert optim.Adam(p).fused and optim.SGD(p).fused
    assert not optim.Adam(p, fused=False).fused


def test_a_torch_without_the_private_kernels_falls_back_to_foreach(monkeypatch):
    monkeypatch.delattr(torch, "_fused_adam_")
    monkeypatch.delattr(torch, "_fused_sgd_")
    p = [torch.zeros(2, requires_grad=True)]
    assert not optim.Adam(p).fused and not optim.SGD(p).fused


MAKERS = {
    "sgd": lambda fused: lambda ps: optim.SGD(ps, fused=fused),
    "sgd-momentum-wd": lambda fused: lambda ps: optim.SGD(ps, momentum=0.9, weight_decay=1e-2,
                                                          fused=fused),
    "adam": lambda fused: lambda ps: optim.Adam(ps, fused=fused),
    "adam-wd": lambda fused: lambda ps: optim.Adam(ps, weight_decay=1e-2, fused=fused),
}


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("kind", list(MAKERS))
@pytest.mark.parametrize("resume_at", [0, 1, 3])
def test_state_round_trip_continues_identically(kind, fused, resume_at, tmp_path):
    """A resumed optimiser (state_dict → file → new optimiser, as a resumed training job loads
    it) takes the same next steps, bit for bit — also when saved before or after the first."""
    make = MAKERS[kind](fused)
    gen = torch.Generator().manual_seed(1)
    a = [torch.randn(s, generator=gen).requires_grad_() for s in SHAPES]
    b = [x.detach().clone().requires_grad_() for x in a]
    opt_a, opt_b = make(a), make(b)

    def step(opts, lr):
        grads = [torch.randn(x.shape, generator=gen) for x in a]
        for params, opt in opts:
            for x, g in zip(params, grads, strict=True):
                x.grad = g.clone()
            opt.step(lr)

    for t in range(resume_at):
        step([(a, opt_a), (b, opt_b)], 0.1 / (t + 1))
    atomic.save_torch(opt_b.state_dict(), tmp_path / "opt.pt")
    resumed = make(b)
    resumed.load_state_dict(atomic.load_torch(tmp_path / "opt.pt"))
    for t in range(3):
        step([(a, opt_a), (b, resumed)], 0.05 * (t + 1))
    assert same(a, b)
