# Sourced by gpu_check.sh, gpu_recheck.sh and gpu_profile.sh: run from the checkout's root with it on PYTHONPATH
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
