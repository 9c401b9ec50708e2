"""The one masked optimiser step both training loops use, and what surrounds it.

The optimiser (``make_optimizer``), the update that keeps pruned weights exactly zero
(``masked_step``), bf16 autocast (``autocast``) and ``LossWatch``, which keeps the losses on the
device and raises ``Diverged`` at the next check.
"""

from __future__ import annotations

import torch

from lmcpipe import optim
from lmcpipe.errors import Diverged
from lmcpipe.hparams import TrainHParams


def make_optimizer(hp: TrainHParams, params) -> optim.SGD | optim.Adam:
    if hp.optimizer == "adam":
        return optim.Adam(params, weight_decay=hp.weight_decay)
    if hp.optimizer == "sgd":
        return optim.SGD(params, momentum=hp.momentum, weight_decay=hp.weight_decay)
    raise ValueError(f"unknown optimizer '{hp.optimizer}'")


def autocast(hp: TrainHParams, device: torch.device):
    """bfloat16 autocast when ``hp.precision == "bf16"`` (fp32 is the reference)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=hp.precision == "bf16")


def masked_step(optimizer: optim.SGD | optim.Adam, lr: float, mparams: list[torch.Tensor],
                mtensors: list[torch.Tensor]) -> None:
    """One update that keeps pruned weights exactly zero: gradients are masked before the step
    (so momentum / Adam moments stay zero there) and weights after it. ``mparams`` are the masked
    parameters, ``mtensors`` their masks as float tensors (stacked ones work the same way)."""
    if mparams:
        torch._foreach_mul_([p.grad for p in mparams], mtensors)
    optimizer.step(lr)
    if mparams:
        with torch.no_grad():
            torch._foreach_mul_(mparams, mtensors)


class LossWatch:
    """The training losses since the last check, kept on the device: ``check`` costs one host
    sync, so it runs at evaluations, checkpoints and the end instead of every step.

    A loss may be a scalar or one value per stacked member; ``check`` raises ``Diverged`` with
    the first step (and member) whose loss is not finite.
    """

    def __init__(self, step: int) -> None:
        self.step, self.pending = step, []

    def add(self, loss: torch.Tensor) -> None:
        self.pending.append(loss.detach())

    def check(self) -> None:
        if not self.pending:
            return
        losses = torch.stack(self.pending).float().reshape(len(self.pending), -1).cpu()
        bad = ~torch.isfinite(losses)
        if bool(bad.any()):
            row, member = (int(i) for i in bad.nonzero()[0])
            raise Diverged(self.step + row, float(losses[row, member]), member=member)
        self.step += len(self.pending)
        self.pending = []
