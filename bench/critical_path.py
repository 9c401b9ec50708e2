"""Critical path and wall time of a plan, from the job times of a real Snakemake run.

Why: an IMP chain's levels run one after another, so its critical path (the longest chain of
dependent jobs, the wall time with unlimited cores) bounds a run from below however many cores it
gets, and the total work over the cores bounds it from the other side. This reads Snakemake's plan
(a dry run: ``snakemake -n -p --forceall``, parsed by ``lmcpipe.dryrun``) and the start and finish
stamps of every job in a finished run's log (``.snakemake/log/*.snakemake.log``), and prints the
measured wall time beside the critical path and a list-scheduling simulation on ``--cores``.
The simulation picks ready jobs as Snakemake does: rule ``priority`` first (the chain's jobs,
docs/how-it-works.md, "Cohorts"); among equals the one that became ready last, as Snakemake
tends to follow a job with the jobs it enabled (on paper A's LeNet recipe this came within 3 %
of the real runs' wall times, taking them in the order they became ready 8-12 % above); each
job holds its threads.

With ``--project PLAN ...`` it plays out other plans (more levels, more steps, the same
experiment before and after a change) with one cost table pooled over every ``--run``: a training
job takes the mean fixed cost of the measured training jobs (job time less its members' training
time from their provenance records) plus ``--member-seconds`` per run at ``--steps`` steps,
scaled by the run's own steps; an interpolation job takes the mean measured seconds per pair
times its pairs; every other job the mean measured time of its rule.

    snakemake -n -p --forceall ... > plan.txt; snakemake ...      (the real run, in workdir)
    python bench/critical_path.py --run plan.txt workdir/.snakemake/log/<run>.snakemake.log \
        workdir [--run ...] --cores 2 32 \
        [--project full_before.txt full_after.txt --member-seconds 100 --steps 24000]
"""

from __future__ import annotations

import argparse
import datetime
import heapq
import json
import re
import statistics
from collections import defaultdict
from pathlib import Path

from lmcpipe import paths
from lmcpipe.dryrun import PlannedJob, needs, parse, stage_call

_STAMP = re.compile(r"^\s*\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
_START = re.compile(r"^\s*(?:local)?rule (\S+):$")
_OUTPUT = re.compile(r"^\s+output: (.*)$")
_JOBID = re.compile(r"^\s+jobid: (\d+)$")
_FINISHED = re.compile(r"^\s*Finished jobid: (\d+)")
_PRIORITY = re.compile(r"^\s+priority: (-?\d+)$")


def priorities(text: str) -> dict[int, int]:
    """jobid -> rule priority, from a dry run's job blocks (0 where none is printed)."""
    found, current = {}, None
    for line in text.splitlines():
        if _START.match(line):
            current = None
        elif m := _JOBID.match(line):
            current = int(m.group(1))
        elif (m := _PRIORITY.match(line)) and current is not None:
            found[current] = int(m.group(1))
    return found


def measured(log: str) -> dict[str, tuple[float, float]]:
    """First output of each finished job -> (start, end), seconds after the first job's start
    (Snakemake stamps to the second)."""
    stamp = None
    began: dict[int, tuple[float, str]] = {}
    ended: dict[int, float] = {}
    pending: dict = {}
    for line in log.splitlines():
        if m := _STAMP.match(line):
            stamp = datetime.datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y").timestamp()
        elif _START.match(line):
            pending = {"start": stamp}
        elif (m := _OUTPUT.match(line)) and pending:
            pending["out"] = m.group(1).split(", ")[0]
        elif (m := _JOBID.match(line)) and pending:
            began[int(m.group(1))] = pending["start"], pending.get("out", "")
            pending = {}
        elif m := _FINISHED.match(line):
            ended[int(m.group(1))] = stamp
    t0 = min(s for s, _ in began.values())
    return {out: (s - t0, ended[j] - t0) for j, (s, out) in began.items() if j in ended}


def kind(job: PlannedJob) -> str:
    return job.kind


def critical_path(jobs: dict[int, PlannedJob], edges: dict[int, set[int]],
                  seconds: dict[int, float]) -> tuple[float, list[int]]:
    finish: dict[int, float] = {}
    before: dict[int, int | None] = {}
    for j in _order(jobs, edges):
        last = max(edges[j], key=lambda n: finish[n], default=None)
        finish[j] = (finish[last] if last is not None else 0.0) + seconds[j]
        before[j] = last
    end = max(finish, key=lambda j: finish[j])
    path = [end]
    while (prev := before[path[-1]]) is not None:
        path.append(prev)
    return finish[end], path[::-1]


def _order(jobs: dict[int, PlannedJob], edges: dict[int, set[int]]) -> list[int]:
    users = _users(jobs, edges)
    left = {j: len(edges[j]) for j in jobs}
    ready, out = [j for j in jobs if not left[j]], []
    while ready:
        j = ready.pop()
        out.append(j)
        for u in users[j]:
            left[u] -= 1
            if not left[u]:
                ready.append(u)
    return out


def _users(jobs: dict[int, PlannedJob], edges: dict[int, set[int]]) -> dict[int, list[int]]:
    users: dict[int, list[int]] = {j: [] for j in jobs}
    for j in jobs:
        for n in edges[j]:
            users[n].append(j)
    return users


def simulate(jobs: dict[int, PlannedJob], edges: dict[int, set[int]],
             seconds: dict[int, float], prio: dict[int, int], cores: int) -> float:
    """Wall time on ``cores``: ready jobs start by priority, then the last to become ready."""
    users, left = _users(jobs, edges), {j: len(edges[j]) for j in jobs}
    ready = [(-prio.get(j, 0), 0, j) for j in sorted(jobs) if not left[j]]
    running: list[tuple[float, int]] = []
    now, free, became = 0.0, cores, 1
    while ready or running:
        ready.sort()
        waiting = []
        for entry in ready:
            threads = min(jobs[entry[2]].threads, cores)
            if threads <= free:
                free -= threads
                heapq.heappush(running, (now + seconds[entry[2]], entry[2]))
            else:
                waiting.append(entry)
        ready = waiting
        now, j = heapq.heappop(running)
        done = [j]
        while running and running[0][0] <= now:
            done.append(heapq.heappop(running)[1])
        for j in done:
            free += min(jobs[j].threads, cores)
            for u in users[j]:
                left[u] -= 1
                if not left[u]:
                    ready.append((-prio.get(u, 0), -became, u))
                    became += 1
    return now


def members(job: PlannedJob) -> list[tuple[str, int]]:
    """(model.pt, steps trained) of each run a training job trains; [] for other jobs."""
    stage, flags = stage_call(job.shell)
    if stage == "cohort":
        steps = json.loads(flags["hparams"][0])["steps"] - int(flags["start-step"][0])
        return [(m["model_out"], steps) for m in json.loads(flags["members"][0])]
    if stage == "train" and "stop-step" in flags:  # rewind: W_k, trained from W_0
        return [(job.outputs[0], int(flags["stop-step"][0]))]
    return []


def member_seconds(workdir: Path, model: str) -> float:
    """A trained run's own training time from its provenance record (``wall_s``)."""
    record = workdir / paths.record_file(model)
    return float(json.loads(record.read_text())["wall_s"])


def load(plan_file: Path) -> tuple[dict[int, PlannedJob], dict[int, set[int]], dict[int, int]]:
    text = plan_file.read_text()
    jobs = {j.jobid: j for j in parse(text)}
    return jobs, needs(list(jobs.values())), priorities(text)


def summary(name: str, jobs, edges, seconds, prio, cores: list[int]) -> None:
    length, path = critical_path(jobs, edges, seconds)
    by_kind: dict[str, float] = defaultdict(float)
    for j in path:
        by_kind[kind(jobs[j])] += seconds[j]
    total = sum(seconds.values())
    print(f"{name}: {len(jobs)} jobs, {total:.0f} job-s in all")
    print(f"  critical path {length:.0f} s ({length / 60:.1f} min), {len(path)} jobs: "
          + ", ".join(f"{k} {v:.0f} s" for k, v in by_kind.items()))
    for n in cores:
        wall = simulate(jobs, edges, seconds, prio, n)
        print(f"  simulated wall on {n} cores: {wall:.0f} s ({wall / 60:.1f} min)")


def kind_of_cost(job: PlannedJob) -> str:
    """The cost table's key: training jobs share one fixed cost, interpolations a per-pair
    cost, every other rule its own."""
    stage, _ = stage_call(job.shell)
    if members(job):
        return "training"
    return "interpolation" if stage == "interpolate-pairs" else kind(job)


def pairs(job: PlannedJob) -> int:
    return len(json.loads(stage_call(job.shell)[1]["pairs"][0]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", nargs=3, action="append", required=True, type=Path,
                    metavar=("PLAN", "LOG", "WORKDIR"),
                    help="a finished run: its dry run (-n -p --forceall), its log, its -d")
    ap.add_argument("--cores", type=int, nargs="+", default=[2])
    ap.add_argument("--project", type=Path, nargs="+", help="dry runs to play out")
    ap.add_argument("--member-seconds", type=float, help="one run's training at --steps")
    ap.add_argument("--steps", type=int, help="the steps --member-seconds was measured at")
    args = ap.parse_args()
    if args.project and not (args.member_seconds and args.steps):
        ap.error("--project needs --member-seconds and --steps")

    costs: dict[str, list[float]] = defaultdict(list)
    for plan_file, log, workdir in args.run:
        jobs, edges, prio = load(plan_file)
        times = measured(log.read_text())
        # a job the run did not run (--forceall plans the download of data already on disk)
        # or without outputs (the target rule) takes no time
        missing = sorted({j.rule for j in jobs.values()
                          if j.outputs and j.outputs[0] not in times})
        seconds = {j: (times[job.outputs[0]][1] - times[job.outputs[0]][0])
                   if job.outputs and job.outputs[0] in times else 0.0
                   for j, job in jobs.items()}
        wall = max(end for _, end in times.values())
        print(f"== {plan_file}: measured wall {wall:.0f} s ({wall / 60:.1f} min), first job "
              f"start to last job end" + (f"; not run, 0 s: {', '.join(missing)}" if missing
                                          else ""))
        summary("measured run", jobs, edges, seconds, prio, args.cores)
        for j, job in jobs.items():
            if job.outputs and job.outputs[0] in times:
                key = kind_of_cost(job)
                trained = sum(member_seconds(workdir, m) for m, _ in members(job))
                per = pairs(job) if key == "interpolation" else 1
                costs[key].append(max(seconds[j] - trained, 0.0) / per)
    table = {key: statistics.mean(v) for key, v in costs.items()}
    if not args.project:
        return
    print("cost table (s): " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(table.items()))
          + f"; a run at {args.steps} steps {args.member_seconds:.1f}")
    for plan_file in args.project:
        big, big_edges, big_prio = load(plan_file)
        projected = {}
        for j, job in big.items():
            key = kind_of_cost(job)
            per = pairs(job) if key == "interpolation" else 1
            projected[j] = table.get(key, 0.0) * per + sum(
                args.member_seconds * steps / args.steps for _, steps in members(job))
        summary(f"== projected {plan_file}", big, big_edges, projected, big_prio, args.cores)


if __name__ == "__main__":
    main()
