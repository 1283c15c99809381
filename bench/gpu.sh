#!/usr/bin/env bash
# One command for a lent H100/H200 (about 9 minutes), its parts in this order, by value:
#   smoke      bench/gpu_smoke.py: varlen kernel vs exact math, varlen and FlexAttention models vs
#              the plain layout, device syncs inside a micro-batch, bf16 mixed precision moves
#              weights like float32 at lr 1e-6, tiny models train on CUDA, TR-DPO / MoE / QLoRA,
#              Liger kernels vs transformers (~1 min; SMOKE=0 skips);
#   offload    bench/gpu_smoke.py offload: activation_offloading's peak memory and step time on a
#              0.5B bf16 model, with and without (~1 min; OFFLOAD_CHECK=0 skips);
#   compile    bench/gpu_smoke.py compile: torch_compile on four architectures and LoRA vs eager
#              (measured in runs 4-5: off unless COMPILE_CHECK=1);
#   fsdp_memory bench/fsdp_memory.py --device cuda: peak host memory of a meta-loaded FSDP2 0.5B
#              run (measured in run 5: off unless FSDP_MEMORY=1);
#   bench      bench/vs_trl.py --plan gpu: directpo vs TRL 1.16 on Qwen2.5-0.5B- and 1.5B-shaped
#              random models, long-prompt (3:1) and short-prompt ~1.3-1.6k-token sequences, mixed
#              precision on both sides; TRL at its defaults and tuned; the first model's ablations
#              (per-token statistics' cost, flex_attention, Liger on both sides, ...) after its
#              main rows;
#   precision  bench/gpu_smoke.py precision (last; PRECISION_CHECK=0 skips): tf32,
#              full_determinism, the cost of eval_dtype auto's float32 evaluation and
#              eval_generate's float32 KL (~2 min).
#   bash bench/gpu.sh [vs_trl.py options]     # e.g. --models qwen2.5-0.5b-random --runs ...
# The whole script keeps within TOTAL seconds (default 540, under the device tool's 600 s per
# call), counted from its start (installing the wheels included): each part's timeout is cut to
# what is left (a part left under a third of its limit is skipped), the benchmark's budget
# (BUDGET, default 300, cut) and timeout leave the precision check its 150 s. The benchmark's
# options are checked before anything runs (a typo exits 2 at once, not after the smoke). Ends
# with one line per part (ok / FAILED / timed out / skipped) and exits 1 when a part failed or
# timed out.
#   DRY_RUN=1 bash bench/gpu.sh [...]   # no GPU: each part prints its limit and command and
#     takes DRY_SECONDS (default: its whole limit, the worst case) on a virtual clock; DRY_FAIL=
#     NAME / DRY_TIMEOUT=NAME make that part fail / time out (tests/test_bench.py).
# Results go to $OUT (the device tool's folder) or /tmp/directpo-gpu: NAME.txt per part,
# versions.txt, bench.jsonl. Missing packages (trl, datasets, liger-kernel, ...) travel as wheels
# in .whl/, filled by bench/gpu_wheels.sh (carry: [".whl"]).
set -uo pipefail
cd "$(dirname "$0")/.."
deadline=${TOTAL:-540}  # SECONDS counts from the script's start: setup is inside TOTAL
dry=${DRY_RUN:-0}
OUT=${OUT:-/tmp/directpo-gpu}
mkdir -p "$OUT"
# the wheels of .whl/ go to /tmp/site, after src/: they never shadow directpo
export PYTHONPATH=$PWD/src:$PWD/tests:/tmp/site:${PYTHONPATH:-}
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
for arg in "$@"; do  # these two are gpu.sh's: a given one would be overridden, or break TOTAL
  case $arg in --budget* | --out*)
    echo "gpu.sh: not $arg: set BUDGET=N (cut to what TOTAL leaves); results go to \$OUT" >&2
    exit 2
    ;;
  esac
done
bench_args=(--plan gpu --models qwen2.5-0.5b-random,qwen2.5-1.5b-random --steps 8 --warmup 3
  --batch 4 "$@")
# a typo in the benchmark's options would otherwise stop it after the smoke had used its minutes
python3 bench/vs_trl.py "${bench_args[@]}" --check || exit 2
if compgen -G ".whl/*.whl" >/dev/null; then
  wheels=$(ls .whl/*.whl | grep -v pyarrow)
  # pyarrow only where the machine's is older than datasets needs
  if ! python3 -c "import sys, pyarrow; sys.exit(int(pyarrow.__version__.split('.')[0]) < 24)" 2>/dev/null; then
    wheels="$wheels $(ls .whl/pyarrow-*.whl 2>/dev/null)"
  fi
  if [[ $dry == 1 ]]; then
    echo "dry run: would install" $wheels
  elif ! python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site $wheels; then
    echo "gpu.sh: installing .whl/ failed (above); TRL's rows will fail" >&2
  fi
fi
if [[ $dry == 1 ]]; then
  echo "dry run, no GPU" | tee "$OUT/versions.txt"
else
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/versions.txt"
  python3 -c "import torch, transformers, trl, datasets, peft; print('torch', torch.__version__,
'transformers', transformers.__version__, 'trl', trl.__version__, 'datasets',
datasets.__version__, 'peft', peft.__version__)" 2>&1 | tee -a "$OUT/versions.txt"
fi
date -u | tee -a "$OUT/versions.txt"
slept=0  # a dry run's virtual seconds
now() { echo $((SECONDS + slept)); }
# seconds a part may take: its own limit, or what is left before the deadline minus $2 (kept for
# the parts after it), whichever is less; 0 when nothing is left
allowed() {
  local left=$((deadline - $(now) - ${2:-0}))
  ((left < $1)) && echo $((left > 0 ? left : 0)) || echo "$1"
}
noise="it/s\]|examples/s\]|Loading weights|Writing model"
summary=() failed=0
part() {  # part LIMIT KEEP NAME COMMAND...: runs COMMAND under its share of the time, to $OUT/NAME.txt
  local own=$1 limit keep=$2 name=$3 rc took; limit=$(allowed "$1" "$keep"); shift 3
  # under a third of its own limit a part would be cut before its first results (COMPILE_CHECK=1
  # at the default TOTAL got 30 s of its 150): skipped, its seconds left to the parts after it
  if ((limit < 20 || limit * 3 < own)); then
    echo "skipped $name: time budget (${limit} s of its $own; raise TOTAL or turn a part off)" \
      | tee "$OUT/$name.txt"
    summary+=("$name: skipped (time budget)")
    return
  fi
  if [[ $dry == 1 ]]; then
    took=${DRY_SECONDS:-$limit}
    ((took > limit)) && took=$limit
    echo "dry run: $name, limit ${limit} s, takes ${took} s: $*" | tee "$OUT/$name.txt"
    slept=$((slept + took))
    rc=0
    [[ ",${DRY_FAIL:-}," == *",$name,"* ]] && rc=1
    [[ ",${DRY_TIMEOUT:-}," == *",$name,"* ]] && rc=124
  else
    # directpo's train() takes SIGTERM as "finish the step, checkpoint, return": a part calling
    # it went on to its next check or run past its limit; KILL follows 10 s after the TERM
    timeout --kill-after=10 "$((limit - 10))" "$@" 2>&1 | grep --line-buffered -vE "$noise" \
      | tee "$OUT/$name.txt"
    rc=${PIPESTATUS[0]}
    ((rc == 137)) && rc=124  # killed after the TERM: a timeout too
  fi
  if ((rc == 124)); then
    summary+=("$name: timed out after $limit s")
    failed=1
  elif ((rc != 0)); then
    summary+=("$name: FAILED (exit $rc)")
    failed=1
  else
    summary+=("$name: ok")
  fi
}
if [[ "${SMOKE:-1}" == 1 ]]; then  # SMOKE=0 skips the correctness checks (a rerun)
  part 120 360 smoke python3 bench/gpu_smoke.py
fi
if [[ "${OFFLOAD_CHECK:-1}" == 1 ]]; then  # activation_offloading: peak memory and step time, 0.5B
  part 90 300 offload python3 bench/gpu_smoke.py offload
fi
if [[ "${COMPILE_CHECK:-0}" == 1 ]]; then  # torch_compile across architectures (runs 4-5: all OK)
  part 150 300 compile python3 bench/gpu_smoke.py compile
fi
if [[ "${FSDP_MEMORY:-0}" == 1 ]]; then  # host memory of a meta-loaded FSDP2 run (run 5)
  part 240 300 fsdp_memory python3 bench/fsdp_memory.py --device cuda --worlds 1 \
    --out "$OUT/fsdp_memory.jsonl"
fi
# the precision check after the benchmark keeps its 150 s. The benchmark stops starting runs once
# its budget is spent, so it is given 60 s less than it may run: its timeout (budget + 60) ends a
# run still going then, the rows before it kept in bench.jsonl
precision_keep=$([[ "${PRECISION_CHECK:-1}" == 1 ]] && echo 150 || echo 0)
bench_budget=$(allowed "${BUDGET:-300}" $((precision_keep + 60)))
noise="$noise|Warning: |warnings\.warn\(|^\{.loss|^step |^ *$"  # (a result row whose notes say "warning" kept)
# (a budget under 20 s would build the models and start no run: skipped)
part $((bench_budget < 20 ? 0 : bench_budget + 60)) "$precision_keep" bench python3 bench/vs_trl.py "${bench_args[@]}" \
  --budget "$bench_budget" --out "$OUT/bench.jsonl"
noise="it/s\]|examples/s\]|Loading weights|Writing model"
if [[ "${PRECISION_CHECK:-1}" == 1 ]]; then  # after the benchmark: a timeout here loses nothing else
  part 180 0 precision python3 bench/gpu_smoke.py precision
fi
printf 'gpu.sh: %s\n' "${summary[@]}"
echo "gpu.sh: $(now) s of $deadline"
exit "$failed"
