#!/usr/bin/env bash
# The prepared GPU check: one call, under 10 minutes on one H100/H200, every part under its own
# timeout (a part that fails or times out says so, and the others still run). It prints
#   0. the device and its memory;
#   1. the tests with CUDA variants (they skip on a machine without CUDA): fused optimisers on
#      CUDA against torch.optim, stacked against solo through cuDNN, a killed CUDA cohort resumed
#      bit-identical with determinism on, the CUDA augmentation, the slot allocator;
#   2. `lmcpipe estimate` of the smoke-scale ResNet-20 DAG of paper A (calibrated on this GPU),
#      then that DAG run for real on CUDA with two GPU slots on one GPU (jobs_per_gpu 2,
#      --resources gpu=2): projected against measured wall time, and the jobs' records checked:
#      two jobs ran at the same time on two slots, and no slot was held by two jobs at once;
#   3. the cohort benchmark: per-member img/s for K = 1, 4, 16, 32, LeNet and ResNet-20, fp32
#      and bf16;
#   4. one member's memory: lmcpipe.memory's estimate against the measured CUDA peak, and the
#      stacks and micro-batches the rule picks;
#   5. measured seconds per member-step on this GPU for ResNet-20 (scripts/cost_table.py),
#      against the shipped table's unmeasured roofline figure;
#   6. the step profile of a ResNet-20 cohort of K = 16 (bench/step_profile.py, this tree's
#      code): kernel ops, CUDA launch calls and kernels per step, bytes per member-step, and
#      one compiled (reduce-overhead: CUDA graphs) step timed against the eager one.
# Worst case, every part at its timeout: 30 + 140 + 180 + 60 + 40 + 30 + 120 = 600 s.
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
export LMCPIPE_SLOT_DIR="$out/slots"   # this check's own slot locks
status=0
part() { echo; echo "== $*"; }

part "0. device"
timeout 30 "$py" - <<'EOF' || exit 1
import torch
assert torch.cuda.is_available(), "no CUDA device"
p = torch.cuda.get_device_properties(0)
print("torch", torch.__version__, "CUDA", torch.version.cuda, "on", p.name,
      f"{p.total_memory / 2**30:.0f} GiB", f"({torch.cuda.device_count()} visible)")
EOF

part "1. tests with CUDA variants"
if "$py" -c "import pytest" 2>/dev/null; then
  timeout 140 "$py" -m pytest -q -rs -k cuda tests/test_augment.py tests/test_streams.py \
    tests/test_cohort.py \
    tests/test_optim.py tests/test_slots.py 2>&1 | tee "$out/tests.log" | tail -8
  [ "${PIPESTATUS[0]}" -eq 0 ] || { echo "part 1 FAILED (rc ${PIPESTATUS[0]})"; status=1; }
else
  echo "skipped: pytest does not import"
fi

part "2. estimate, then the smoke-scale ResNet-20 DAG on CUDA with 2 slots on one GPU"
if "$py" -c "import snakemake, jsonschema" 2>/dev/null; then
  wd=$(mktemp -d)
  timeout 180 "$py" - "$wd" "$py" <<'EOF' || { echo "part 2 FAILED"; status=1; }
import itertools, json, re, subprocess, sys, time
from datetime import datetime
from pathlib import Path
import numpy as np, yaml
from lmcpipe.data.testing import write_cifar
wd, py = Path(sys.argv[1]), sys.argv[2]
rng = np.random.default_rng(0)
write_cifar(wd / "data/cifar10/cifar-10-batches-py", rng.integers(0, 256, (600, 3, 32, 32),
            dtype=np.uint8), rng.integers(0, 10, 600), 10, (500, 100))
exp = {"model": "resnet20", "dataset": "cifar10",
       "resources": {"require_gpu": True, "gpu": True, "jobs_per_gpu": 2},
       "train": {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4,
                 "batch_size": 128, "steps": 200, "milestones": [150], "eval_steps": [0, 200],
                 "checkpoint_every": 50},
       "prune": {"fraction": 0.2, "levels": 2, "rewind_steps": [0, 20]},
       "instability": {"fork_steps": [0, 20], "alphas": 5, "control": True},
       "replicates": {"inits": [0], "orders": [0, 1]}}
(wd / "config.yaml").write_text(yaml.safe_dump({"data_root": str(wd / "data"), "all": ["gpu"],
                                                "experiments": {"gpu": exp}}))
where = ["-s", str(Path.cwd() / "Snakefile"), "-d", str(wd), "--configfile",
         str(wd / "config.yaml")]
t0 = time.time()
est = subprocess.run([py, "-m", "lmcpipe", "estimate", *where, "--cores", "4"],
                     capture_output=True, text=True, timeout=90)
print(est.stdout[-2500:] or est.stderr[-1500:])
print(f"(estimate took {time.time() - t0:.0f} s)")
projected = re.search(r"wall time \S+", est.stdout)
t0 = time.time()
r = subprocess.run([py, "-m", "snakemake", *where[:4], "--cores", "4", "--resources", "gpu=2",
                    "--configfile", str(wd / "config.yaml")], capture_output=True, text=True)
measured = time.time() - t0
print(f"smoke DAG: rc {r.returncode}, measured {measured:.0f} s wall; projected line: "
      + (projected.group(0) if projected else "not found in the estimate's output"))
if r.returncode:
    print(r.stderr[-3000:])
    raise SystemExit(1)
jobs = []
for rec in (wd / "results").rglob("*.run.json"):
    d = json.loads(rec.read_text())
    if d.get("slot"):
        end = datetime.fromisoformat(d["finished"]).timestamp()
        jobs.append((d["slot"]["index"], d["slot"].get("device"), d["slot"]["claimed"], end))
jobs = sorted(set(jobs))
shared = [(a, b) for a, b in itertools.combinations(jobs, 2)
          if a[0] == b[0] and a[2] < b[3] - 1 and b[2] < a[3] - 1]
together = [(a, b) for a, b in itertools.combinations(jobs, 2)
            if a[0] != b[0] and a[2] < b[3] - 1 and b[2] < a[3] - 1]
print(f"slots: {len(jobs)} job slots recorded, slots used {sorted({j[0] for j in jobs})}, "
      f"{len(together)} pairs of jobs ran at once on two slots, {len(shared)} pairs shared one")
if shared or not together:
    raise SystemExit(1)
for log in sorted((wd / "logs/gpu").rglob("*train.log"))[:2]:
    print(log.relative_to(wd), "|", log.read_text().splitlines()[0])
EOF
else
  echo "skipped: snakemake/jsonschema do not import (carry their wheels, see the device README)"
fi

part "3. cohort benchmark"
timeout 60 "$py" bench/cohort_throughput.py --device cuda --ks 1 4 16 32 \
  --precisions fp32 bf16 2>&1 | tee "$out/cohort_throughput.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || { echo "part 3 FAILED or timed out"; status=1; }
part "4. one member's memory on CUDA: estimate against measured peak"
timeout 40 "$py" bench/member_memory.py --device cuda 2>&1 | tee "$out/member_memory.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || { echo "part 4 FAILED or timed out"; status=1; }

part "5. seconds per member-step measured here (ResNet-20), against the shipped table"
timeout 30 "$py" scripts/cost_table.py --keep-cpu --measure-gpu --only resnet20 \
  --out "$out/costs.yaml" 2>&1 | tail -12
[ "${PIPESTATUS[0]}" -eq 0 ] || { echo "part 5 FAILED or timed out"; status=1; }
grep -A30 "^  resnet20:" src/lmcpipe/costs.yaml | head -30 > "$out/costs_shipped.txt"
echo "measured table: $out/costs.yaml; shipped rows: $out/costs_shipped.txt"

part "6. step profile: ResNet-20, K = 16, eager against compiled (reduce-overhead)"
timeout 120 "$py" bench/step_profile.py --device cuda --sides after --nets resnet20 --ks 16 \
  --no-single --ops-batch 0 --compile reduce-overhead --time --json "$out/step_profile.json" \
  2>&1 | grep -v "^USDT" | tee "$out/step_profile.log" | tail -20
[ "${PIPESTATUS[0]}" -eq 0 ] || { echo "part 6 FAILED or timed out"; status=1; }
echo "logs in $out"
exit $status
