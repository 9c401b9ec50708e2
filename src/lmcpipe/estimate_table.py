"""The text ``lmcpipe estimate`` prints: the per-rule table, durations, the critical path.

Kept apart from ``lmcpipe.estimate`` (which counts and times the work) so each stays short;
nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lmcpipe.dryrun import PlannedJob
from lmcpipe.estimate import Estimate, JobWork, Timed
from lmcpipe.roofline import DeviceSpec


def human(x: float, unit: str = "") -> str:
    """3 significant digits with a k/M/G/T/P/E prefix: ``1.23 T``."""
    for prefix, size in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6),
                         ("k", 1e3)):
        if abs(x) >= size:
            return f"{x / size:.3g} {prefix}{unit}".rstrip()
    return f"{x:.3g} {unit}".rstrip() if x else "0"


def duration(seconds: float) -> str:
    """``42.0s``, ``9m12s``, ``3h05m``, ``2d04h``."""
    s = max(0.0, seconds)
    if s < 60:
        return f"{s:.1f}s"
    s = round(s)
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


@dataclass
class Row:
    kind: str
    jobs: int = 0
    runs: int = 0
    member_steps: float = 0.0
    images: float = 0.0
    flops: float = 0.0
    seconds: float = 0.0
    bound_s: float = 0.0
    spec_s: float = 0.0
    sources: set[str] = field(default_factory=set)
    spec_sources: set[str] = field(default_factory=set)

    def add(self, work: JobWork, timed: Timed) -> None:
        self.jobs += 1
        self.runs += work.runs
        self.member_steps += work.member_steps
        self.images += work.images()
        self.flops += timed.flops
        self.seconds += timed.seconds
        self.bound_s += timed.bound_s
        self.spec_s += timed.spec_s
        if timed.source != "-":
            self.sources.add(timed.source)
        if timed.spec_source:
            self.spec_sources.add(timed.spec_source)


def rows(works: list[JobWork], timed: dict[int, Timed]) -> list[Row]:
    """One row per rule kind (``PlannedJob.kind``), most time first, and the total last."""
    by_kind: dict[str, Row] = {}
    total = Row("total")
    for w in works:
        t = timed[w.job.jobid]
        by_kind.setdefault(w.job.kind, Row(w.job.kind)).add(w, t)
        total.add(w, t)
    return [*sorted(by_kind.values(), key=lambda r: (-r.seconds, r.kind)), total]


def table(rows_: list[Row], spec: DeviceSpec | None) -> str:
    """The per-rule table as fixed-width text."""
    head = ["rule", "jobs", "runs", "member-steps", "images", "FLOPs", "time here", "source"]
    if spec:
        head[-1:] = [f"bound {spec.key}", f"projected {spec.key}", "source"]
    lines = []
    for r in rows_:
        cells = [r.kind, str(r.jobs), str(r.runs), human(r.member_steps), human(r.images),
                 human(r.flops), duration(r.seconds)]
        if spec:
            gpu = r.bound_s > 0 or r.spec_sources
            cells += [duration(r.bound_s) if gpu else "-", duration(r.spec_s) if gpu else "-",
                      ", ".join(sorted(r.spec_sources)) or "here"]
        else:
            cells.append(", ".join(sorted(r.sources)))
        lines.append(cells)
    widths = [max(len(c[i]) for c in [head, *lines]) for i in range(len(head))]

    def fmt(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i in (0, len(cells) - 1) else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    out = [fmt(head), fmt(["-" * w for w in widths])]
    out += [fmt(c) for c in lines[:-1]]
    return "\n".join([*out, fmt(["-" * w for w in widths]), fmt(lines[-1])])


def path_text(path: tuple[int, ...], jobs: dict[int, PlannedJob]) -> str:
    """A critical path as its rule kinds, repeats folded: ``init > rewind > cohort_level x2``."""
    kinds = [jobs[j].kind for j in path if jobs[j].shell]
    folded: list[list] = []
    for k in kinds:
        if folded and folded[-1][0] == k:
            folded[-1][1] += 1
        else:
            folded.append([k, 1])
    return " > ".join(k if n == 1 else f"{k} x{n}" for k, n in folded)


def report(result: Estimate, targets: tuple[str, ...] = ()) -> str:
    """The whole printout of ``lmcpipe estimate``."""
    from lmcpipe import calibrate, workload

    jobs = {j.jobid: j for j in result.jobs}
    what = " ".join(targets) or "the default target"
    if not result.jobs:
        return f"{what}: nothing to do (Snakemake's dry run plans no job; --all counts all)"
    out = [f"{what}: {len(result.jobs)} jobs planned by Snakemake", "",
           table(rows(result.works, result.timed), result.spec), ""]
    gpus = f", {result.gpus_here} GPU{'s' * (result.gpus_here != 1)}" if result.gpus_here else ""
    here = result.here
    out.append(f"Here ({result.device_here}, {result.cores} core{'s' * (result.cores != 1)}"
               f"{gpus}): wall time {duration(result.wall_here_s)} = Snakemake's start "
               f"{duration(result.snakemake_s)} (this dry run's) + the jobs played out "
               f"{duration(here.wall_s)}")
    out.append(f"  critical path {duration(here.critical_s)}: "
               f"{path_text(here.critical_path, jobs)}")
    if result.spec is not None and result.there is not None:
        spec, there = result.spec, result.there
        out.append(f"On {result.gpus} x {spec.name} (--device-spec {spec.key}) and "
                   f"{result.cores} cores: wall time {duration(result.snakemake_s + there.wall_s)}"
                   f"; critical path {duration(there.critical_s)}: "
                   f"{path_text(there.critical_path, jobs)}")
        out.append(f"  bound: roofline max(FLOPs / peak, bytes / bandwidth) of the GPU work, from "
                   f"datasheet numbers ({spec.source or spec.key}: {spec.peak('fp32') / 1e12:g}/"
                   f"{spec.peak('tf32') / 1e12:g}/{spec.peak('bf16') / 1e12:g} TFLOP/s fp32/tf32/"
                   f"bf16, {spec.bandwidth / 1e9:g} GB/s); a lower bound")
        out.append("  projected: each GPU job's start and data read as timed here, plus its work "
                   "at the cost table's seconds per member-step (lmcpipe.costs: the figures "
                   "cluster runtimes use) or, without one, at the roofline; jobs without a "
                   "device run as here")
    out.append(f"Sources: calibrated = the real code timed on this machine (CPU time of a job "
               f"with a core to itself; other load on the machine lengthens a real run), "
               f"cached in {calibrate.cache_path()} (delete it to calibrate again); FLOPs and "
               f"bytes counted on the meta device, cached in {workload.cache_path()}")
    out += [f"Note: {n}" for n in result.notes]
    return "\n".join(out)
