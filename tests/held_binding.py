"""The fused forwards (kernels/{lstm,gru,rnn}.py's _lstm_forward, ...) in the held regime, taken through Triton's
own launch path up to the launch itself, without a GPU: each calls its held kernel exactly as on CUDA, and Triton
binds the arguments, specializes them and compiles the kernel for sm_90 (``warmup``: everything a launch does but
the launch), with a stand-in for the CUDA driver.
The Gluon kernels cannot run under the interpreter, so this is how the CPU checks that the call sites in
kernels/{lstm,gru,rnn}.py fit the kernels' signatures. Run by tests/test_held_regime.py in a process without
TRITON_INTERPRET; prints one JSON line per compiled kernel (its name, warps, shared memory, whether it goes out
as a cooperative launch and the launch metadata its launcher gets: num_warps, num_ctas, shared)."""

from __future__ import annotations

import json

import torch
from triton.backends.compiler import GPUTarget
from triton.runtime import driver

from rnnlab.kernels import dispatch, gru, held, lstm, rnn


class _Driver:
    """What Triton's launch path asks the active driver before it launches: an sm_90 target, device 0, stream 0."""

    def get_current_target(self):
        return GPUTarget("cuda", 90, 32)

    def get_current_device(self):
        return 0

    def get_current_stream(self, device=None):
        return 0


class _Warmup:
    """A kernel whose ``kernel[grid](...)`` binds and compiles (JITFunction.warmup) instead of launching; its own
    ``warmup`` (which held.launch_split calls before a cluster launch) is the kernel's."""

    def __init__(self, kernel, compiled: list):
        self.kernel, self.compiled = kernel, compiled

    def warmup(self, *args, **kwargs):
        return self.kernel.warmup(*args, **kwargs)

    def __getitem__(self, grid):
        def call(*args, **kwargs):
            self.compiled.append((self.kernel.fn.__name__, self.kernel.warmup(*args, grid=grid, **kwargs)))
        return call


def main() -> None:
    driver.set_active(_Driver())
    dispatch._held_problem = lambda *args: None  # the dispatcher would refuse a CPU tensor
    compiled = []
    for name in ("_lstm_fwd_held_kernel", "_gru_fwd_held_kernel", "_rnn_fwd_held_kernel",
                 "_lstm_fwd_held_split_kernel", "_gru_fwd_held_split_kernel"):
        setattr(held, name, _Warmup(getattr(held, name), compiled))
    torch.manual_seed(0)
    packed = [11, 11, 9, 4, 2]  # batch sizes of a packed batch (T = 5, B = 11): unequal lengths

    def inputs(gates, H, I=8):  # x, h0, w_ih, w_hh, b_ih, b_hh
        x, h0 = torch.randn(5, 11, I, dtype=torch.bfloat16), torch.zeros(11, H, dtype=torch.bfloat16)
        return (x, h0, torch.randn(gates * H, I, dtype=torch.bfloat16), torch.randn(gates * H, H, dtype=torch.bfloat16),
                torch.randn(gates * H, dtype=torch.bfloat16), torch.randn(gates * H, dtype=torch.bfloat16))

    with dispatch.force_regime("held"):
        x, h0, *weights = inputs(4, 64)
        lstm._lstm_forward(x, h0, h0.float(), *weights, None, None, False, False)
        gru._gru_forward(*inputs(3, 64), packed, True, False)
        rnn._rnn_forward(*inputs(1, 64), packed, False, True)
        for exchange in dispatch.EXCHANGES:  # H = 256: split over programs
            with dispatch.force_exchange(exchange):
                x, h0, *weights = inputs(4, 256)
                lstm._lstm_forward(x, h0, h0.float(), *weights, None, packed, True, False)
                gru._gru_forward(*inputs(3, 256), None, False, False)
    for name, kernel in compiled:
        print(json.dumps({"kernel": name, "num_warps": kernel.metadata.num_warps, "shared": kernel.metadata.shared,
                          "cooperative": kernel.metadata.launch_cooperative_grid,
                          "launched": kernel.packed_metadata}))


if __name__ == "__main__":
    main()
