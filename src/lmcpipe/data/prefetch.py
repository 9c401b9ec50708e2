"""Host-resident batches (memory-mapped ImageNet) gathered one step ahead, off the training thread.

Why: a batch of the memory-mapped set is a gather of B rows from the page cache (at 224 px and
B = 256, 38 MB; K times that for a stack). Done on the training thread into pageable memory and
copied synchronously, the device waits for it on every step. Here step t+1's rows are gathered
on a background thread into one of two reusable buffers while step t trains, and on CUDA the
buffers are pinned and copied to the device with ``non_blocking=True`` on a side stream, so the
copy overlaps the step's kernels too; the training stream waits for the copy's event, not the
host. On the CPU there is no pinned memory and no copy: the buffers are plain, and the thread
also runs ``prepare`` (uint8 -> normalised float, host work there). On CUDA ``prepare`` runs on
the training stream after the copy, so only a uint8 batch is held ahead on the device (a float
one would be 4x larger: 2.4 GB for 16 members at 224 px).

What it returns is what the synchronous path returns, bit for bit: a batch is a pure function of
its step (``indices(step)``), so asking for any step (a resume, a skipped step) is just slower.
The returned tensors are new ones (the buffers never leave this module).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import torch

Batch = tuple[torch.Tensor, torch.Tensor, "torch.cuda.Event | None"]


class Prefetcher:
    """``prepare(x[indices(step)])`` and ``y[indices(step)]`` on ``device``, one step ahead
    (``x``, ``y``: host tensors; ``prepare``: moves a batch of x's rows to ``device`` and
    returns a new tensor, as ``Data.prepare``)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, device: torch.device | str,
                 indices: Callable[[int], torch.Tensor], max_rows: int,
                 prepare: Callable[[torch.Tensor], torch.Tensor]):
        self._x, self._y, self._indices, self._prepare = x, y, indices, prepare
        self._device = torch.device(device)
        cuda = self._device.type == "cuda"
        self._stream = torch.cuda.Stream(self._device) if cuda else None
        self._buffers = [(torch.empty((max_rows, *x.shape[1:]), dtype=x.dtype, pin_memory=cuda),
                          torch.empty(max_rows, dtype=y.dtype, pin_memory=cuda))
                         for _ in range(2)]
        self._events: list[torch.cuda.Event | None] = [None, None]  # each buffer's last copy
        self._slot = 0  # the buffer the next load fills
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="lmcpipe-prefetch")
        self._pending: tuple[int, Future] | None = None

    def _load(self, step: int, slot: int) -> Batch:
        """Gather step's rows into buffer ``slot`` and (CUDA) start their copy to the device."""
        idx = self._indices(step)
        bx, by = self._buffers[slot]
        if self._events[slot] is not None:
            self._events[slot].synchronize()  # the buffer's previous copy has left it
        xs = torch.index_select(self._x, 0, idx, out=bx[: len(idx)])
        ys = torch.index_select(self._y, 0, idx, out=by[: len(idx)])
        if self._stream is None:  # the CPU: prepared here, into new tensors
            return self._prepare(xs), ys.clone(), None
        with torch.cuda.stream(self._stream):
            xd = xs.to(self._device, non_blocking=True)
            yd = ys.to(self._device, non_blocking=True)
            event = torch.cuda.Event()
            event.record(self._stream)
        self._events[slot] = event
        return xd, yd, event

    def _next_slot(self) -> int:
        slot, self._slot = self._slot, 1 - self._slot
        return slot

    def get(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Step's prepared rows and labels on the device; the gather of step + 1 starts behind
        them."""
        batch = None
        if self._pending is not None:
            ahead, future = self._pending
            self._pending = None
            done = future.result()  # also when unwanted: its buffer must be settled
            if ahead == step:
                batch = done
        if batch is None:
            batch = self._load(step, self._next_slot())
        xd, yd, event = batch
        if event is not None:  # the training stream waits for the copy, not the host
            current = torch.cuda.current_stream(self._device)
            current.wait_event(event)
            xd.record_stream(current)  # made on the side stream, freed after its use here
            yd.record_stream(current)
            xd = self._prepare(xd)
        self._pending = (step + 1, self._pool.submit(self._load, step + 1, self._next_slot()))
        return xd, yd

    def close(self) -> None:
        """Wait for the gather in flight and stop the thread."""
        if self._pending is not None:
            self._pending[1].exception()
            self._pending = None
        self._pool.shutdown(wait=True)
