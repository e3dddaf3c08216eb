#!/usr/bin/env bash
# Where the fused kernels spend their time, in two kinds of report:
#   bash scripts/gpu_profile.sh [BUDGET_SECONDS]     (default 180; each profile is cut at its share)
# - breakdown-*.txt: a whole LSTM and GRU training step at H = 1024, B = 64 (0.6-0.9x cuDNN's on an H100)
#   under torch.profiler, every kernel by GPU time: the fused ones beside the GEMMs and copies around them;
# - the rest: Nsight Compute on one fused kernel each (stall reasons per warp state, scheduler and
#   occupancy statistics, per-source-line counters): the inference forwards at LSTM H = 64 and 256 in the
#   dispatcher's regimes there (held, and split vector while dispatch.AUTO_HELD_H is 128; the vector and
#   resident regimes when their steps took 1.4-3.6 us against a 1 us target), and the LSTM backward at H = 1024,
#   B = 64 (32-row resident programs); and the H = 64 forward's stall samples per SASS instruction
#   (lstm-H64-B16-sass.csv), to find which instructions the 1 us step waits on.
# Reports go to benchmarks/results/gpu-<device>/ncu/, or on the device machine (where $OUT is set) into
# $OUT/gpu_profile.tar.gz. Needs ncu, torch and triton; rnnlab is used from this checkout.
set -uo pipefail
source "$(dirname "$0")/gpu_env.sh"  # cd to the checkout; PY, name, results_in
budget=${1:-180}
deadline=$((SECONDS + budget))
if [[ $name == cpu ]] || ! command -v ncu >/dev/null; then
    echo "needs a CUDA device and ncu (Nsight Compute); found device '$name', ncu: $(command -v ncu || echo none)"
    exit 1
fi
results_in ncu
for cell in lstm gru; do
    limit=$(((deadline - SECONDS) / 4))  # at most a quarter of what is left each
    echo "=== $cell H=1024 B=64 training step, kernels by GPU time (at most ${limit}s)"
    timeout -k 5 "$limit" "$PY" benchmarks/profile_step.py "$cell" 1024 64 --mode fwd+bwd --breakdown \
        >"$res/breakdown-$cell-H1024-B64.txt" 2>&1
    head -n 12 "$res/breakdown-$cell-H1024-B64.txt"
done
# kind: fwd or bwd, the kernel profiled (sections above, as text); sass: the forward's stall samples and
# counters per SASS instruction of the kernel (Nsight Compute's source page, as CSV)
cases=("lstm 64 16 fwd" "lstm 64 16 sass" "lstm 256 16 fwd" "lstm 1024 64 bwd")
for i in "${!cases[@]}"; do
    read -r cell hidden batch kind <<<"${cases[$i]}"
    left=$((deadline - SECONDS - 10))
    share=$((left / (${#cases[@]} - i)))
    report=$res/$cell-H$hidden-B$batch-$kind.$([[ $kind == sass ]] && echo csv || echo txt)
    if ((share < 20)); then
        echo "skipped: ${share}s of the budget left" | tee "$report"
        continue
    fi
    mode=$([[ $kind == bwd ]] && echo fwd+bwd || echo fwd)
    if [[ $kind == sass ]]; then
        what=(--kernel-name "regex:_fwd" --section WarpStateStats --section SourceCounters --page source
              --print-source sass --csv)
    else
        what=(--kernel-name "regex:_$kind" --section SpeedOfLight --section WarpStateStats --section SchedulerStats
              --section Occupancy --section LaunchStats --section SourceCounters)
    fi
    echo "=== $cell H=$hidden B=$batch $kind (at most ${share}s)"
    timeout -k 5 "$share" ncu --profile-from-start off --clock-control none "${what[@]}" \
        "$PY" benchmarks/profile_step.py "$cell" "$hidden" "$batch" --mode "$mode" >"$report" 2>&1
    echo "exit $? after the profile (124: cut at its share)" | tee -a "$report"
    tail -n 3 "$report"
done
if [[ -n ${OUT:-} ]]; then
    tar -czf "$OUT/gpu_profile.tar.gz" -C "$(dirname "$(dirname "$res")")" "gpu-$name"
fi
echo "done in ${SECONDS}s; reports in $res"
