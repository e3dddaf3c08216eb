"""Fused Triton kernels for the recurrences (imported as ``rnnlab.kernels``).

One launch runs a whole sequence for one layer and direction: the recurrent weights are loaded once
before the time loop and held on chip (Triton stages them in shared memory), the state stays in fp32,
and packed sequences (per-row lengths) and the reverse direction are handled inside the kernel. The
input projection and the weight gradients are single GEMMs outside the kernels, shared with the
pure-PyTorch reference (rnnlab.recurrence); the functions here take the same arguments and return the
same outputs as their reference counterparts.
Each cell's forward and backward are ``torch.library`` custom ops (``rnnlab::lstm_fused``,
``rnnlab::lstm_fused_backward``, ... with fake implementations and registered autograd), so the layers
trace under ``torch.compile`` without graph breaks at the kernels; plain inference skips the op's dispatch
(:func:`rnnlab.kernels.common.plain_inference`).

Status: regimes chosen by :mod:`rnnlab.kernels.dispatch` from cell, hidden size and dtype: vector
(inference forwards of up to 16 sequences, W_hh in registers, one program a sequence or split over
programs), persistent (one program holds a batch tile's whole W_hh on chip: H <= 32 in fp32, <= 64 in
fp16/bf16), tiled (any H: W_hh streamed from L2 by column tiles, the state exchanged through global
memory; also LSTM proj_size, with a second exchange phase per step) and resident (CUDA: the tiled
kernels with each program holding its slice of W_hh, meeting the others at a grid barrier each step;
``RNNLAB_GRID_SYNC=0`` turns the barrier off); and held (:mod:`.held`: W_hh in registers as tensor-core
operands, in Gluon; the LSTM's and GRU's inference forwards up to H = 256). All are cross-compiled for
sm_80/sm_90 (fit.py); all are tested under the Triton interpreter against the reference (held's one-program
kernels with Gluon's calls mapped to triton.language's: tests/held_interpreted.py), and against cuDNN on an
H200 and (all but held) an H100 (tests/test_cuda.py), where in bf16 at T = 1024 their training step took
0.12-0.80x of cuDNN's time up to H = 1024 for B in {1, 16, 64}; ``backend="auto"`` picks them where the
benchmark shows that (:func:`rnnlab.layers.resolve_backend`).
Zoneout and recurrent dropout (rnnlab.recurrence.variants) run inside every regime from draws made before the
launch (the ``masks`` argument; constexpr flags DROP, ZONE, ZONE_C, so the plain kernels compile as before):
the product takes h times the dropout mask, and the new h (and c) is moved towards the previous one by
zoneout's weights; the backward splits the gradient the same way. Layer norm (NORM) runs in the persistent
regime, where one program holds every gate of its rows: the input projections come normalised, each step
normalises the recurrent product and the LSTM's cell state (dispatch.MAX_NORM_H has the sizes).
Set ``TRITON_INTERPRET=1`` before importing torch (which imports Triton, which reads it) to run the kernels on
the CPU.
"""

from .gru import gru_fused, gru_scan_triton
from .lstm import lstm_fused, lstm_scan_triton
from .rnn import rnn_fused, rnn_scan_triton

# the names rnnlab.recurrence uses, so a layer can take either module
lstm_scan, gru_scan, rnn_scan = lstm_scan_triton, gru_scan_triton, rnn_scan_triton

__all__ = [
    "gru_fused",
    "gru_scan",
    "gru_scan_triton",
    "lstm_fused",
    "lstm_scan",
    "lstm_scan_triton",
    "rnn_fused",
    "rnn_scan",
    "rnn_scan_triton",
]
