# Sourced by gpu_check.sh and gpu_train.sh: steps that each end within their own limit and within a time budget.
# The sourcing script sets $deadline (a value of bash's SECONDS) and $log (each step's output is appended there).

# limit_for SECONDS: SECONDS, or what is left of the budget if less (15 s are kept for packing the results)
limit_for() {
    local left=$((deadline - SECONDS - 15))
    echo $(($1 < left ? $1 : left))
}

# step NAME LIMIT COMMAND...: run COMMAND for at most LIMIT seconds (from limit_for), or skip it below 20;
# returns COMMAND's exit status (1 when skipped)
step() {
    local name=$1 limit=$2
    shift 2
    if ((limit < 20)); then
        echo "=== $name: skipped, ${limit}s of the budget left" | tee -a "$log"
        return 1
    fi
    echo "=== $name (at most ${limit}s): $*" | tee -a "$log"
    local t0=$SECONDS
    timeout -k 5 "$limit" "$@" 2>&1 | tee -a "$log"
    local status=${PIPESTATUS[0]}
    echo "=== $name: exit $status after $((SECONDS - t0))s (124: cut at its limit)" | tee -a "$log"
    return "$status"
}
