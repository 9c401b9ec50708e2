#!/usr/bin/env bash
# The prepared GPU check: one call, under 5 minutes on one GPU. It prints
#   1. the tests that have CUDA variants (they skip on a machine without CUDA);
#   2. the smoke-scale ResNet-20 DAG of paper A on CUDA (a real Snakemake run, stack 16);
#   3. the cohort benchmark: per-member img/s for K = 1 ... 32, LeNet and ResNet-20, fp32 and bf16.
#
#   bash bench/gpu_check.sh            # from the repository root; OUT=dir keeps the logs
#
# It runs on the Python that holds torch (PYTHON, default .venv/bin/python, else python3) with
# lmcpipe taken from src/. Snakemake, pytest and jsonschema must import there; a part whose tools
# are missing says so and the others still run. Nothing is downloaded.
set -uo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-}"
[ -n "$py" ] || { [ -x .venv/bin/python ] && py=.venv/bin/python || py=python3; }
out="${OUT:-$(mktemp -d)}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
status=0

"$py" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; \
print('torch', torch.__version__, 'on', torch.cuda.get_device_name(0))" || exit 1

echo "== 1. tests with CUDA variants"
if "$py" -c "import pytest" 2>/dev/null; then
  timeout 120 "$py" -m pytest -q -rs -k cuda tests/test_augment.py tests/test_cohort.py 2>&1 \
    | tee "$out/tests.log" | tail -5 || status=1
else
  echo "skipped: pytest does not import"
fi

echo "== 2. smoke-scale ResNet-20 DAG on CUDA"
if "$py" -c "import snakemake, jsonschema" 2>/dev/null; then
  wd=$(mktemp -d)
  "$py" - "$wd" <<'EOF' || status=1
import sys, time, subprocess, yaml, numpy as np
from pathlib import Path
from lmcpipe.data.testing import write_cifar
wd = Path(sys.argv[1])
rng = np.random.default_rng(0)
write_cifar(wd / "data/cifar10/cifar-10-batches-py", rng.integers(0, 256, (600, 3, 32, 32),
            dtype=np.uint8), rng.integers(0, 10, 600), 10, (500, 100))
exp = {"model": "resnet20", "dataset": "cifar10",
       "resources": {"require_gpu": True, "stack": 16},
       "train": {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4,
                 "batch_size": 128, "steps": 200, "milestones": [150], "eval_steps": [0, 200]},
       "prune": {"fraction": 0.2, "levels": 2, "rewind_steps": [0, 20]},
       "instability": {"fork_steps": [0, 20], "alphas": 5, "control": True},
       "replicates": {"inits": [0], "orders": [0, 1]}}
(wd / "config.yaml").write_text(yaml.safe_dump({"data_root": str(wd / "data"), "all": ["gpu"],
                                                "experiments": {"gpu": exp}}))
t0 = time.time()
r = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(Path.cwd() / "Snakefile"),
                    "-d", str(wd), "--cores", "4", "--configfile", str(wd / "config.yaml")],
                   capture_output=True, text=True)
print(f"smoke DAG: rc {r.returncode}, {time.time() - t0:.0f} s wall")
if r.returncode:
    print(r.stderr[-3000:])
    raise SystemExit(1)
for log in sorted((wd / "logs/gpu").rglob("level_train.log"))[:2]:
    print(log.relative_to(wd), "|", log.read_text().splitlines()[0])
EOF
else
  echo "skipped: snakemake/jsonschema do not import (carry their wheels, see the device README)"
fi

echo "== 3. cohort benchmark"
timeout 200 "$py" bench/cohort_throughput.py --device cuda --ks 1 2 4 8 16 32 \
  --precisions fp32 bf16 2>&1 | tee "$out/cohort_throughput.log" || status=1
echo "logs in $out"
exit $status
