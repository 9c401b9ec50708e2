"""A DAG of timed jobs played out on a machine's cores and GPU slots: wall time and critical path.

``lmcpipe estimate`` knows each planned job's duration and what it holds while it runs (its
threads, and one GPU slot if it is a GPU job); this module answers how long the whole plan takes
on ``cores`` cores and ``gpus`` slots, and which chain of jobs no amount of hardware shortens.

The critical path is the longest chain of dependent jobs by duration: the wall time with
unlimited cores and GPUs. The wall time is simulated by list scheduling: whenever a job ends
(and at the start), the ready jobs are started in order of their longest remaining chain
(the critical-path-first rule) while their threads and GPU fit. Snakemake's own scheduler
prefers other jobs at times, so its wall time can differ; with as many cores as the plan can
use both reach the critical path. A job asking for more threads than ``cores`` holds them all
(as Snakemake scales it down to ``--cores``).
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    """A job to schedule: how long it runs and what it holds meanwhile."""

    seconds: float
    threads: int = 1
    gpu: bool = False


@dataclass(frozen=True)
class Schedule:
    wall_s: float
    critical_s: float
    critical_path: tuple[int, ...]  # job ids, first to last
    busy_core_s: float  # core-seconds held: wall_s x cores minus the idle


def _order(tasks: Mapping[int, Task], needs: Mapping[int, set[int]]) -> list[int]:
    """Job ids in an order where every job comes after the jobs it needs."""
    users: dict[int, list[int]] = {j: [] for j in tasks}
    missing = {j: len(needs.get(j, ())) for j in tasks}
    for j in tasks:
        for n in needs.get(j, ()):
            users[n].append(j)
    ready = sorted(j for j, m in missing.items() if m == 0)
    order = []
    while ready:
        j = ready.pop()
        order.append(j)
        for u in users[j]:
            missing[u] -= 1
            if missing[u] == 0:
                ready.append(u)
    if len(order) != len(tasks):
        raise ValueError("the plan's jobs depend on each other in a cycle")
    return order


def critical_path(tasks: Mapping[int, Task], needs: Mapping[int, set[int]]
                  ) -> tuple[float, tuple[int, ...], dict[int, float]]:
    """(length, job ids along it, each job's longest chain from its start to the end)."""
    order = _order(tasks, needs)
    users: dict[int, list[int]] = {j: [] for j in tasks}
    for j in tasks:
        for n in needs.get(j, ()):
            users[n].append(j)
    tail: dict[int, float] = {}
    for j in reversed(order):
        tail[j] = tasks[j].seconds + max((tail[u] for u in users[j]), default=0.0)
    if not tasks:
        return 0.0, (), tail
    first = max((j for j in tasks if not needs.get(j)), key=lambda j: (tail[j], -j))
    path = [first]
    while users[path[-1]]:
        path.append(max(users[path[-1]], key=lambda u: (tail[u], -u)))
    return tail[first], tuple(path), tail


def simulate(tasks: Mapping[int, Task], needs: Mapping[int, set[int]], cores: int,
             gpus: int = 0) -> Schedule:
    """Play the plan out on ``cores`` cores and ``gpus`` GPU slots (module docstring). GPU jobs
    need a slot; with ``gpus`` 0 they run on the cores alone."""
    if cores < 1:
        raise ValueError("cores must be at least 1")
    length, path, tail = critical_path(tasks, needs)
    missing = {j: len(needs.get(j, ())) for j in tasks}
    users: dict[int, list[int]] = {j: [] for j in tasks}
    for j in tasks:
        for n in needs.get(j, ()):
            users[n].append(j)
    ready = [j for j, m in missing.items() if m == 0]
    running: list[tuple[float, int]] = []  # (end time, job id)
    free_cores, free_gpus, now, busy = cores, gpus, 0.0, 0.0
    while ready or running:
        ready.sort(key=lambda j: (-tail[j], j))
        waiting = []
        for j in ready:
            t = tasks[j]
            threads = min(max(t.threads, 1), cores)
            slot = t.gpu and gpus > 0
            if threads <= free_cores and (not slot or free_gpus > 0):
                free_cores -= threads
                free_gpus -= slot
                busy += threads * t.seconds
                heapq.heappush(running, (now + t.seconds, j))
            else:
                waiting.append(j)
        ready = waiting
        if not running:
            break
        now, j = heapq.heappop(running)
        finished = [j]
        while running and running[0][0] <= now:
            finished.append(heapq.heappop(running)[1])
        for f in finished:
            t = tasks[f]
            free_cores += min(max(t.threads, 1), cores)
            free_gpus += t.gpu and gpus > 0
            for u in users[f]:
                missing[u] -= 1
                if missing[u] == 0:
                    ready.append(u)
    return Schedule(now, length, path, busy)
