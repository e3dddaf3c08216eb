# Sourced by gpu_check.sh, gpu_recheck.sh, gpu_profile.sh and gpu_train.sh: run from the checkout's root with it on PYTHONPATH
# (rnnlab is used from the checkout), Python as $PY (default python3), the device's name, spaces as dashes, as
# $name ("cpu" without CUDA), which names the results folder gpu-$name, and pytest's options that end a test
# hung on the GPU after 90 s as $hang_limit (pytest-timeout, installed on the GPU machines; none without it): a kernel
# whose programs wait for each other forever (a wrong exchange) then fails its test, not the whole run, where pytest
# runs its tests in workers (-n, pytest-xdist); in one process (-n 0) the timeout ends the run there.
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
name=$("$PY" -c "import torch
print(torch.cuda.get_device_name().replace(' ', '-') if torch.cuda.is_available() else 'cpu')") || exit 1
hang_limit=()
"$PY" -c "import pytest_timeout" 2>/dev/null && hang_limit=(-o timeout=90 -o timeout_method=thread)

# results_in FOLDER [LOG]: $res, where a script writes its results, benchmarks/results/gpu-$name/FOLDER, or on the
# device machine (where $OUT is set) a scratch folder gpu-$name/FOLDER, which the script packs into $OUT at its end;
# with LOG, $log, the log file of that name, emptied: in $res, or in $OUT there, so that it comes back as it is
# written even from a run cut short
results_in() {
    if [[ -n ${OUT:-} ]]; then
        res=$(mktemp -d)/gpu-$name/$1
        log=$OUT/${2:-}
    else
        res=benchmarks/results/gpu-$name/$1
        log=$res/${2:-}
    fi
    res=${res%/}  # FOLDER "": gpu-$name itself
    mkdir -p "$res"
    [[ -z ${2:-} ]] || : >"$log"
}
