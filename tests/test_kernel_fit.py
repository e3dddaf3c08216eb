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


@pytest.mark.parametrize("kernel", list(fit.KERNELS))
def test_kernel_configurations_fit(kernel):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-W", "ignore", "-m", "rnnlab.kernels.fit", kernel],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-1500:]
    rows = proc.stdout.strip().splitlines()
    assert len(rows) == sum(config[0] == kernel for config in fit.configurations())
    assert all(row.endswith("True") for row in rows), proc.stdout
