#!/usr/bin/env bash
# Fill .whl/ (git-ignored) with what bench/gpu.sh installs on a lent GPU machine, which has its
# own CUDA torch but no internet: pure-Python wheels plus pyarrow for the device's Python 3.12.
# Run here (package registries reachable), then pass carry: [".whl"] to the device call (the
# whole folder must stay under the 64 MiB the device tool carries).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
pip=".venv/bin/pip"
$pip download -q --no-deps -d .whl trl==1.16.0 datasets==5.2.0 dill==0.4.1 fsspec==2026.9.0 \
  torch-optimi==0.3.3 liger-kernel==0.8.5
$pip download -q --no-deps -d .whl --python-version 3.12 --only-binary=:all: \
  --platform manylinux_2_28_x86_64 multiprocess==0.70.19 pyarrow==24.0.0
du -sh .whl
