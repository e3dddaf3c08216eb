#!/usr/bin/env bash
# Nsight Compute on the fused forward kernels, one launch each, where the issue's targets are missed:
#   bash scripts/gpu_profile.sh [BUDGET_SECONDS]     (default 180; each profile is cut at its share)
# the persistent (LSTM H = 64) and resident (H = 256) forward steps take 1.8-4.1 us against a 1 us
# target, and the tiled one at H = 1024 was 2x cuDNN's time (B = 64 still runs tiled there: 4 batch tiles
# of 64 resident programs would need more SMs than an H100 has). Each report (stall reasons per warp state,
# scheduler and occupancy statistics, per-source-line counters) goes to
# benchmarks/results/gpu-<device>/ncu/, or on the device machine (where $OUT is set) into
# $OUT/gpu_profile.tar.gz. Needs ncu, torch and triton; rnnlab is used from this checkout.
set -uo pipefail
source "$(dirname "$0")/gpu_env.sh"  # cd to the checkout; PY, name
budget=${1:-180}
deadline=$((SECONDS + budget))
if [[ $name == cpu ]] || ! command -v ncu >/dev/null; then
    echo "needs a CUDA device and ncu (Nsight Compute); found device '$name', ncu: $(command -v ncu || echo none)"
    exit 1
fi
if [[ -n ${OUT:-} ]]; then
    res=$(mktemp -d)/gpu-$name/ncu
else
    res=benchmarks/results/gpu-$name/ncu
fi
mkdir -p "$res"
cases=("lstm 64 16" "lstm 256 16" "lstm 1024 64")
for i in "${!cases[@]}"; do
    read -r cell hidden batch <<<"${cases[$i]}"
    left=$((deadline - SECONDS - 10))
    share=$((left / (${#cases[@]} - i)))
    report=$res/$cell-H$hidden-B$batch.txt
    if ((share < 20)); then
        echo "skipped: ${share}s of the budget left" | tee "$report"
        continue
    fi
    echo "=== $cell H=$hidden B=$batch (at most ${share}s)"
    timeout -k 5 "$share" ncu --profile-from-start off --clock-control none --kernel-name regex:_fwd \
        --section SpeedOfLight --section WarpStateStats --section SchedulerStats --section Occupancy \
        --section LaunchStats --section SourceCounters \
        "$PY" benchmarks/profile_step.py "$cell" "$hidden" "$batch" >"$report" 2>&1
    echo "exit $? after the profile (124: cut at its share)" | tee -a "$report"
    tail -n 3 "$report"
done
if [[ -n ${OUT:-} ]]; then
    tar -czf "$OUT/gpu_profile.tar.gz" -C "$(dirname "$(dirname "$res")")" "gpu-$name"
fi
echo "done in ${SECONDS}s; reports in $res"
