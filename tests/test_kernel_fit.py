"""Every kernel configuration the dispatcher can launch compiles for sm_80 (A100) and sm_90 (H100) with
Triton's own compiler, no GPU needed, and fits: at most 255 registers a thread, shared memory within the
device's limit per block, no spills (stack or local memory) in the persistent regime (the tiled kernels'
spills, a few bytes in some configurations, are printed by `python -m rnnlab.kernels.fit`)."""

import os
import subprocess
import sys

import pytest

pytest.importorskip("triton")
fit = pytest.importorskip("rnnlab.kernels.fit", reason="cross-compiling needs triton's NVIDIA backend")


def _fits(kernel: str, quick: bool) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-W", "ignore", "-m", "rnnlab.kernels.fit", kernel,
                           *(["--quick"] if quick else [])], capture_output=True, text=True, env=env, timeout=900,
                          check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-1500:]
    rows = proc.stdout.strip().splitlines()
    assert len(rows) == sum(config[0] == kernel for config in fit.configurations(quick))
    assert all(row.endswith("True") for row in rows), proc.stdout


@pytest.mark.parametrize("kernel", list(fit.KERNELS))
def test_kernel_configurations_fit(kernel):
    """Every persistent configuration (with layer norm the largest, bf16 and fp32, sm_90); of the tiled ones
    the largest and the smallest code path, and the largest resident ones, for any hidden size, for
    multiples of 16 and with 32-row programs (fit.py's --quick: all 1632 take tens of minutes on 2 cores
    without Triton's cache; 934 of them took about 25, the 168 layer-norm ones 7 in two processes)."""
    _fits(kernel, quick=True)


@pytest.mark.slow
@pytest.mark.parametrize("kernel", list(fit.KERNELS))
def test_every_kernel_configuration_fits(kernel):
    _fits(kernel, quick=False)


def test_time_loop_counts_a_step_of_the_persistent_lstm_forward():
    """fit.py --loop reads a configuration's time loop from its SASS. In the persistent bf16 LSTM forward at
    H = 64 (16 warps: 2 hidden units of one batch row a thread) a step holds the recurrent product on tensor
    cores and 8 special-function instructions a unit: 5 exponentials and 3 reciprocals (sigmoid(f), and
    sigmoid_tanh for i g and o tanh(c))."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-W", "ignore", "-m", "rnnlab.kernels.fit", "lstm_fwd", "sm_90", "bf16",
                           "64", "-", "infer", "-", "a16", "--loop"], capture_output=True, text=True, env=env,
                          timeout=600, check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-1500:]
    loop = proc.stdout.strip().splitlines()[-1]
    assert loop.startswith("time loop, a warp's SASS a step: ")
    counts = dict(item.split() for item in loop.split("; ")[1].split(", "))
    assert int(counts["HMMA"]) > 0 and int(counts["BAR"]) > 0
    assert int(counts["MUFU"]) == 2 * 8
