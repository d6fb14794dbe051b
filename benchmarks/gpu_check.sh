#!/usr/bin/env bash
# Every GPU figure in one command on one H100/H200, inside one 10-minute call with margin.
#
#   OUT=/some/dir bash benchmarks/gpu_check.sh        # (the device tool sets $OUT)
#
# Stages, most valuable first, each under `timeout` (limits add up to 535 s; with the 5 s kill
# grace of each, 565 s at worst, inside the 600 s command):
#   env          20 s  GPU, driver, torch/triton/transformers versions
#   tests       155 s  the GPU test subset (kernels compiled for the GPU, generation, CUDA
#                      graphs, sampler), without -x, over 6 pytest-xdist workers when the
#                      image has it (Triton compiles are most of its time); JUnit XML
#   training    125 s  SFT at 0.5B and 1.5B shapes against a plain transformers loop
#   generation  145 s  the nano-vllm workload against transformers, batch-1 decode roofline
#   kernels      80 s  kernels at the engine's shapes against torch / SDPA / copy bandwidth
#   summary      10 s  each figure beside its goal, printed last
# The whole log is teed into $OUT/gpu_check.log as it goes, and every benchmark writes its JSON
# into $OUT after each case, so a stage (or the call) killed at its limit still returns what it
# measured. Nothing from benchmarks/results/ is copied: $OUT holds only this run's files (at
# most 8: the log, pytest.xml, training, generation and kernels JSON, summary.json).
# Usage: bash benchmarks/gpu_check.sh [STAGE ...]   (default: all, in the order above)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d /tmp/gpu_check.XXXXXX)}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
unset TRITON_INTERPRET
stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(env tests training generation kernels summary)
t0=$SECONDS

run_stage() {  # NAME LIMIT_S COMMAND...
  local name=$1 limit=$2
  shift 2
  echo "=== $(date -u +%T) +$((SECONDS - t0))s stage $name (limit ${limit}s): $*"
  timeout -k 5 "$limit" "$@"
  local rc=$?
  [ $rc -eq 124 ] && echo "!!! stage $name hit its ${limit}s limit"
  # the summary's table stays the last thing printed unless the summary itself failed
  if [ "$name" != summary ] || [ $rc -ne 0 ]; then
    echo "--- stage $name exit $rc at +$((SECONDS - t0))s"
  fi
}

main() {
  echo "gpu_check: OUT=$OUT stages=${stages[*]} commit $(git rev-parse --short HEAD 2>/dev/null)"
  for s in "${stages[@]}"; do
    case $s in
      env)        run_stage env 20 bash -c 'nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv,noheader;
                    python3 -c "import torch, triton, transformers; print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, \"triton\", triton.__version__, \"transformers\", transformers.__version__, torch.cuda.get_device_name())"' ;;
      tests)      workers=$(python3 -c "import xdist" 2>/dev/null && echo "-n 6")
                  run_stage tests 155 python3 -m pytest -q -rfE -p no:cacheprovider --durations=8 $workers \
                    --continue-on-collection-errors --junitxml="$OUT/pytest.xml" \
                    tests/test_kernel_*.py tests/test_model_triton_ops.py tests/test_sampler.py \
                    tests/test_training_outputs.py::test_train_step_makes_no_host_sync_on_cuda \
                    tests/test_generation_*.py --ignore=tests/test_generation_dp.py ;;
      training)   run_stage training 125 python3 benchmarks/training.py --out "$OUT" --models 0.5b,1.5b ;;
      generation) run_stage generation 145 python3 benchmarks/generation.py --out "$OUT" --quick ;;
      kernels)    run_stage kernels 80 python3 benchmarks/kernels.py --out "$OUT" --budget-s 60 ;;
      summary)    [ "$(find "$OUT" -type f | wc -l)" -ge 8 ] && echo "!!! $OUT holds 8+ files: only 8 come back"
                  run_stage summary 10 python3 benchmarks/gpu_summary.py "$OUT" --json "$OUT/summary.json" ;;
      *)          echo "unknown stage $s (env tests training generation kernels summary)"; return 2 ;;
    esac
  done
  return 0
}

main 2>&1 | tee -a "$OUT/gpu_check.log"
