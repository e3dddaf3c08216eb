"""Fused Triton kernels for the recurrences (imported as ``rnnlab.kernels``).

One launch runs a whole sequence for one layer and direction: the recurrent weights are loaded once
into registers before the time loop, the state stays in fp32, and packed sequences (per-row lengths)
and the reverse direction are handled inside the kernel. The input projection and the weight gradients
are single GEMMs outside the kernels, shared with the pure-PyTorch reference (rnnlab.recurrence).

Status: the persistent regime (the whole W_hh of a batch tile in registers) for the LSTM, tested under
the Triton interpreter on the CPU against the reference; not yet verified on a GPU, so ``backend="auto"``
never picks it. Import this module only with Triton installed; set ``TRITON_INTERPRET=1`` before the
import to run the kernels on the CPU.
"""

from .lstm import LSTMTritonScan, lstm_scan_triton

__all__ = ["LSTMTritonScan", "lstm_scan_triton"]
