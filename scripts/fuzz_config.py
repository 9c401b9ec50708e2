"""Fuzz lmcpipe's config validation for a while: every hostile config must be refused with one
line naming its key, or be valid and plan (issue 21). The strategies (``tests/config_fuzz.py``)
and the judge (``tests/config_judge.py``) are those tests/test_config_fuzz.py runs briefly.

Prints the configs tried, refused cleanly, valid and planned, and crashes (an exception other
than ConfigError, a ConfigError not naming its key, a plan that fails), one shrunk example per
crash class with ``--shrink``, some refusal lines, and the outcome of real ``snakemake -n`` dry
runs of a few valid (and two refused) fuzzed configs, each in a scratch directory of its own.

    .venv/bin/python scripts/fuzz_config.py --seconds 600
    .venv/bin/python scripts/fuzz_config.py --examples 20000 --dry-runs 4 --shrink
"""

from __future__ import annotations

import argparse
import collections
import math
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, seed, settings

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests/ is a package: the strategies and the judge live there

from tests.config_fuzz import configs  # noqa: E402
from tests.config_judge import Outcome, judge  # noqa: E402

MEMORY = 6 << 30  # bytes a campaign may allocate: an exploding config is a MemoryError here,
# not the kernel killing whatever else runs on the machine
BATCH = 500  # examples per hypothesis run; the campaign runs batches until its budget is spent


def crash_class(outcome: Outcome) -> str:
    """A crash's kind: its message with values and line numbers blurred."""
    return re.sub(r"'[^']*'|\d+", "#", outcome.line)[:160]


def campaign(examples: int, seconds: float, first_seed: int, keep: int
             ) -> tuple[collections.Counter, dict[str, list], list]:
    """Judge hypothesis configs until ``examples`` or ``seconds`` run out: the counts, crashes
    by class (their configs), and up to ``keep`` configs of each other outcome."""
    counts: collections.Counter = collections.Counter()
    crashes: dict[str, list] = collections.defaultdict(list)
    kept: dict[str, list] = {"planned": [], "refused": []}
    deadline = time.monotonic() + seconds
    batch = 0
    while counts["tried"] < examples and time.monotonic() < deadline:
        size = min(BATCH, examples - counts["tried"])

        @seed(first_seed + batch)
        @settings(max_examples=size, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(configs)
        def one(cfg):
            if time.monotonic() > deadline or counts["tried"] >= examples:
                return
            counts["tried"] += 1
            outcome = judge(cfg)
            counts[outcome.kind] += 1
            if outcome.kind == "crash":
                crashes[crash_class(outcome)].append((cfg, outcome))
            elif len(kept[outcome.kind]) < keep:
                kept[outcome.kind].append((cfg, outcome))

        one()
        batch += 1
    return counts, crashes, kept


def dry_run(cfg: dict, where: Path) -> tuple[int, list[str]]:
    """``snakemake -n`` of the Snakefile with this config alone (a scratch working directory,
    so config.yaml is not merged in): exit status and what it printed."""
    where.mkdir(parents=True)
    (where / "fuzzed.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True))
    done = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--snakefile", str(ROOT / "Snakefile"),
         "--directory", str(where), "--configfile", "fuzzed.yaml", "--cores", "1"],
        capture_output=True, text=True, timeout=600, cwd=where)
    return done.returncode, (done.stdout + done.stderr).strip().splitlines()


def dry_runs(kept: dict[str, list], count: int) -> int:
    """Dry-run ``count`` planned configs that build every experiment (no ``all``) and two
    refused ones whose keys differ; print each outcome. Returns the mismatches: a planned
    config Snakemake refuses, or a refused one whose line Snakemake does not print."""
    planned = [c for c, o in kept["planned"] if "all" not in c and 0 < o.runs < 2000]
    sample = planned[:: max(1, math.ceil(len(planned) / count))][:count]
    keys: set[str] = set()
    for cfg, outcome in kept["refused"]:
        key = outcome.line.split(":")[0]
        if isinstance(cfg, dict) and "experiments" in cfg and key not in keys and len(keys) < 2:
            keys.add(key)
            sample.append(cfg)
    mismatches = 0
    with tempfile.TemporaryDirectory() as tmp:
        for i, cfg in enumerate(sample):
            expected = judge(cfg)
            rc, lines = dry_run(cfg, Path(tmp) / str(i))
            if expected.kind == "planned":
                total = [line.split()[-1] for line in lines if line.startswith("total")]
                ok = rc == 0 and bool(total)
                said = f"exit {rc}, {total[0] if total else '?'} jobs planned"
            else:
                ok = rc != 0 and expected.line in lines
                said = f"exit {rc}, {len(lines)} lines:\n        " + "\n        ".join(lines)
            mismatches += not ok
            print(f"  [{'ok' if ok else 'MISMATCH'}] {expected.kind}: {expected.line[:150]}"
                  f"\n      snakemake -n: {said}")
    return mismatches


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--dry-runs", type=int, default=4, help="valid configs to dry-run")
    parser.add_argument("--shrink", action="store_true",
                        help="shrink one example of each crash class (slow)")
    args = parser.parse_args(argv)
    resource.setrlimit(resource.RLIMIT_DATA, (MEMORY, MEMORY))

    start = time.monotonic()
    counts, crashes, kept = campaign(args.examples, args.seconds, args.seed, 50)
    took = time.monotonic() - start
    print(f"configs tried:                    {counts['tried']} in {took:.0f} s")
    print(f"refused cleanly (one line, key):  {counts['refused']}")
    print(f"valid and planned:                {counts['planned']}")
    print(f"tracebacks/crashes:               {counts['crash']}")
    for kind, found in sorted(crashes.items(), key=lambda kv: -len(kv[1])):
        cfg, outcome = found[0]
        print(f"\ncrash x{len(found)}: {outcome.line}")
        if args.shrink:
            from hypothesis import find

            cfg = find(configs, lambda c, kind=kind: crash_class(judge(c)) == kind,
                       settings=settings(database=None, max_examples=2000,
                                         suppress_health_check=list(HealthCheck)))
        print("  config:", repr(cfg)[:600])

    print("\nexample refusals:")
    seen = set()
    for _, outcome in kept["refused"]:
        kind = outcome.line.split(":")[0].split(".")[-1]
        if kind not in seen and len(seen) < 12:
            seen.add(kind)
            print("  " + outcome.line[:200])
    runs = [o.runs for _, o in kept["planned"]]
    if runs:
        print(f"\nplanned configs kept: {len(runs)}, runs per config: median "
              f"{sorted(runs)[len(runs) // 2]}, max {max(runs)}")

    if args.dry_runs:
        print("\nsnakemake -n of sampled fuzzed configs (each alone, in a scratch directory):")
        counts["dry-run mismatch"] = dry_runs(kept, args.dry_runs)
    return 1 if counts["crash"] or counts["dry-run mismatch"] else 0


if __name__ == "__main__":
    sys.exit(main())
