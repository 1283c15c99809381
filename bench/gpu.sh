#!/usr/bin/env bash
# One command for a lent H100/H200 (<= 8 minutes): directpo vs TRL on a Qwen2-0.5B-shaped
# random model in bfloat16 at ~1k-token sequences, plus directpo's model-FLOPs utilisation.
#   bash bench/gpu.sh           # the comparison (directpo defaults vs TRL defaults)
#   bash bench/gpu.sh --fsdp    # the same with directpo under distributed: fsdp on 1 GPU
#                               # (float32 master weights, bf16 compute; TRL unchanged)
# Missing packages (datasets, trl, ...) travel as wheels in .whl/ (see docs/performance.md).
set -euo pipefail
cd "$(dirname "$0")/.."
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD/src:${PYTHONPATH:-}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
if [[ "${1:-}" == "--fsdp" ]]; then
  shift
  exec python3 bench/vs_trl.py --models qwen2-0.5b-random --steps 6 --batch 4 --scale 5 \
    --directpo_options '{"distributed": "fsdp"}' "$@"
fi
python3 bench/vs_trl.py --models qwen2-0.5b-random --steps 10 --batch 4 --scale 5 "$@"
