"""Snakemake's plan of some targets, read from its dry run (``snakemake -n -p``).

Why the dry run's text and not Snakemake's Python API: the dry run is Snakemake's documented,
stable output, it is what a researcher reads before submitting, and it applies every option
(``--configfile``, ``--config``, ``--profile``, ``--forceall``, ``--cores``) exactly as a real run
would. Each planned job is printed as a block::

    rule cohort_level_demo_unstable:            (or "localrule ...:", indented inside a group)
        input: a, b, c
        output: d, e
        jobid: 13
        wildcards: exp=demo_unstable, seed=0, k=0, level=1
        resources: tmpdir=/tmp, runtime=30, gpu=0, ...
        threads: 2                               (only when more than 1)
    Shell command: python -m lmcpipe cohort --hparams '{...}' ... > log 2>&1

``parse`` turns the blocks into ``PlannedJob``s; ``needs`` derives the DAG's edges from outputs
and inputs (a job needs the jobs that make its inputs); ``stage_call`` reads the ``lmcpipe``
stage and its flags out of the shell line. Paths are split at ", " as Snakemake joins them: a
path holding ", " would be misread (lmcpipe's own paths never do).
"""

from __future__ import annotations

import re
import resource
import shlex
import subprocess
import sys
from dataclasses import dataclass, field

from lmcpipe.errors import InputError

_RULE = re.compile(r"^\s*(?:local)?(?:rule|checkpoint) (\S+):\s*$")
_FIELD = re.compile(r"^\s+(input|output|log|jobid|wildcards|resources|threads|benchmark):"
                    r" ?(.*)$")
_SHELL = "Shell command:"


@dataclass
class PlannedJob:
    """One job of the plan, as the dry run prints it."""

    jobid: int
    rule: str
    local: bool = False
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    wildcards: dict[str, str] = field(default_factory=dict)
    resources: dict[str, str] = field(default_factory=dict)
    threads: int = 1
    shell: str = ""  # "" for a job without one (the target rule ``all``)

    @property
    def kind(self) -> str:
        """The rule without its experiment suffix (``cohort_level_demo`` -> ``cohort_level``):
        the per-experiment rules of one kind are summed together."""
        exp = self.wildcards.get("exp", "")
        return self.rule.removesuffix(f"_{exp}") if exp else self.rule


def _pairs(text: str) -> dict[str, str]:
    """``a=1, b=x`` -> {"a": "1", "b": "x"} (a value may itself hold ", " only after '=')."""
    found: dict[str, str] = {}
    for part in text.split(", "):
        key, eq, value = part.partition("=")
        if eq:
            found[key.strip()] = value
        elif found:  # a value that held ", "
            last = next(reversed(found))
            found[last] += ", " + part
    return found


def parse(text: str) -> list[PlannedJob]:
    """Every job block of a dry run's output (``snakemake -n -p``), in printed order."""
    jobs: list[PlannedJob] = []
    job: PlannedJob | None = None
    for line in text.splitlines():
        if m := _RULE.match(line):
            job = PlannedJob(jobid=-1, rule=m.group(1), local=line.lstrip().startswith("local"))
            jobs.append(job)
        elif job is None:
            continue
        elif line.startswith(_SHELL):
            shell = line[len(_SHELL):].strip()
            job.shell = "" if shell == "None" else shell
            job = None
        elif m := _FIELD.match(line):
            key, value = m.groups()
            if key == "input":
                job.inputs = tuple(value.split(", ")) if value else ()
            elif key == "output":
                job.outputs = tuple(value.split(", ")) if value else ()
            elif key == "jobid":
                job.jobid = int(value)
            elif key == "wildcards":
                job.wildcards = _pairs(value)
            elif key == "resources":
                job.resources = _pairs(value)
            elif key == "threads":
                job.threads = int(value)
        elif not line.strip():
            continue
    missing = [j.rule for j in jobs if j.jobid < 0]
    if missing:
        raise ValueError(f"dry run: no jobid for rule {missing[0]} (not Snakemake's -n -p output?)")
    return jobs


def needs(jobs: list[PlannedJob]) -> dict[int, set[int]]:
    """jobid -> the jobids whose outputs it reads (the DAG's edges within the plan; inputs that
    exist already or come from nowhere in the plan add none)."""
    made_by = {out: j.jobid for j in jobs for out in j.outputs}
    return {j.jobid: {made_by[i] for i in j.inputs if i in made_by and made_by[i] != j.jobid}
            for j in jobs}


def stage_call(shell: str) -> tuple[str, dict[str, list[str]]]:
    """``python -m lmcpipe <stage> --flag v ...`` -> (stage, {"flag": [v, ...]}); ("", {}) for
    a shell line that runs no lmcpipe stage. Redirections end the flags."""
    try:
        words = shlex.split(shell)
    except ValueError:
        return "", {}
    for i in range(len(words) - 2):
        if words[i : i + 2] == ["-m", "lmcpipe"]:
            stage, rest = words[i + 2], words[i + 3 :]
            break
    else:
        return "", {}
    flags: dict[str, list[str]] = {}
    current: list[str] | None = None
    for word in rest:
        if word in (">", "2>&1", ">>", "|", "&&", ";") or word.startswith(">"):
            break
        if word.startswith("--"):
            current = flags.setdefault(word[2:], [])
        elif current is not None:
            current.append(word)
    return stage, flags


@dataclass(frozen=True)
class SnakemakeOptions:
    """What ``lmcpipe estimate`` passes on to the dry run, as ``snakemake`` spells it."""

    targets: tuple[str, ...] = ()
    snakefile: str = ""
    directory: str = ""
    configfiles: tuple[str, ...] = ()
    config: tuple[str, ...] = ()
    profile: str = ""
    cores: int = 1
    forceall: bool = False

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "snakemake", "-n", "-p", "--nocolor",
               "--cores", str(self.cores)]
        if self.snakefile:
            cmd += ["-s", self.snakefile]
        if self.directory:
            cmd += ["-d", self.directory]
        if self.profile:
            cmd += ["--profile", self.profile]
        if self.configfiles:
            cmd += ["--configfile", *self.configfiles]
        if self.config:
            cmd += ["--config", *self.config]
        if self.forceall:
            cmd.append("--forceall")
        return [*cmd, "--", *self.targets] if self.targets else cmd


def plan(options: SnakemakeOptions, cwd: str | None = None) -> tuple[list[PlannedJob], float]:
    """Run the dry run; its jobs and its CPU seconds (Snakemake's own start and DAG build, which
    a real run pays too; CPU time, as ``lmcpipe.calibrate`` measures, so that other load on the
    machine does not count). A failed dry run ends in one line: Snakemake's last error line."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(options.command(), capture_output=True, text=True, cwd=cwd)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    seconds = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    if done.returncode != 0:
        lines = [ln for ln in (done.stderr + done.stdout).splitlines() if ln.strip()]
        why = next((ln for ln in reversed(lines) if "Error" in ln or "error" in ln),
                   lines[-1] if lines else f"exit status {done.returncode}")
        what = " ".join(options.targets) or "the default target"
        raise InputError(f"the dry run (snakemake -n) of {what} failed: {why.strip()}")
    if "Nothing to be done" in done.stdout + done.stderr:
        return [], seconds
    return parse(done.stdout), seconds
