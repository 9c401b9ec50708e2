"""Progress lines of a long training loop: step, speed, ETA and loss, about 20 per run.

A job's log otherwise says nothing between its start and its final errors, which for a
full-size run is hours: no way to tell a slow job from a hung one, or to see a loss going wrong.
``Progress.tick`` is called once per step and prints a line each time the run crosses another
``every`` (5 %) of its steps, so a run of any length logs about 20 lines.

Cost and determinism: the loss is a device tensor, and turning it into a number waits for the
device (a host sync), so that happens only on the printing steps; everything else is integer
arithmetic and the wall clock. Nothing here draws random numbers, so training is bit-identical
with or without progress lines.
"""

from __future__ import annotations

import time

import torch


def duration(seconds: float) -> str:
    """A short human duration: ``42s``, ``9m12s``, ``3h05m``."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def loss_text(loss: torch.Tensor) -> str:
    """``loss 0.3127`` for a scalar; the mean and the range for one loss per stacked member.

    The one host sync of a progress line happens here."""
    values = loss.detach().float().reshape(-1).cpu()
    text = f"loss {float(values.mean()):.4f}"
    if values.numel() > 1:
        text += f" (min {float(values.min()):.4f}, max {float(values.max()):.4f})"
    return text


class Progress:
    """Progress of one training process from ``start_step`` to ``stop_step``.

    ``start_step`` is where this process starts (a resumed run: the step it resumed at), so the
    speed and ETA are those of the steps trained here; ``origin`` is the schedule position the
    run itself started from (default ``start_step``), which sets the 5 % grid and the percentage,
    so a resumed run prints at the same steps as an uninterrupted one would have.
    """

    def __init__(self, start_step: int, stop_step: int, label: str = "", every: float = 0.05,
                 origin: int | None = None) -> None:
        self.origin = start_step if origin is None else origin
        self.start, self.stop = start_step, stop_step
        self.total = max(stop_step - self.origin, 1)
        self.parts = max(1, round(1 / every))
        self.prefix = f"{label}: " if label else ""
        self.bucket = self._bucket(start_step)
        self.t0 = time.perf_counter()

    def _bucket(self, step: int) -> int:
        """How many ``every``-sized parts of the run ``step`` has completed (integer arithmetic:
        no float rounding decides whether a line is printed)."""
        return (step - self.origin) * self.parts // self.total

    def tick(self, step: int, loss: torch.Tensor) -> str | None:
        """Record that ``step`` steps are done, ``loss`` being the last one's loss; returns the
        line printed, or None (nearly every step: then ``loss`` is not read)."""
        bucket = self._bucket(step)
        if bucket <= self.bucket and step < self.stop:
            return None
        self.bucket = bucket
        line = self.line(step, loss)
        print(line, flush=True)
        return line

    def line(self, step: int, loss: torch.Tensor) -> str:
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        rate = (step - self.start) / elapsed
        eta = (self.stop - step) / rate if rate > 0 else 0.0
        percent = 100 * (step - self.origin) // self.total
        return (f"{self.prefix}step {step}/{self.stop} ({percent}%), {rate:.1f} steps/s, "
                f"ETA {duration(eta)}, {loss_text(loss)}")
