"""The held regime (rnnlab.kernels.dispatch, kernels/held.py): inference forwards whose W_hh stays in registers as
tensor-core operands, written in Gluon, which the Triton interpreter does not run. Here, without a GPU: its
launch, and that it refuses clearly what it cannot run (its kernels' fit: tests/test_kernel_fit.py; its numbers
against cuDNN: tests/test_cuda.py)."""

import pytest
import torch

import rnnlab

pytest.importorskip("triton")  # optional where it has no wheel; rnnlab.kernels needs it
from rnnlab.kernels.dispatch import HELD_ROWS, MAX_HELD_H, force_regime, held_launch, plan


@pytest.mark.parametrize(("cell", "H", "B", "grid", "warps", "registers"), [
    ("lstm", 128, 11, (2,), 8, 255),
    ("gru", 16, 1, (1,), 1, 255),
    ("rnn", 256, 16, (2,), 16, 128),
    ("rnn", 48, 8, (1,), 4, 255),
])
def test_held_launch(cell, H, B, grid, warps, registers):
    """One program per HELD_ROWS batch rows, a warp per 16 hidden units (padded to a power of two), every register
    a thread's share of the SM allows."""
    launch = held_launch(cell, torch.zeros(1, B, 1, dtype=torch.bfloat16), H, B)
    assert launch.regime == "held" and not launch.tiled and launch.grid == grid
    assert launch.meta == {"BLOCK_H": max(16, 1 << (H - 1).bit_length()), "num_warps": warps, "maxnreg": registers}
    assert HELD_ROWS * grid[0] >= B


def test_forced_held_regime_refuses_what_it_cannot_run():
    """Forced, the regime names why it cannot run a launch and what to do; a backward runs where the dispatcher puts
    it (the regime is forward-only)."""
    x16 = torch.zeros(1, 4, 1, dtype=torch.bfloat16)
    infer = {"inference": True}
    cases = [
        (("lstm", x16, 64, 4), infer, r"Gluon, which runs on CUDA only \(not under the Triton interpreter\)"),
        (("lstm", torch.zeros(1, 4, 1), 64, 4), infer, r"fp16 or bf16 \(tensor cores\); got torch.float32"),
        (("gru", x16, 100, 4), infer, r"multiples of 16 up to 128; got hidden_size=100"),
        (("lstm", x16, MAX_HELD_H["lstm"] + 16, 4), infer, r"up to 128; got hidden_size=144"),
        (("lstm", x16, 64, 4), {"proj": True, **infer}, r"no projection"),
        (("gru", x16, 64, 4), {}, r"keep nothing for a backward"),
    ]
    with force_regime("held"):
        for args, kwargs, message in cases:
            with pytest.raises(NotImplementedError, match=r"the held regime cannot run this (LSTM|GRU): .*" + message
                               + r".*Leave the regime to the dispatcher"):
                plan(*args, **kwargs)
        assert plan("lstm", x16, 64, 4, backward=True).regime == "persistent"


def test_layer_forced_into_the_held_regime_without_a_gpu():
    """A layer forced into the held regime where it cannot run says so, rather than running elsewhere."""
    lstm = rnnlab.LSTM(8, 64, backend="triton").to(torch.bfloat16)
    with torch.no_grad(), force_regime("held"), pytest.raises(NotImplementedError, match=r"held regime cannot run"):
        lstm(torch.randn(5, 2, 8, dtype=torch.bfloat16))
