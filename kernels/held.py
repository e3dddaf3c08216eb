"""The held regime: an inference forward whose W_hh stays in registers as tensor-core operands.

One program takes NB = 8 batch rows of a layer direction for the whole sequence and holds every gate block of
W_hh (H, H) as the A operand of ``mma.sync`` (m16n8k16) in registers, loaded once before the time loop, so a
step reads no weight from shared memory: the product is the transposed one, gate pre-activations
(H units, NB rows) = W_g (H, H) @ h^T (H, NB), each warp 16 units, then the cell's own step (lstm._lstm_cell,
gru._gru_cell: the same math and stores as every other regime; the LSTM's and GRU's input projections loaded a
step ahead, as the vector regime's), and h goes back to the B operand through shared memory. A batch of fewer
than 8 rows costs what 8 do: the instruction's N is 8 anyway.

Beyond one SM's registers (the LSTM and GRU past H = 128) the units split over programs of 32 (a batch tile's
H / 32 programs, all resident at once, a cooperative launch), each holding its units of every gate block over all H
inputs. A step multiplies them with the whole h, read from the exchange buffer the split vector regime uses
(common.vector_buffers: at the barrier, or flagged words), stages the product in shared memory so that a unit's
gates meet in one thread, runs the cell's step and writes its units of the new h back (common.vector_exchange).

Triton's tl.dot cannot hold a loop-invariant operand in registers (it keeps W_hh in shared memory and loads it
every step: dispatch.py), so these kernels are written in Gluon, Triton's explicit-layout language, which the
interpreter does not run: under TRITON_INTERPRET=1 they are cross-compiled (fit.py), and the one-program kernels
run against the reference with Gluon's calls replaced by triton.language's and the layouts dropped
(tests/held_interpreted.py), which checks their indexing, masks and steps but not the layouts or the tensor-core
instructions: those are checked on a GPU only (tests/test_cuda.py), as are the split kernels, which wait on each
other. An H200 passed those and timed the held forward faster than every other regime at H = 64-256 (B = 1 and
16), so the dispatcher picks it for the LSTM and GRU there (dispatch.AUTO_HELD_H).

Cross-compiled (fit.py; Triton 3.6, the GPU machine's, and 3.9; sm_80 and sm_90; fp16 and bf16) every size up to
dispatch.MAX_HELD_H fits without spills, its shared memory only h's staging. A warp's step (sm_90, bf16, fit.py
--loop, Triton 3.6): the LSTM at 128 issues 345 instructions (32 HMMA, no shared-memory load of W_hh), the GRU 284,
the RNN at 256 137. With 8, 8 and 16 warps over 4 schedulers that is 690, 568 and 548 issue cycles a step, about
0.3-0.4 us at 1.83 GHz, against 1.2-1.45 us that the H100 measured for the split vector regime's step at H = 128;
with one or two warps a scheduler the instructions' latencies may add to it. Estimates until a GPU times them.
"""

from __future__ import annotations

import triton.language as tl
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.ampere import mma_v2

from .common import flagged_values, vector_exchange
from .dispatch import HELD_ROWS
from .gru import _gru_cell, _gru_inputs
from .lstm import _lstm_cell, _lstm_inputs
from .rnn import _rnn_cell

NB: gl.constexpr = gl.constexpr(HELD_ROWS)  # batch rows a program


@gluon.constexpr_function
def _accumulator(warps):
    """The product's accumulator layout: ``warps`` warps of 16 units each (m16n8k16's M; dispatch.HELD_UNITS), over
    NB rows (its N)."""
    return gl.NVMMADistributedLayout(version=[2, 0], warps_per_cta=[warps, 1], instr_shape=[16, 8])


@gluon.constexpr_function
def _operand_layout(index, warps):
    """The layout of the product's A (``index`` 0: W_hh's block) or B (1: h^T) operand."""
    return gl.DotOperandLayout(operand_index=index, parent=_accumulator(warps), k_width=2)


@gluon.jit
def _block(W, gate: gl.constexpr, H, BLOCK_H: gl.constexpr):
    """Gate block ``gate`` of a stacked W (gates * H, H), (BLOCK_H, BLOCK_H) zero-padded, as the product's A operand:
    loaded once, held in registers."""
    layout: gl.constexpr = _operand_layout(0, gl.num_warps())
    m = gl.arange(0, BLOCK_H, layout=gl.SliceLayout(1, layout))[:, None]
    k = gl.arange(0, BLOCK_H, layout=gl.SliceLayout(0, layout))[None, :]
    return gl.load(W + (gate * H + m) * H + k, mask=(m < H) & (k < H), other=0.0)


@gluon.jit
def _rows(LEN, B, BLOCK: gl.constexpr, SPLIT: gl.constexpr = False):
    """The program's BLOCK units (BLOCK, 1) (with SPLIT its tile program_id(1) of them), batch rows (1, NB) int64,
    their lengths (1, NB) (0 past B) and the longest; in the accumulator's layout, or with SPLIT _split_layout."""
    if SPLIT:
        layout: gl.constexpr = _split_layout(gl.num_warps())
        first = gl.program_id(1) * BLOCK
    else:
        layout: gl.constexpr = _accumulator(gl.num_warps())
        first = 0
    u = first + gl.arange(0, BLOCK, layout=gl.SliceLayout(1, layout))[:, None]
    b = gl.program_id(0) * NB + gl.arange(0, NB, layout=gl.SliceLayout(0, layout))
    length = gl.load(LEN + b, mask=b < B, other=0)
    return u, b.to(gl.int64)[None, :], length[None, :], gl.max(length, axis=0)


@gluon.jit
def _state(X0, u, b, B, H):
    """The program's (BLOCK_H, NB) slice of a state X0 (B, H), transposed, in fp32, zero-padded (_rows' u and b)."""
    return gl.load(X0 + b * H + u, mask=(u < H) & (b < B), other=0.0).to(gl.float32)


@gluon.jit
def _store_state(XN, x, u, b, B, H):
    """The final state ``x`` (BLOCK_H, NB) to its rows of XN (B, H)."""
    gl.store(XN + b * H + u, x, mask=(u < H) & (b < B))


@gluon.jit
def _step(s, u, b, length, B, H, REVERSE: gl.constexpr):
    """Step ``s`` of rows ``b`` (1, NB): each row's time index times B plus the row (the reverse direction from each
    row's last step; 0 for rows already finished) and which (unit, row) pairs are still active (BLOCK_H, NB)."""
    if REVERSE:
        t = length - 1 - s
    else:
        t = gl.zeros_like(length) + s
    live = s < length
    t = gl.where(live, t, 0).to(gl.int64)
    return t * B + b, live & (u < H)


@gluon.jit
def _steps(s, u, b, length, B, H, REVERSE: gl.constexpr):
    """_step for step ``s`` and for s + 1, whose input projections a step loads ahead (they do not depend on h, and
    loaded in the step they would put a global load's latency on its path)."""
    row, live = _step(s, u, b, length, B, H, REVERSE)
    next_row, next_live = _step(s + 1, u, b, length, B, H, REVERSE)
    return row, live, next_row, next_live


@gluon.jit
def _product(w, h, W):
    """The recurrent product of a held block ``w`` (_block's or _split_block's, (M, K)) with h (K, NB) fp32, rounded
    to W's type and moved to the B operand's layout (through shared memory; for several blocks the compiler moves it
    once): (M, NB) fp32 in the accumulator's layout."""
    operand = gl.convert_layout(h.to(W.dtype.element_ty), _operand_layout(1, gl.num_warps()))
    return mma_v2(w, operand, gl.zeros([w.shape[0], NB], gl.float32, _accumulator(gl.num_warps())))


@gluon.jit
def _lstm_fwd_held_kernel(GX, W, H0, C0, LEN, Y, HN, CN, B, H, REVERSE: gl.constexpr, BLOCK_H: gl.constexpr):
    # GX (T, B, 4H) the input projections with both biases; W (4H, H) W_hh; H0, C0, HN, CN (B, H); Y (T, B, H)
    w_i, w_f, w_g, w_o = (_block(W, 0, H, BLOCK_H), _block(W, 1, H, BLOCK_H), _block(W, 2, H, BLOCK_H),
                          _block(W, 3, H, BLOCK_H))
    u, b, length, steps = _rows(LEN, B, BLOCK_H)
    h, c = _state(H0, u, b, B, H), _state(C0, u, b, B, H)  # (BLOCK_H, NB) each
    row, live = _step(0, u, b, length, B, H, REVERSE)
    x_i, x_f, x_g, x_o = _lstm_inputs(GX, row * (4 * H) + u, H, live, gl.float32)
    for s in range(0, steps):
        row, live, next_row, next_live = _steps(s, u, b, length, B, H, REVERSE)
        n_i, n_f, n_g, n_o = _lstm_inputs(GX, next_row * (4 * H) + u, H, next_live, gl.float32)
        h_new, c_new = _lstm_cell(_product(w_i, h, W) + x_i, _product(w_f, h, W) + x_f, _product(w_g, h, W) + x_g,
                                  _product(w_o, h, W) + x_o, Y, row * H + u, Y, Y, 0, H, 0, c, live, False)
        h = gl.where(live, h_new, h)  # a finished row keeps its last state
        c = gl.where(live, c_new, c)
        x_i, x_f, x_g, x_o = n_i, n_f, n_g, n_o
    _store_state(HN, h, u, b, B, H)
    _store_state(CN, c, u, b, B, H)


@gluon.jit
def _gru_fwd_held_kernel(GX, W, BHH, H0, LEN, Y, HN, B, H, REVERSE: gl.constexpr, BLOCK_H: gl.constexpr):
    # GX (T, B, 3H) the input projections with b_ih; W (3H, H) W_hh; BHH (3H,) b_hh; H0, HN (B, H); Y (T, B, H)
    w_r, w_z, w_n = _block(W, 0, H, BLOCK_H), _block(W, 1, H, BLOCK_H), _block(W, 2, H, BLOCK_H)
    u, b, length, steps = _rows(LEN, B, BLOCK_H)
    h = _state(H0, u, b, B, H)  # (BLOCK_H, NB)
    row, live = _step(0, u, b, length, B, H, REVERSE)
    x_r, x_z, x_n = _gru_inputs(GX, BHH, row * (3 * H) + u, u, H, live, gl.float32)
    for s in range(0, steps):
        row, live, next_row, next_live = _steps(s, u, b, length, B, H, REVERSE)
        n_r, n_z, n_n = _gru_inputs(GX, BHH, next_row * (3 * H) + u, u, H, next_live, gl.float32)
        h_new = _gru_cell(_product(w_r, h, W), _product(w_z, h, W), _product(w_n, h, W), x_r, x_z, x_n, BHH, u, Y, Y,
                          Y, 0, row * H + u, H, h, live, Y, False, False, False)
        h = gl.where(live, h_new, h)
        x_r, x_z, x_n = n_r, n_z, n_n
    _store_state(HN, h, u, b, B, H)


@gluon.jit
def _rnn_fwd_held_kernel(GX, W, H0, LEN, Y, HN, B, H, RELU: gl.constexpr, REVERSE: gl.constexpr,
                         BLOCK_H: gl.constexpr):
    # GX (T, B, H) the input projections with both biases; W (H, H) W_hh; H0, HN (B, H); Y (T, B, H)
    w = _block(W, 0, H, BLOCK_H)
    u, b, length, steps = _rows(LEN, B, BLOCK_H)
    h = _state(H0, u, b, B, H)  # (BLOCK_H, NB)
    for s in range(0, steps):
        row, live = _step(s, u, b, length, B, H, REVERSE)
        h = gl.where(live, _rnn_cell(GX, Y, Y, row * H + u, u, _product(w, h, W), h, live, Y, False, RELU, False), h)
    _store_state(HN, h, u, b, B, H)


@gluon.jit
def _split_block(W, GATES: gl.constexpr, H, BLOCK_U: gl.constexpr, BLOCK_K: gl.constexpr):
    """Split over programs: this program's BLOCK_U units (tile program_id(1)) of every gate block of a stacked W
    (GATES * H, H), stacked gate by gate in four (BLOCK_U, BLOCK_K) blocks (zero past GATES, units and H), as the
    product's A operand, held in registers."""
    layout: gl.constexpr = _operand_layout(0, gl.num_warps())
    r = gl.arange(0, 4 * BLOCK_U, layout=gl.SliceLayout(1, layout))[:, None]
    k = gl.arange(0, BLOCK_K, layout=gl.SliceLayout(0, layout))[None, :]
    gate, unit = r // BLOCK_U, gl.program_id(1) * BLOCK_U + r % BLOCK_U
    return gl.load(W + (gate * H + unit) * H + k, mask=(gate < GATES) & (unit < H) & (k < H), other=0.0)


@gluon.constexpr_function
def _split_layout(warps):
    """The layout of a split program's (BLOCK_U, NB) tiles: gates, states and what they load and store."""
    return gl.BlockedLayout([1, 1], [4, 8], [warps, 1], [1, 0])


@gluon.jit
def _split_product(w, HQ, s, B, H, W, BLOCK_K: gl.constexpr, FLAGGED: gl.constexpr):
    """Step ``s``'s recurrent product of a split program's held block ``w`` (_split_block's) with the whole h of its
    rows, read from slot s % 2 of the (2, B, H) exchange buffer HQ (common.vector_buffers'; with FLAGGED its tagged
    words, common.flagged_values) in a plain layout: (4 BLOCK_U, NB) fp32 in the accumulator's layout (_product)."""
    layout: gl.constexpr = gl.BlockedLayout([4, 1], [8, 4], [gl.num_warps(), 1], [0, 1])
    k = gl.arange(0, BLOCK_K, layout=gl.SliceLayout(1, layout))[:, None]
    rows = gl.program_id(0) * NB + gl.arange(0, NB, layout=gl.SliceLayout(0, layout))[None, :]
    mask = (k < H) & (rows < B)
    if FLAGGED:
        h = flagged_values(HQ, s, rows.to(gl.int64), B, H, k, mask)
    else:
        h = gl.load(HQ + ((s % 2) * B + rows.to(gl.int64)) * H + k, mask=mask, other=0.0, cache_modifier=".cg")
    return _product(w, h, W)


@gluon.jit
def _split_gate(gates, gate: gl.constexpr, BLOCK_U: gl.constexpr):
    """Gate ``gate``'s (BLOCK_U, NB) tile of a split product staged in shared memory (``gates``), in _split_layout."""
    return gates.slice(gate * BLOCK_U, BLOCK_U).load(_split_layout(gl.num_warps()))


@gluon.jit
def _lstm_fwd_held_split_kernel(GX, W, H0, C0, LEN, Y, HN, CN, HQ, COUNT, B, H, REVERSE: gl.constexpr,
                                BLOCK_U: gl.constexpr, BLOCK_K: gl.constexpr, GRID_SYNC: gl.constexpr,
                                FLAGGED: gl.constexpr):
    # The held regime split over programs (grid: batch tiles of NB rows, H / BLOCK_U programs each): program (i, j)
    # holds units j * BLOCK_U.. of the four gate blocks; each step it multiplies them with the whole h (HQ: h_0 in
    # slot 0), stages the product in shared memory to bring a unit's gates to one thread, runs the cell's step and
    # exchanges its units of h with the tile's other programs. GX (T, B, 4H); W (4H, H); H0, C0, HN, CN (B, H)
    w = _split_block(W, 4, H, BLOCK_U, BLOCK_K)  # (4 BLOCK_U, BLOCK_K)
    u, b, length, steps = _rows(LEN, B, BLOCK_U, True)
    h, c = _state(H0, u, b, B, H), _state(C0, u, b, B, H)  # (BLOCK_U, NB) each
    gates = gl.allocate_shared_memory(gl.float32, [4 * BLOCK_U, NB], gl.SwizzledSharedLayout(1, 1, 1, [1, 0]))
    row, live = _step(0, u, b, length, B, H, REVERSE)
    x_i, x_f, x_g, x_o = _lstm_inputs(GX, row * (4 * H) + u, H, live, gl.float32)
    for s in range(0, steps):
        row, live, next_row, next_live = _steps(s, u, b, length, B, H, REVERSE)
        n_i, n_f, n_g, n_o = _lstm_inputs(GX, next_row * (4 * H) + u, H, next_live, gl.float32)
        product = _split_product(w, HQ, s, B, H, W, BLOCK_K, FLAGGED)
        tl.debug_barrier()  # the last step's gates are read
        gates.store(product)
        tl.debug_barrier()
        h_new, c_new = _lstm_cell(_split_gate(gates, 0, BLOCK_U) + x_i, _split_gate(gates, 1, BLOCK_U) + x_f,
                                  _split_gate(gates, 2, BLOCK_U) + x_g, _split_gate(gates, 3, BLOCK_U) + x_o, Y,
                                  row * H + u, Y, Y, 0, H, 0, c, live, False)
        h = gl.where(live, h_new, h)
        c = gl.where(live, c_new, c)
        vector_exchange(h, HQ, COUNT, gl.program_id(0), s, b, B, H, u, (u < H) & (b < B), GRID_SYNC, FLAGGED)
        x_i, x_f, x_g, x_o = n_i, n_f, n_g, n_o
    _store_state(HN, h, u, b, B, H)
    _store_state(CN, c, u, b, B, H)


@gluon.jit
def _gru_fwd_held_split_kernel(GX, W, BHH, H0, LEN, Y, HN, HQ, COUNT, B, H, REVERSE: gl.constexpr,
                               BLOCK_U: gl.constexpr, BLOCK_K: gl.constexpr, GRID_SYNC: gl.constexpr,
                               FLAGGED: gl.constexpr):
    # As _lstm_fwd_held_split_kernel, with the r, z and n blocks (the fourth zero). GX (T, B, 3H); W (3H, H);
    # BHH (3H,); H0, HN (B, H)
    w = _split_block(W, 3, H, BLOCK_U, BLOCK_K)  # (4 BLOCK_U, BLOCK_K)
    u, b, length, steps = _rows(LEN, B, BLOCK_U, True)
    h = _state(H0, u, b, B, H)  # (BLOCK_U, NB)
    gates = gl.allocate_shared_memory(gl.float32, [4 * BLOCK_U, NB], gl.SwizzledSharedLayout(1, 1, 1, [1, 0]))
    row, live = _step(0, u, b, length, B, H, REVERSE)
    x_r, x_z, x_n = _gru_inputs(GX, BHH, row * (3 * H) + u, u, H, live, gl.float32)
    for s in range(0, steps):
        row, live, next_row, next_live = _steps(s, u, b, length, B, H, REVERSE)
        n_r, n_z, n_n = _gru_inputs(GX, BHH, next_row * (3 * H) + u, u, H, next_live, gl.float32)
        product = _split_product(w, HQ, s, B, H, W, BLOCK_K, FLAGGED)
        tl.debug_barrier()  # the last step's gates are read
        gates.store(product)
        tl.debug_barrier()
        p_r, p_z, p_n = (_split_gate(gates, 0, BLOCK_U), _split_gate(gates, 1, BLOCK_U),
                         _split_gate(gates, 2, BLOCK_U))
        h_new = _gru_cell(p_r, p_z, p_n, x_r, x_z, x_n, BHH, u, Y, Y, Y, 0, row * H + u, H, h, live, Y, False, False,
                          False)
        h = gl.where(live, h_new, h)
        vector_exchange(h, HQ, COUNT, gl.program_id(0), s, b, B, H, u, (u < H) & (b < B), GRID_SYNC, FLAGGED)
        x_r, x_z, x_n = n_r, n_z, n_n
    _store_state(HN, h, u, b, B, H)
