"""The same measurement on an earlier commit and on the work tree, one after the other, in one run.

A claim "no slower than before" needs both sides measured on the same machine on the same day;
this runs them back to back. The earlier commit is exported with ``git archive`` into a
temporary folder and imported from there (``PYTHONPATH``), so its own code runs, not a
reconstruction of it.

    # a benchmark script (its arguments after --), e.g. single-run throughput at K = 1:
    python bench/before_after.py --rev c32af5b -- bench/cohort_throughput.py --ks 1 --threads 1
    # the default demo's wall time (`snakemake --cores N` in a fresh copy of each tree):
    python bench/before_after.py --rev c32af5b --demo --cores 2
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROGRESS = re.compile(r"^[\w ()]+: step \d+/\d+ \(")  # training's progress lines: left out


def export(rev: str | None, into: Path) -> Path:
    """The tree of ``rev`` (None: the work tree's tracked and new files) in ``into``."""
    if rev is None:
        files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO,
                               capture_output=True, text=True, check=True).stdout.split()
        archive = into / "tree.tar"
        with tarfile.open(archive, "w") as tar:
            for f in files:
                if (REPO / f).is_file():
                    tar.add(REPO / f, arcname=f)
    else:
        archive = into / "tree.tar"
        subprocess.run(["git", "archive", "-o", str(archive), rev], cwd=REPO, check=True)
    tree = into / "tree"
    tree.mkdir()
    with tarfile.open(archive) as tar:
        tar.extractall(tree, filter="data")
    return tree


def run(tree: Path, command: list[str]) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    began = time.perf_counter()
    done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - began
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed in {tree}:\n{done.stderr[-3000:]}")
    return wall, done.stdout


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rev", required=True, help="the earlier commit")
    p.add_argument("--demo", action="store_true", help="time the default demo's snakemake run")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("script", nargs="*", help="a benchmark script and its arguments")
    args = p.parse_args()
    if args.demo:
        venv_bin = Path(sys.executable).parent
        command = [str(venv_bin / "snakemake"), "--cores", str(args.cores), "--quiet"]
    elif args.script:
        command = [sys.executable, *args.script]
    else:
        p.error("give a benchmark script or --demo")
    sides = {}
    for label, rev in ((f"before ({args.rev})", args.rev), ("after (work tree)", None)):
        with tempfile.TemporaryDirectory() as tmp:
            tree = export(rev, Path(tmp))
            print(f"--- {label}: {' '.join(command)}", flush=True)
            wall, out = run(tree, command)
            sides[label] = wall
            print("\n".join(line for line in out.rstrip().splitlines()
                            if not PROGRESS.match(line)))
            print(f"wall {wall:.1f} s", flush=True)
    before, after = sides.values()
    print(f"\nwall time: before {before:.1f} s, after {after:.1f} s, after/before "
          f"{after / before:.3f}")


if __name__ == "__main__":
    main()
