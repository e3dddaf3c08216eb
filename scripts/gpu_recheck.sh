#!/usr/bin/env bash
# A short GPU check (about 2 minutes on an H200) for the second run of a session, after gpu_check.sh: the forward
# latency (benchmarks/latency.py) at the dispatcher's choices and of the split held regime at H = 256, forced, with
# each exchange (at the barrier it becomes the dispatcher's choice there again once its cuDNN tests pass:
# dispatch.AUTO_HELD_H), the kernels cuDNN runs for torch.nn's bf16 LSTM (benchmarks/profile_step.py --backend
# native: the baseline of every ratio, so far named only by PyTorch's heuristic), then the GPU tests of the
# inference regimes (vector, split vector, held with each exchange, CUDA-graph captures) and of what runs the fused
# kernels under torch.compile, in half precision and with saturated gates.
# Usage: bash scripts/gpu_recheck.sh (results under $OUT on the device machine, else
# benchmarks/results/gpu-<device>/recheck). Each latency run ends within 120 s and each test within 90 s (gpu_env.sh),
# so that a kernel hung on the GPU (a cluster exchange that never completes) costs its own step only.
set -uo pipefail
source "$(dirname "$0")/gpu_env.sh"  # cd to the checkout; PY, name, hang_limit
res=${OUT:-benchmarks/results/gpu-$name/recheck}
mkdir -p "$res"
{
    nvidia-smi --query-gpu=name --format=csv,noheader
    timeout -k 5 120 "$PY" benchmarks/latency.py --hidden 64 128 256 --out "$res/latency"
    for exchange in barrier cluster cluster-async; do
        timeout -k 5 120 "$PY" benchmarks/latency.py --regime held --exchange "$exchange" --hidden 256 \
            --out "$res/latency/held-$exchange"
    done
    for shape in "64 1" "256 16"; do  # which cuDNN kernels torch.nn's bf16 LSTM runs (the baseline of every ratio)
        timeout -k 5 60 "$PY" benchmarks/profile_step.py lstm $shape --mode fwd+bwd --breakdown --backend native
    done
    "$PY" -m pytest -p no:cacheprovider -q -rfEs -n 8 "${hang_limit[@]}" -m "gpu or not gpu" tests/test_cuda.py \
        tests/test_triton_kernels.py tests/test_fused_variants.py tests/test_fused_layer_norm.py \
        -k "split_vector_regime or cuda_graph or vector_regime_matches or held_regime or saturated or compile_without \
        or plain_inference or variants_in_half or layer_norm_in_half"
} 2>&1 | tee "$res/gpu_recheck.log"
