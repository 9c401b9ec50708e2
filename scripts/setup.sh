#!/usr/bin/env bash
# Set up lmcpipe on a fresh machine: Debian's offline Fashion-MNIST and g++ (when apt is there), a
# virtual environment in .venv with a torch/torchvision pair that imports on this machine, and
# lmcpipe (editable) with its test tools. Idempotent: a second call only checks the environment.
#
# TORCH_SPEC overrides the torch/torchvision requirement, e.g. for a CUDA index of your own:
#   TORCH_SPEC="torch==2.14.1 torchvision==0.29.1" bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: the offline Fashion-MNIST, and a C++ compiler, which torch.compile's CPU
# backend (inductor) builds its kernels with (resources.compile and tests/test_compile.py)
packages=""
[ -d /usr/share/datasets/fashion-mnist ] || packages="dataset-fashion-mnist"
command -v g++ >/dev/null || packages="$packages g++"
if [ -n "$packages" ] && command -v apt-get >/dev/null; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  # shellcheck disable=SC2086  # one word per package
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $packages >/dev/null
fi

# torch and torchvision must be a matched pair or `import torchvision` fails (see
# ../shared/reference/engineering.md): these pairs are known to import on CPU and GPU machines.
case "$(uname -m)" in
  aarch64) default_torch="torch==2.9.1 torchvision==0.24.1" ;;
  *) default_torch="torch==2.14.1 torchvision==0.29.1" ;;
esac
TORCH_SPEC="${TORCH_SPEC:-$default_torch}"

python="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$python" -m venv .venv
if ! .venv/bin/python -c "import torch, torchvision, lmcpipe, snakemake, seaborn, pytest, xdist, \
snakemake_executor_plugin_slurm, pygments, playwright, hypothesis" 2>/dev/null
then
  # shellcheck disable=SC2086  # TORCH_SPEC is a list of requirements
  .venv/bin/pip install -q $TORCH_SPEC
  .venv/bin/pip install -q -e ".[test]"
fi
.venv/bin/python -c "import torch, torchvision; print(f'torch {torch.__version__}, torchvision \
{torchvision.__version__}, CUDA available: {torch.cuda.is_available()}')"
