"""``lmcpipe estimate`` against a real run: projected and measured wall time, side by side.

Estimates the targets (Snakemake's dry run, calibration on this machine), then runs
``snakemake --cores N`` on them in a scratch working directory and prints both figures and
their ratio. The scratch directory starts empty, so the run builds everything the estimate
counted; the config's relative data root is read from where the command runs.

    python bench/estimate_vs_run.py                                  # the default demo, 2 cores
    python bench/estimate_vs_run.py --configfile my.yaml --cores 8 results/figures/imp_x.pdf
    python bench/estimate_vs_run.py --smoke                          # a 1-minute demo-shaped DAG

``--smoke`` writes a demo-shaped config (the demo's network at a tenth of its steps, one IMP
level) and random Fashion-MNIST-shaped data into the scratch directory: nothing needs to be on
the machine, and on a GPU machine its jobs run on the GPU (a check of the GPU calibration).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from lmcpipe import dryrun, estimate_table
from lmcpipe.data import IDX_FILES
from lmcpipe.data.testing import write_idx
from lmcpipe.estimate import estimate

REPO = Path(__file__).resolve().parents[1]
SMOKE = {
    "all": ["smoke"],
    "experiments": {"smoke": {
        "model": "lenet_300_100", "dataset": "fashion_mnist",
        "train": {"optimizer": "adam", "lr": 7e-3, "batch_size": 60, "steps": 100,
                  "eval_steps": [0], "eval_train_examples": 2000, "checkpoint_every": 50},
        "prune": {"fraction": 0.8, "levels": 1, "rewind_steps": [0, 10], "baseline_pairs": False},
        "instability": {"fork_steps": [0, 10], "alphas": 5},
        "replicates": {"inits": [0], "orders": [0, 1]},
    }},
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("targets", nargs="*")
    p.add_argument("--configfile", default=str(REPO / "config.yaml"))
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--smoke", action="store_true", help="a small demo-shaped config instead")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = p.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="lmcpipe-estimate-"))
    config = Path(args.configfile).resolve()
    if args.smoke:
        config = scratch / "smoke.yaml"
        config.write_text(yaml.safe_dump({"data_root": str(scratch / "data"), **SMOKE}))
        rng = np.random.default_rng(0)
        (scratch / "data" / "fashion_mnist").mkdir(parents=True)
        for key, n in (("train_x", 6000), ("train_y", 6000), ("test_x", 1000), ("test_y", 1000)):
            shape = (n, 28, 28) if key.endswith("x") else (n,)
            high = 256 if key.endswith("x") else 10
            write_idx(rng.integers(0, high, shape, dtype=np.uint8),
                      scratch / "data" / "fashion_mnist" / IDX_FILES[key])
    else:  # the data root as seen from here, so the scratch run reads the same data
        loaded = yaml.safe_load(config.read_text())
        loaded["data_root"] = str(Path(loaded.get("data_root", "data")).resolve())
        config = scratch / "config.yaml"
        config.write_text(yaml.safe_dump(loaded))
    options = dryrun.SnakemakeOptions(tuple(args.targets), str(REPO / "Snakefile"), str(scratch),
                                      (str(config),), cores=args.cores)
    result = estimate(options, args.cores, log=lambda line: print(line, file=sys.stderr))
    print(estimate_table.report(result, tuple(args.targets)), flush=True)
    load_before = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    cmd = [sys.executable, "-m", "snakemake", *args.targets, "--cores", str(args.cores), "-s",
           str(REPO / "Snakefile"), "-d", str(scratch), "--configfile", str(config)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
    measured = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    if done.returncode != 0:
        sys.exit(f"the run failed:\n{done.stderr[-3000:]}")
    projected = result.wall_here_s
    print(f"\nprojected {projected:.1f}s, measured {measured:.1f}s "
          f"(projected / measured = {projected / measured:.2f}) on {args.cores} cores; "
          f"the run's processes used {cpu:.1f} CPU-s; load average {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after (other load lengthens the run, not the projection); "
          f"scratch {scratch}{'' if args.keep else ' (removed)'}")
    if not args.keep:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
