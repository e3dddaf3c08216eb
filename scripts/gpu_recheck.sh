#!/usr/bin/env bash
# A short GPU check (about 2-3 minutes on an H200; at most about 7) for the first or second run of a session: the GPU
# tests of the inference regimes (vector, split vector, held with each exchange, CUDA-graph captures) and of what runs
# the fused kernels under torch.compile, in half precision and with saturated gates, and the 64-bit offsets
# (compiled, test_kernel_offsets.py); then the forward latency
# (benchmarks/latency.py) at the dispatcher's choices and of the split held regime at H = 256, forced, with each
# exchange (at the barrier it becomes the dispatcher's choice there again once its cuDNN tests, split_held, pass:
# dispatch.AUTO_HELD_H); then the kernels cuDNN runs for torch.nn's bf16 LSTM (benchmarks/profile_step.py --backend
# native: the baseline of every ratio, so far named only by PyTorch's heuristic).
# The tests come first and print a line each (-v), so that a run cut short still says which passed: the split held
# regime's decide AUTO_HELD_H, and a cluster exchange that never completes costs 90 s a test (gpu_env.sh) and at
# most 240 s in all. Each latency run ends within 120 s (60 s forced: about 15 s each on the H200).
# Usage: bash scripts/gpu_recheck.sh. Results go to benchmarks/results/gpu-<device>/recheck, or on the device
# machine (where $OUT is set) into $OUT/gpu_recheck.tar.gz, with the log also in $OUT/gpu_recheck.log as it is
# written (the device tool returns at most 8 files, and the latency runs write 8).
set -uo pipefail
source "$(dirname "$0")/gpu_env.sh"  # cd to the checkout; PY, name, hang_limit, results_in
results_in recheck gpu_recheck.log
{
    nvidia-smi --query-gpu=name --format=csv,noheader
    timeout -k 5 240 "$PY" -m pytest -p no:cacheprovider -v -rfEs -n 8 "${hang_limit[@]}" -m "gpu or not gpu" \
        tests/test_cuda.py tests/test_triton_kernels.py tests/test_fused_variants.py tests/test_fused_layer_norm.py \
        tests/test_kernel_offsets.py \
        -k "split_vector_regime or cuda_graph or vector_regime_matches or held_regime or saturated or compile_without \
        or plain_inference or variants_in_half or layer_norm_in_half or past_2_31"
    timeout -k 5 120 "$PY" benchmarks/latency.py --hidden 64 128 256 --out "$res/latency"
    for exchange in barrier cluster cluster-async; do
        timeout -k 5 60 "$PY" benchmarks/latency.py --regime held --exchange "$exchange" --hidden 256 \
            --out "$res/latency/held-$exchange"
    done
    for shape in "64 1" "256 16"; do  # which cuDNN kernels torch.nn's bf16 LSTM runs (the baseline of every ratio)
        timeout -k 5 60 "$PY" benchmarks/profile_step.py lstm $shape --mode fwd+bwd --breakdown --backend native
    done
} 2>&1 | tee "$log"
if [[ -n ${OUT:-} ]]; then
    cp "$log" "$res/"
    tar -czf "$OUT/gpu_recheck.tar.gz" -C "$(dirname "$res")" recheck
    echo "packed $res into \$OUT/gpu_recheck.tar.gz" | tee -a "$log"
fi
