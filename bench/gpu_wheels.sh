#!/usr/bin/env bash
# Fill .whl/ (git-ignored) with what bench/gpu.sh installs on a lent GPU machine, which has its
# own CUDA torch but no internet: pure-Python wheels plus pyarrow for the device's Python 3.12.
# Run here (package registries reachable), then pass carry: [".whl"] to the device call (the
# whole folder must stay under the 64 MiB the device tool carries).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
# the project's virtualenv where this checkout has one; else PIP, or this python's pip (a
# worktree or a fresh clone has no .venv of its own: ".venv/bin/pip" was not found there)
if [[ -n ${PIP:-} ]]; then
  pip=$PIP
elif [[ -x .venv/bin/pip ]]; then
  pip=.venv/bin/pip
else
  pip="python3 -m pip"
fi
$pip download -q --no-deps -d .whl trl==1.16.0 datasets==5.2.0 dill==0.4.1 fsspec==2026.9.0 \
  torch-optimi==0.3.3 liger-kernel==0.8.5
$pip download -q --no-deps -d .whl --python-version 3.12 --only-binary=:all: \
  --platform manylinux_2_28_x86_64 multiprocess==0.70.19 pyarrow==24.0.0
du -sh .whl
# the device tool carries at most 64 MiB (with the rest of the tree): say so here, not there
size=$(du -sm .whl | cut -f1)
if ((size > 60)); then
  echo "gpu_wheels.sh: .whl/ is ${size} MiB, over what the device tool carries beside the tree" >&2
  exit 1
fi
