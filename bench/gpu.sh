#!/usr/bin/env bash
# One command for a lent H100/H200 (about 8 minutes), everything the GPU issues ask measured:
#   1. bench/gpu_smoke.py: varlen kernel vs exact math, varlen and FlexAttention models vs the
#      plain layout, device syncs inside a micro-batch, bf16 mixed precision moves weights like
#      float32 at lr 1e-6, tiny models train on CUDA, Liger kernels vs transformers (~1 min);
#   2. bench/vs_trl.py --plan gpu: directpo vs TRL 1.16 on Qwen2.5-0.5B- and 1.5B-shaped random
#      models, long-prompt (3:1) and short-prompt ~1.3-1.6k-token sequences, mixed precision on
#      both sides; TRL at its defaults and tuned; ablations on the first model (flex_attention,
#      use_liger_kernel on both sides, ...);
#   3. bench/fsdp_memory.py --device cuda: peak host memory of a meta-loaded FSDP2 0.5B run;
#   4. bench/gpu_smoke.py compile: torch_compile on four architectures and LoRA vs eager (COMPILE_CHECK=0 skips).
#      bench/gpu_smoke.py offload: activation_offloading's peak memory and step time on a 0.5B
#      bf16 model, with and without (~1 min; OFFLOAD_CHECK=0 skips).
#   5. bench/gpu_smoke.py precision (last; PRECISION_CHECK=0 skips): tf32, full_determinism, the
#      cost of eval_dtype auto's float32 evaluation and eval_generate's float32 KL (~2 min).
#   bash bench/gpu.sh [vs_trl.py options]     # e.g. --models qwen2.5-0.5b-random --budget 200
# Results go to $OUT (the device tool's folder) or /tmp/directpo-gpu: smoke.txt, bench.jsonl,
# bench.txt. Missing packages (trl, datasets, liger-kernel, ...) travel as wheels in .whl/, filled
# by bench/gpu_wheels.sh (carry: [".whl"]).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/directpo-gpu}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
  wheels=$(ls .whl/*.whl | grep -v pyarrow)
  # pyarrow only where the machine's is older than datasets needs
  if ! python3 -c "import sys, pyarrow; sys.exit(int(pyarrow.__version__.split('.')[0]) < 24)" 2>/dev/null; then
    wheels="$wheels $(ls .whl/pyarrow-*.whl 2>/dev/null)"
  fi
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site $wheels
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD/src:$PWD/tests:${PYTHONPATH:-}
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/versions.txt"
python3 -c "import torch, transformers, trl, datasets, peft; print('torch', torch.__version__,
'transformers', transformers.__version__, 'trl', trl.__version__, 'datasets',
datasets.__version__, 'peft', peft.__version__)" 2>&1 | tee -a "$OUT/versions.txt"
date -u | tee -a "$OUT/versions.txt"
if [[ "${SMOKE:-1}" == 1 ]]; then  # SMOKE=0 skips the correctness checks (a rerun)
  timeout 120 python3 bench/gpu_smoke.py 2>&1 | grep -vE "it/s\]|Loading weights|Writing model" \
    | tee "$OUT/smoke.txt"
fi
if [[ "${COMPILE_CHECK:-1}" == 1 ]]; then  # torch_compile across architectures (evidence for a default)
  timeout 150 python3 bench/gpu_smoke.py compile 2>&1 | grep -vE "it/s\]|Loading weights|Writing model" \
    | tee "$OUT/compile.txt"
fi
if [[ "${OFFLOAD_CHECK:-1}" == 1 ]]; then  # activation_offloading: peak memory and step time, 0.5B
  timeout 90 python3 bench/gpu_smoke.py offload 2>&1 | grep -vE "it/s\]|Loading weights|Writing model" \
    | tee "$OUT/offload.txt"
fi
if [[ "${FSDP_MEMORY:-1}" == 1 ]]; then  # host memory of a meta-loaded FSDP2 run on the GPU
  timeout 240 python3 bench/fsdp_memory.py --device cuda --worlds 1 --out "$OUT/fsdp_memory.jsonl" \
    2>&1 | grep -vE "it/s\]|Loading weights|Writing model" | tee "$OUT/fsdp_memory.txt"
fi
python3 bench/vs_trl.py --plan gpu --models qwen2.5-0.5b-random,qwen2.5-1.5b-random \
  --steps 8 --warmup 3 --batch 4 --budget ${BUDGET:-300} --out "$OUT/bench.jsonl" "$@" 2>&1 \
  | grep -vE "it/s\]|examples/s\]|Loading weights|Writing model|warn|^\{.loss|^step |^ *$" | tee "$OUT/bench.txt"
if [[ "${PRECISION_CHECK:-1}" == 1 ]]; then  # after the benchmark: a timeout here loses nothing else
  timeout 180 python3 bench/gpu_smoke.py precision 2>&1 | grep -vE "it/s\]|Loading weights|Writing model" \
    | tee "$OUT/precision.txt"
fi
