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
    """Every persistent configuration; of the tiled ones the largest and the smallest code path, and the
    largest resident ones, for any hidden size, for multiples of 16 and with 32-row programs (fit.py's
    --quick: compiling all 934 takes about 25 minutes on 2 cores without Triton's cache)."""
    _fits(kernel, quick=True)


@pytest.mark.slow
@pytest.mark.parametrize("kernel", list(fit.KERNELS))
def test_every_kernel_configuration_fits(kernel):
    _fits(kernel, quick=False)
