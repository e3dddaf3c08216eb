#!/usr/bin/env bash
# One command for a GPU machine: the GPU tests, then the GPU benchmarks.
#   bash scripts/gpu_check.sh [tests|bench|all]    (default all; each stage fits one 10-minute slot)
# Results go to $OUT (the device tool's output folder) or benchmarks/results/gpu-<device>/.
# Needs only torch and triton (and pytest for the tests) installed; rnnlab is used from this checkout.
set -uo pipefail  # keep going after a failing step: the benchmark still runs and reports
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
stage=${1:-all}
name=$("$PY" -c "import torch; print(torch.cuda.get_device_name().replace(' ', '-'))")
out=${OUT:-benchmarks/results/gpu-$name}
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/nvidia-smi.txt" || true
if [[ $stage == tests || $stage == all ]]; then
    # the gpu-marked tests, then the fused-kernel tests, which on a GPU run the compiled kernels
    "$PY" -m pytest -m gpu -q -p no:cacheprovider tests 2>&1 | tee "$out/gpu-tests.log"
    "$PY" -m pytest -q -p no:cacheprovider tests/test_triton_kernels.py 2>&1 | tee -a "$out/gpu-tests.log"
    # the tiled regime's multi-program variant (grid barrier); a deadlock shows as the timeout
    RNNLAB_GRID_SYNC=1 timeout 180 "$PY" -m pytest -q -p no:cacheprovider -k "H50 or tiled or half" \
        tests/test_triton_kernels.py 2>&1 | tee "$out/grid-sync-tests.log"
fi
if [[ $stage == bench || $stage == all ]]; then
    "$PY" benchmarks/run.py --preset "${PRESET:-gpu}" --out "$out" 2>&1 | tee "$out/benchmark.log"
    "$PY" benchmarks/memory.py --preset "${PRESET:-gpu}" --out "$out" 2>&1 | tee "$out/memory.log"
    RNNLAB_GRID_SYNC=1 timeout 300 "$PY" benchmarks/run.py --preset "${PRESET:-gpu}" --backends triton \
        --out "$out/grid-sync" 2>&1 | tee "$out/grid-sync-benchmark.log"
fi
