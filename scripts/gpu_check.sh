#!/usr/bin/env bash
# Everything a GPU session checks, in one command that ends within a time budget:
#   bash scripts/gpu_check.sh [BUDGET_SECONDS]      (default 540; run it with the device tool's
#                                                  timeout_s about 50 s above the budget)
#   PRESET=gpu-full bash scripts/gpu_check.sh 3000   (another benchmark preset than gpu)
# Steps, most important first; each is cut at its own limit and at what is left of the budget, and a
# step that does not fit is skipped and says so:
#   1. gpu tests (tests/test_cuda.py): the fused kernels (grid barrier on, the default) and the reference
#      path against cuDNN, CUDA graphs, what backend="auto" picks
#   2. forward latency (benchmarks/latency.py; CUDA only): a call, its CUDA-graph replay and the fused kernel
#      alone, a step, where the 1 us inference target is missed; then, forced, the split held regime at H = 256
#      with each exchange (at the barrier: not the dispatcher's choice until checked again; the clusters:
#      sm_90), the vector regime where the held one (W_hh in registers as tensor-core operands) is chosen, the
#      RNN's held regime against its default, the split vector regime's flagged exchange (an
#      experiment), and its narrower programs (8 units at the barrier and flagged, 4 flagged; B = 1)
#   3. benchmark, preset gpu: the fused kernels' targets against cuDNN (bf16, T = 1024)
#   4. activation memory, preset gpu
#   5. the launch choices made without a GPU (benchmarks/tune.py; CUDA only): the inference forward's regime
#      (vector, persistent or resident), warps of the vector and resident programs, the tiled regime's blocks, stages
#      and warps
#   6. the fused-kernel tests (tests/test_triton_kernels.py and tests/test_vector_regime.py, then
#      tests/test_fused_variants.py and
#      tests/test_fused_layer_norm.py), compiled on the GPU
#   7. the tiled regime with the grid barrier off (RNNLAB_GRID_SYNC=0: one program per batch tile, as
#      under the interpreter) against cuDNN
#   8. benchmark, preset gpu-torch: the pure-PyTorch path beside both kernels
#   9. benchmark, preset gpu-variants: zoneout, recurrent dropout and layer norm on the fused kernels and
#      step by step
# Every kernel configuration compiles on first use (the machine starts with an empty Triton cache).
# Everything goes to a folder of results: benchmarks/results/gpu-<device>/, or on the device machine
# (where $OUT is set) a scratch folder packed into $OUT/gpu_check.tar.gz at the end, with the log also in
# $OUT/gpu_check.log as it is written (the device tool returns at most 8 files). Needs torch, triton and
# pytest; rnnlab is used from this checkout (the training stack, hydra included, is not needed).
set -uo pipefail  # a failing step does not stop the later ones
source "$(dirname "$0")/gpu_env.sh"  # cd to the checkout; PY, name, hang_limit, results_in
source scripts/gpu_steps.sh  # limit_for, step
budget=${1:-540}
preset=${PRESET:-gpu}
deadline=$((SECONDS + budget))
results_in "" gpu_check.log

# run_budget LIMIT: how long a benchmark inside a step of LIMIT seconds may start measurements (it then
# writes its plots)
run_budget() {
    echo $(($1 > 60 ? $1 - 30 : $1 / 2))
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee -a "$log"
"$PY" -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" 2>&1 | tee -a "$log"
pytest=("$PY" -m pytest -p no:cacheprovider -v -rfEs -n 0 "${hang_limit[@]}")  # one process (pyproject.toml asks
# for -n auto); a test hung on the GPU ends after 90 s (gpu_env.sh)
# compiling dominates the tests on a GPU (the H100 ran two thirds of the fused-kernel tests in 120 s in one
# process): spread them over 8 processes (pytest-xdist is installed on the device machines too); without CUDA,
# where every GPU test skips, one process (starting 8 took 24 s on 2 cores)
parallel=(-n 8)
[[ $name == cpu ]] && parallel=()
lim=$(limit_for 120)  # 55 s on the H100 in 8 processes (the split vector regime's cooperative launches included)
step "gpu tests" "$lim" "${pytest[@]}" "${parallel[@]}" -m gpu tests/test_cuda.py
if [[ $name == cpu ]]; then
    echo "=== forward latency: skipped, no CUDA device" | tee -a "$log"
else
    lim=$(limit_for 60)  # 24 s on an H100
    step "forward latency" "$lim" "$PY" benchmarks/latency.py --out "$res/latency"
    for exchange in barrier cluster cluster-async; do  # the split held regime (forced) at H = 256, where the
        # barrier's missed 1 us on the H200 before its product's chains (dispatch.HELD_SPLIT_CHAINS); clusters: sm_90
        lim=$(limit_for 30)
        step "forward latency, held regime, $exchange exchange" "$lim" "$PY" benchmarks/latency.py --regime held \
            --exchange "$exchange" --hidden 256 --out "$res/latency/forced/held-$exchange"
    done
    lim=$(limit_for 45)  # what the held regime (the dispatcher's choice up to AUTO_HELD_H) replaced
    step "forward latency, vector regime" "$lim" "$PY" benchmarks/latency.py --regime vector --hidden 64 128 \
        --out "$res/latency/forced/vector"
    lim=$(limit_for 30)  # the RNN's held forward, not yet in AUTO_HELD_H, against its vector regime (the default)
    step "forward latency, RNN, held regime" "$lim" "$PY" benchmarks/latency.py --cells rnn_tanh --regime held \
        --hidden 128 256 --out "$res/latency/forced/rnn-held"
    lim=$(limit_for 30)
    step "forward latency, RNN" "$lim" "$PY" benchmarks/latency.py --cells rnn_tanh --hidden 128 256 \
        --out "$res/latency/forced/rnn"
    lim=$(limit_for 45)  # the flagged exchange (forced only) against the barrier, H = 128 (and 256, B = 1: at B = 16
    # its 256 programs outnumber the SMs)
    step "forward latency, flagged exchange" "$lim" "$PY" benchmarks/latency.py --regime vector --exchange flagged \
        --hidden 128 256 --batch 1 --out "$res/latency/forced/vector-flagged"
    # narrower split programs (dispatch.force_units): half or a quarter of a step's issue, twice or four times the
    # programs, so B = 1 only
    for forced in "barrier 8" "flagged 8" "flagged 4"; do
        read -r exchange units <<<"$forced"
        lim=$(limit_for 30)
        step "forward latency, $exchange exchange, $units-unit programs" "$lim" "$PY" benchmarks/latency.py \
            --regime vector --exchange "$exchange" --units "$units" --hidden 128 256 --batch 1 \
            --out "$res/latency/forced/vector-$exchange-units$units"
    done
fi
lim=$(limit_for 180)
step "benchmark $preset" "$lim" "$PY" benchmarks/run.py --preset "$preset" --budget-s "$(run_budget "$lim")" \
    --out "$res"
lim=$(limit_for 45)
step "activation memory" "$lim" "$PY" benchmarks/memory.py --preset "$preset" --out "$res"
if [[ $name == cpu ]]; then
    echo "=== launch-choice tuning: skipped, no CUDA device" | tee -a "$log"
else
    lim=$(limit_for 150)  # the regime group (16 measurements, each compiling) runs first
    step "launch-choice tuning" "$lim" "$PY" benchmarks/tune.py --budget-s "$(run_budget "$lim")" --out "$res/tune"
fi
lim=$(limit_for 120)
step "fused-kernel tests" "$lim" "${pytest[@]}" "${parallel[@]}" tests/test_triton_kernels.py tests/test_vector_regime.py \
    tests/test_kernel_offsets.py
lim=$(limit_for 90)
step "fused-variant tests" "$lim" "${pytest[@]}" "${parallel[@]}" tests/test_fused_variants.py \
    tests/test_fused_layer_norm.py
lim=$(limit_for 60)
step "tiled regime without the grid barrier" "$lim" env RNNLAB_GRID_SYNC=0 "${pytest[@]}" -m gpu -k tiled \
    tests/test_cuda.py::test_fused_kernels_match_cudnn
lim=$(limit_for 90)
step "benchmark gpu-torch" "$lim" "$PY" benchmarks/run.py --preset gpu-torch --budget-s "$(run_budget "$lim")" \
    --out "$res/torch"
lim=$(limit_for 90)
step "benchmark gpu-variants" "$lim" "$PY" benchmarks/run.py --preset gpu-variants \
    --budget-s "$(run_budget "$lim")" --out "$res/variants"

cp "$log" "$res/"
if [[ -n ${OUT:-} ]]; then
    tar -czf "$OUT/gpu_check.tar.gz" -C "$(dirname "$res")" "$(basename "$res")"
    echo "packed $res into \$OUT/gpu_check.tar.gz" | tee -a "$log"
fi
echo "done in ${SECONDS}s; results in $res" | tee -a "$log"
