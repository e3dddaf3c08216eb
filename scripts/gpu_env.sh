# Sourced by gpu_check.sh and gpu_profile.sh: run from the checkout's root with it on PYTHONPATH (rnnlab
# is used from the checkout), Python as $PY (default python3), and the device's name, spaces as dashes,
# as $name ("cpu" without CUDA), which names the results folder gpu-$name.
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
name=$("$PY" -c "import torch
print(torch.cuda.get_device_name().replace(' ', '-') if torch.cuda.is_available() else 'cpu')") || exit 1
