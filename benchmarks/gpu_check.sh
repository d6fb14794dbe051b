#!/usr/bin/env bash
# The GPU checks in one prepared script, sized for a short lease on one H100 (about 9 minutes):
#   1. the kernel and model tests compiled for the GPU (no interpreter there), plus the
#      generation tests, whose CUDA paths (graphs, the Triton sampler) only a GPU exercises;
#   2. each benchmark's quick pass, results as JSON in benchmarks/results/ (and $OUT if set).
# Usage: bash benchmarks/gpu_check.sh [STAGE ...]   (stages: tests kernels generation training)
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(tests kernels generation training)
log() { echo "=== $(date +%T) $*"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
for s in "${stages[@]}"; do
  case $s in
    tests)      log tests; timeout 150 python -m pytest -q -x tests/test_kernel_*.py tests/test_model_triton_ops.py \
                  tests/test_generation_vs_hf.py tests/test_generation_cuda_graphs.py tests/test_sampler.py ;;
    kernels)    log kernels; timeout 200 python benchmarks/kernels.py --quick --budget-s 180 ;;
    generation) log generation; timeout 150 python benchmarks/generation.py --quick ;;
    training)   log training; timeout 120 python benchmarks/training.py --quick ;;
    *)          echo "unknown stage $s"; exit 2 ;;
  esac
  echo "--- $s exit $?"
done
if [ -n "${OUT:-}" ]; then cp benchmarks/results/*.json "$OUT"/ 2>/dev/null || true; fi
