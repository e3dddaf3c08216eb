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
from rnnlab.kernels.dispatch import HELD_SPLIT_CHAINS  # noqa: E402 (after the skip without triton)


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
    multiples of 16 and with 32-row programs; the largest vector ones, one program a row and split (fit.py's
    --quick: all 1874 take tens of minutes on 2 cores without Triton's cache; 934 of them took about 25, the
    168 layer-norm ones 7 in two processes, 124 vector ones 52 s before the 42 flagged ones came)."""
    _fits(kernel, quick=True)


@pytest.mark.slow
@pytest.mark.parametrize("kernel", list(fit.KERNELS))
def test_every_kernel_configuration_fits(kernel):
    _fits(kernel, quick=False)


@pytest.mark.parametrize(("kernel", "hidden", "sync", "units", "warps"), [
    ("lstm_fwd_vector", "256", "flag", "8", 8),
    ("gru_fwd_vector", "128", "grid", "4", 2),
], ids=["lstm-256-flagged-8", "gru-128-barrier-4"])
def test_forced_split_units_fit(kernel, hidden, sync, units, warps):
    """The split vector regime's narrower programs (dispatch.force_units, forced only, so outside configurations())
    compile for sm_90 without spills, their warps scaled with their units (dispatch.vector_warps)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-W", "ignore", "-m", "rnnlab.kernels.fit", kernel, "sm_90", "bf16", hidden,
                           sync, "-", "-", "a16", "--units", units], capture_output=True, text=True, env=env,
                          timeout=600, check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-1500:]
    fields = proc.stdout.split()
    assert fields[-1] == "True" and int(fields[9]) == warps and fields[-2] == "0"  # fits, warps, no spill


def _time_loop(kernel: str, hidden: int, args: tuple[str, ...]) -> dict[str, int]:
    """fit.py --loop's counts for one configuration of ``kernel`` (sm_90, bf16): a warp's time-loop SASS a step."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-W", "ignore", "-m", "rnnlab.kernels.fit", kernel, "sm_90", "bf16",
                           str(hidden), *args, "--loop"], capture_output=True, text=True, env=env, timeout=600,
                          check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-1500:]
    loop = proc.stdout.strip().splitlines()[-1]
    assert loop.startswith("time loop, a warp's SASS a step: ")
    return {op: int(n) for op, n in (item.split() for item in loop.split("; ")[1].split(", "))}


@pytest.mark.parametrize(("kernel", "args", "tensor_cores", "special"), [
    ("lstm_fwd", ("-", "infer", "-", "a16"), True, 2 * 8),
    ("lstm_fwd_vector", ("-", "-", "-", "a16"), False, 8),
], ids=["persistent", "vector"])
def test_time_loop_counts_a_step_of_the_lstm_forward(kernel, args, tensor_cores, special):
    """fit.py --loop reads a configuration's time loop from its SASS: the bf16 LSTM inference forward at H = 64
    for sm_90, 16 warps, 8 special-function instructions a hidden unit (5 exponentials and 3 reciprocals:
    sigmoid(f), and sigmoid_tanh for i g and o tanh(c)). The persistent step holds the recurrent product on
    tensor cores, 2 units of one batch row a thread (16 rows, padded); the vector one (a single row, one unit a
    thread, W_hh in registers) has none and reads no weights from shared memory (LDSM)."""
    counts = _time_loop(kernel, 64, args)
    assert (counts["HMMA"] > 0) == tensor_cores and (counts["LDSM"] > 0) == tensor_cores
    assert counts["BAR"] > 0 and counts["MUFU"] == special


@pytest.mark.skipif(fit.held is None, reason="the held regime's kernels need Triton's Gluon (3.6 or later)")
def test_held_step_reads_no_weights_from_shared_memory():
    """The held regime's LSTM at H = 128 (sm_90, bf16; forced only until a GPU times it): a warp's step takes its 16
    units' four gate products on tensor cores (4 gates x 8 slices of 16 of the reduction: 32 HMMA), W_hh's block
    in registers, so the only shared-memory reads are h's B operand (128 x 8 bf16 a warp: 4 LDSM.x4), none of
    W_hh's 128 KiB (the persistent regime reloads its whole W_hh every step)."""
    counts = _time_loop("lstm_fwd_held", 128, ("-", "-", "-", "a16"))
    assert counts["HMMA"] == 32 and counts["LDSM"] == 4 and counts["LDS"] == 0
    assert counts["chain"] == 8  # a gate block's products accumulate in turn; the four blocks' chains interleave


@pytest.mark.skipif(fit.held is None, reason="the held regime's kernels need Triton's Gluon (3.6 or later)")
def test_split_held_step_runs_its_products_in_independent_chains():
    """The held regime split over programs, the LSTM at H = 256 at the barrier (sm_90, bf16; the dispatcher's
    choice there once a GPU has checked it: dispatch.AUTO_HELD_H): a warp's 16 gate rows over all 256 inputs are 16
    tensor-core products a step, accumulated in HELD_SPLIT_CHAINS runs of the inputs apart, so that no chain is
    longer than 16 / HELD_SPLIT_CHAINS (one chain of 16 before: 16 times HMMA's latency a step), and h's B operand
    is read by ldmatrix, not word by word."""
    counts = _time_loop("lstm_fwd_held_split", 256, ("grid", "-", "-", "a16"))
    assert counts["HMMA"] == 16 and counts["chain"] == 16 // HELD_SPLIT_CHAINS
    assert counts["LDSM"] > 0 and counts["LDS"] <= 1  # the one LDS: the barrier's broadcast


def test_hmma_chain_follows_accumulators():
    """fit.hmma_chain: a product that accumulates another's result (its destination register) extends that one's
    chain; one from zero (RZ) starts a chain; a register written again starts over from what wrote it."""
    products = [("R10", "RZ"), ("R20", "RZ"), ("R12", "R10"), ("R10", "R12"), ("R20", "R20"), ("R30", "RZ")]
    assert fit.hmma_chain(products) == 3
    assert fit.hmma_chain([]) == 0
