"""Fused Triton kernels for the recurrences (imported as ``rnnlab.kernels``).

One launch runs a whole sequence for one layer and direction: the recurrent weights are loaded once
into registers before the time loop, the state stays in fp32, and packed sequences (per-row lengths)
and the reverse direction are handled inside the kernel. The input projection and the weight gradients
are single GEMMs outside the kernels, shared with the pure-PyTorch reference (rnnlab.recurrence); the
functions here take the same arguments and return the same outputs as their reference counterparts.

Status: the persistent regime (a batch tile's whole W_hh in registers: H <= 32 in fp32, <= 64 in
fp16/bf16) for LSTM, GRU and RNN, tested under the Triton interpreter against the reference and
cross-compiled for sm_80/sm_90 (fit.py); not yet run on a GPU, so ``backend="auto"`` never picks it.
Set ``TRITON_INTERPRET=1`` before importing this module to run the kernels on the CPU.
"""

from .gru import GRUTritonScan, gru_scan_triton
from .lstm import LSTMTritonScan, lstm_scan_triton
from .rnn import RNNTritonScan, rnn_scan_triton

# the names rnnlab.recurrence uses, so a layer can take either module
lstm_scan, gru_scan, rnn_scan = lstm_scan_triton, gru_scan_triton, rnn_scan_triton

__all__ = [
    "GRUTritonScan",
    "LSTMTritonScan",
    "RNNTritonScan",
    "gru_scan",
    "gru_scan_triton",
    "lstm_scan",
    "lstm_scan_triton",
    "rnn_scan",
    "rnn_scan_triton",
]
