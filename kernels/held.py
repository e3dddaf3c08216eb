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
(common.vector_buffers: at the barrier, or flagged words), in dispatch.HELD_SPLIT_CHAINS independent chains of
tensor-core products a warp (_split_product), stages the product in shared memory so that a unit's
gates meet in one thread, runs the cell's step and writes its units of the new h back (common.vector_exchange).
Forced on sm_90 (dispatch.EXCHANGES' "cluster" and "cluster-async"), a batch tile's programs form a thread-block
cluster instead and exchange h through each other's shared memory, at the cluster's barrier or counted by mbarriers
(_cluster_put, _cluster_read; launch_split launches them).

Triton's tl.dot cannot hold a loop-invariant operand in registers (it keeps W_hh in shared memory and loads it
every step: dispatch.py), so these kernels are written in Gluon, Triton's explicit-layout language, which the
interpreter does not run: under TRITON_INTERPRET=1 they are cross-compiled (fit.py), and they run against the
reference with Gluon's calls replaced by triton.language's and the layouts dropped (tests/held_interpreted.py; the
split kernels' programs in threads, the cluster exchanges' PTX emulated), which checks their indexing, masks, steps
and exchanges but not the layouts, the tensor-core instructions or the GPU's memory model: those are checked on a
GPU only (tests/test_cuda.py). An H200 passed those (the cluster exchanges not yet run) and timed the held forward
faster than every other regime at H = 64-256 (B = 1 and 16), so the dispatcher picks it for the LSTM and GRU up to
128 (dispatch.AUTO_HELD_H); the split kernels have changed since that run (the product's chains), and the dispatcher
picks them again at 256 once a GPU has checked them.

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
def _rows(LEN, B, BLOCK: gl.constexpr, SPLIT: gl.constexpr = False, tile=0, part=0):
    """The program's BLOCK units (BLOCK, 1) (with SPLIT its ``part`` of them, of batch tile ``tile``: _split_ids),
    batch rows (1, NB) int64, their lengths (1, NB) (0 past B) and the longest; in the accumulator's layout, or with
    SPLIT _split_layout."""
    if SPLIT:
        layout: gl.constexpr = _split_layout(gl.num_warps())
    else:
        layout: gl.constexpr = _accumulator(gl.num_warps())
        tile = gl.program_id(0)
    u = part * BLOCK + gl.arange(0, BLOCK, layout=gl.SliceLayout(1, layout))[:, None]
    b = tile * NB + gl.arange(0, NB, layout=gl.SliceLayout(0, layout))
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
def _split_ids(H, BLOCK_U: gl.constexpr, CLUSTER: gl.constexpr):
    """A split program's batch tile and which BLOCK_U units of it it takes (its part): program (tile, part) of a
    (tiles, H / BLOCK_U) grid, or with CLUSTER program tile * parts + part of a one-dimensional one, whose parts
    form a thread-block cluster (launch_split)."""
    if CLUSTER:
        parts = H // BLOCK_U
        return gl.program_id(0) // parts, gl.program_id(0) % parts
    return gl.program_id(0), gl.program_id(1)


@gluon.jit
def _split_blocks(W, GATES: gl.constexpr, H, part, BLOCK_U: gl.constexpr, BLOCK_K: gl.constexpr, CHAINS: gl.constexpr):
    """Split over programs: this program's BLOCK_U units (its ``part``) of every gate block of a stacked W
    (GATES * H, H), stacked gate by gate in 4 BLOCK_U rows (zero past GATES, units and H), as the product's A operand,
    held in registers: a tuple of CHAINS blocks (4 BLOCK_U, BLOCK_K / CHAINS), each a run of the inputs
    (_split_product)."""
    RUN: gl.constexpr = BLOCK_K // CHAINS
    gl.static_assert(RUN % 16 == 0, "a chain's run of inputs takes whole slices of m16n8k16's K")
    layout: gl.constexpr = _operand_layout(0, gl.num_warps())
    r = gl.arange(0, 4 * BLOCK_U, layout=gl.SliceLayout(1, layout))[:, None]
    gate, unit = r // BLOCK_U, part * BLOCK_U + r % BLOCK_U
    blocks = ()
    for chain in gl.static_range(CHAINS):
        k = chain * RUN + gl.arange(0, RUN, layout=gl.SliceLayout(0, layout))[None, :]
        block = gl.load(W + (gate * H + unit) * H + k, mask=(gate < GATES) & (unit < H) & (k < H), other=0.0)
        blocks = blocks + (block,)  # noqa: RUF005 (Triton's frontend concatenates tuples, it does not unpack them)
    return blocks


@gluon.jit
def _split_buffers(W, BLOCK_U: gl.constexpr, BLOCK_K: gl.constexpr):
    """A split program's shared memory for its steps: h (BLOCK_K, NB) in W's type, the product's B operand, each row's
    units contiguous and their 16-byte runs swizzled by row (ldmatrix then reads a matrix's 8 rows from 8 different
    banks), and the product (4 BLOCK_U, NB) fp32, to bring a unit's gates to one thread (_split_gate)."""
    staged = gl.allocate_shared_memory(W.dtype.element_ty, [BLOCK_K, NB], gl.SwizzledSharedLayout(8, 1, 8, [0, 1]))
    gates = gl.allocate_shared_memory(gl.float32, [4 * BLOCK_U, NB], gl.SwizzledSharedLayout(1, 1, 1, [1, 0]))
    return staged, gates


@gluon.constexpr_function
def _split_layout(warps):
    """The layout of a split program's (BLOCK_U, NB) tiles: gates, states and what they load and store."""
    return gl.BlockedLayout([1, 1], [4, 8], [warps, 1], [1, 0])


@gluon.jit
def _split_h(HQ, s, tile, B, H, BLOCK_U: gl.constexpr, BLOCK_K: gl.constexpr, FLAGGED: gl.constexpr,
             CLUSTER: gl.constexpr):
    """The whole h (BLOCK_K, NB) fp32 of a split program's batch ``tile`` entering step ``s``, in a plain layout: from
    slot s % 2 of the (2, B, H) exchange buffer HQ (common.vector_buffers'; with FLAGGED its tagged words,
    common.flagged_values), or with CLUSTER from the program's own shared memory (_cluster_read)."""
    layout: gl.constexpr = gl.BlockedLayout([4, 1], [8, 4], [gl.num_warps(), 1], [0, 1])
    k = gl.arange(0, BLOCK_K, layout=gl.SliceLayout(1, layout))[:, None]
    r = gl.arange(0, NB, layout=gl.SliceLayout(0, layout))[None, :]
    rows = tile * NB + r
    mask = (k < H) & (rows < B)
    if CLUSTER:
        h = _cluster_read(s, k, r, H, BLOCK_U, BLOCK_K, CLUSTER)
    elif FLAGGED:
        h = flagged_values(HQ, s, rows.to(gl.int64), B, H, k, mask)
    else:
        h = gl.load(HQ + ((s % 2) * B + rows.to(gl.int64)) * H + k, mask=mask, other=0.0, cache_modifier=".cg")
    return h


@gluon.jit
def _split_product(w, staged, HQ, s, tile, B, H, W, BLOCK_K: gl.constexpr, FLAGGED: gl.constexpr,
                   CLUSTER: gl.constexpr):
    """Step ``s``'s recurrent product of a split program's held blocks ``w`` (_split_blocks') with the whole h of its
    batch tile's rows (_split_h), rounded to W's type and staged in shared memory (``staged``: _split_buffers') as the
    B operand: (4 BLOCK_U, NB) fp32 in the accumulator's layout. Each block's products accumulate its own run of the
    inputs, and the runs are summed at the end: a warp's tensor-core products form as many independent chains, which
    issue back to back, instead of one over all of K in which each waits for the last (dispatch.HELD_SPLIT_CHAINS)."""
    RUN: gl.constexpr = BLOCK_K // len(w)
    staged.store(_split_h(HQ, s, tile, B, H, w[0].shape[0] // 4, BLOCK_K, FLAGGED, CLUSTER).to(W.dtype.element_ty))
    tl.debug_barrier()  # h is staged, and every thread has read the last step's gates, which the caller overwrites
    operand: gl.constexpr = _operand_layout(1, gl.num_warps())
    zero = gl.zeros([w[0].shape[0], NB], gl.float32, _accumulator(gl.num_warps()))
    product = mma_v2(w[0], staged.slice(0, RUN).load(operand), zero)
    for chain in gl.static_range(1, len(w)):
        product += mma_v2(w[chain], staged.slice(chain * RUN, RUN).load(operand), zero)
    return product


@gluon.jit
def _split_gate(gates, gate: gl.constexpr, BLOCK_U: gl.constexpr):
    """Gate ``gate``'s (BLOCK_U, NB) tile of a split product staged in shared memory (``gates``), in _split_layout."""
    return gates.slice(gate * BLOCK_U, BLOCK_U).load(_split_layout(gl.num_warps()))


@gluon.jit
def _stored_by_cell(live, CLUSTER: gl.constexpr):
    """Which (unit, row) pairs of a split step the cell's step code stores to Y: the ``live`` ones, or with CLUSTER
    none: _split_exchange stores them after the exchange, so that they have the next step's math to reach L2 before
    CLUSTER 1's next barrier (its release, MEMBAR.ALL.GPU in the SASS) waits for them."""
    if CLUSTER:
        return live & False
    return live


@gluon.jit
def _split_exchange(h, HQ, COUNT, tile, s, steps, u, b, B, H, Y, y_off, live, BLOCK_U: gl.constexpr,
                    BLOCK_K: gl.constexpr, GRID_SYNC: gl.constexpr, FLAGGED: gl.constexpr, CLUSTER: gl.constexpr):
    """End of a split program's step ``s`` of ``steps``: its units ``u`` (BLOCK_U, 1) of the new h (BLOCK_U, NB) of
    rows ``b`` (1, NB) go to the batch tile's other programs, through HQ (common.vector_exchange: at the grid barrier,
    or flagged) or with CLUSTER into every shared memory of the program's cluster (_cluster_put; not after the last
    step, which no program reads and whose writes could reach a program that has exited), and then to Y at ``y_off``
    where ``live`` (_stored_by_cell)."""
    if CLUSTER:
        if s + 1 < steps:
            _cluster_put(h, s, u, H, BLOCK_U, BLOCK_K, CLUSTER)
        gl.store(Y + y_off, h.to(Y.dtype.element_ty), mask=live)
    else:
        vector_exchange(h, HQ, COUNT, tile, s, b, B, H, u, (u < H) & (b < B), GRID_SYNC, FLAGGED)


# The cluster exchanges (CLUSTER; sm_90, forced only: dispatch.EXCHANGES). A batch tile's split programs form one
# thread-block cluster (launch_split), and each keeps a (2, BLOCK_K, NB) fp32 exchange buffer and two mbarriers at the
# end of its dynamic shared memory, past what Triton allocates. A step's program writes its units of h into slot
# (s + 1) % 2 of every buffer of its cluster (distributed shared memory: to the address mapa gives for each CTA rank),
# and the next step reads the whole h from its own buffer once it has come:
# - CLUSTER 1 ("cluster"): the writes are st.shared::cluster, and the cluster meets at its hardware barrier
#   (barrier.cluster, release / acquire: the writes are visible after it). A program writes slot (s + 1) % 2 again
#   only at step s + 2, after the barrier of step s + 1, which no program passes before every program has read that
#   slot at step s + 1 (the arrive's release orders its earlier loads). The release compiles to MEMBAR.ALL.GPU (sm_90
#   SASS), which waits for every store the program has in flight, so the step's output goes to Y after the barrier
#   (_stored_by_cell).
# - CLUSTER 2 ("cluster-async"): the writes are st.async, each counted off (complete_tx) the receiver's mbarrier of
#   that slot, which the receiver armed to expect the whole h (arrive.expect_tx, H * NB * 4 bytes); a program waits
#   for its slot's phase (try_wait.parity: the slot's n-th step, n % 2; acquire at cluster scope, pairing with the
#   writers' complete_tx, at no cost in the SASS) and arms it again, with no barrier, no fence and no wait for the
#   others besides their data (the mbarrier wait of a TMA pipeline). A program writes slot (s + 1) % 2 again at step
#   s + 2 only after it has waited for every program's h of step s + 1, which each sent after reading that slot at
#   step s + 1. Every write of a phase comes after the receiver armed it: the receiver arms a slot again at step s
#   before its own put of step s, which each writer of that phase (the puts of step s + 1) has waited for; the
#   first arms come before the cluster first meets. A program exits after its last step's wait, which took every
#   write sent to it (the last step sends nothing), so no write reaches a program that has exited.
# Triton 3.6's own cross-CTA layout conversions fail to lower (nvvm.mapa given a shared-space pointer; 3.9 lowers
# them), so these are PTX: inline assembly on tensors of one element a thread (_split_layout's (BLOCK_U, NB) at 8
# warps), whose .aligned barriers every thread reaches.


@gluon.constexpr_function
def exchange_bytes(block_k):
    """The bytes at the end of a cluster program's shared memory: two slots of (BLOCK_K, NB) fp32, then an 8-byte
    mbarrier a slot."""
    return 2 * block_k * HELD_ROWS * 4 + 16


@gluon.jit
def _shared_end(like):
    """The end of the program's dynamic shared memory (a 32-bit address in the CTA's window), shaped as ``like``."""
    return gl.inline_asm_elementwise("{ .reg .u32 size; mov.u32 $0, global_smem; mov.u32 size, %dynamic_smem_size; "
                                     "add.u32 $0, $0, size; }", "=r,r", [like * 0], dtype=gl.int32, is_pure=True,
                                     pack=1)


@gluon.jit
def _exchange_address(slot, k, r, BLOCK_K: gl.constexpr):
    """The shared-memory addresses (32-bit, the CTA's window) of units ``k`` and batch-tile rows ``r`` (broadcast
    together) in ``slot`` of the program's exchange buffer, which launch_split adds to what the kernel allocates."""
    return _shared_end(k + r) - exchange_bytes(BLOCK_K) + ((slot * BLOCK_K + k) * NB + r) * 4


@gluon.jit
def _slot_barrier(slot, like):
    """The address of ``slot``'s mbarrier (CLUSTER 2), shaped as ``like``."""
    return _shared_end(like) - 16 + slot * 8


@gluon.jit
def _first_thread(BLOCK_U: gl.constexpr):
    """A (BLOCK_U, NB) tile in _split_layout (one element a thread) that is 0 in one thread only: which arms the
    mbarriers."""
    layout: gl.constexpr = _split_layout(gl.num_warps())
    gl.static_assert(32 * gl.num_warps() == BLOCK_U * NB, "the cluster exchange's PTX takes one element a thread")
    return (gl.arange(0, BLOCK_U, layout=gl.SliceLayout(1, layout))[:, None] * NB
            + gl.arange(0, NB, layout=gl.SliceLayout(0, layout))[None, :])


@gluon.jit
def _arm(slot, H, BLOCK_U: gl.constexpr):
    """One thread's arrival on ``slot``'s mbarrier, expecting the whole h of the batch tile (H * NB fp32) to come."""
    first = _first_thread(BLOCK_U)
    gl.inline_asm_elementwise("{ .reg .pred p; .reg .b64 state; setp.eq.s32 p, $1, 0; "
                              "@p mbarrier.arrive.expect_tx.shared::cta.b64 state, [$2], $3; mov.u32 $0, 0; }",
                              "=r,r,r,r", [first, _slot_barrier(slot, first), first * 0 + H * NB * 4],
                              dtype=gl.int32, is_pure=False, pack=1)


@gluon.jit
def _cluster_barrier(like):
    """Every thread of the cluster meets here (``like``: one element a thread; .aligned: every thread of every warp
    arrives, once or, with a few elements a thread, a few times alike), its writes before it visible after it."""
    gl.inline_asm_elementwise("barrier.cluster.arrive.release.aligned; barrier.cluster.wait.acquire.aligned; "
                              "mov.u32 $0, 0;", "=r,r", [like], dtype=gl.int32, is_pure=False, pack=1)


@gluon.jit
def _cluster_start(h, u, H, BLOCK_U: gl.constexpr, BLOCK_K: gl.constexpr, CLUSTER: gl.constexpr):
    """Before a cluster's first step: with CLUSTER 2 both slots' mbarriers initialised (one arrival a phase) and
    armed; the cluster met, so that no write reaches a program that has not started (CUDA asks for that before any
    access to another block's shared memory) or a barrier not yet initialised; then h_0 (``h``, units ``u``) into
    slot 0 everywhere."""
    first = _first_thread(BLOCK_U)
    if CLUSTER == 2:
        for slot in gl.static_range(2):
            gl.inline_asm_elementwise("{ .reg .pred p; setp.eq.s32 p, $1, 0; @p mbarrier.init.shared::cta.b64 [$2], 1; "
                                      "mov.u32 $0, 0; }", "=r,r,r", [first, _slot_barrier(slot, first)],
                                      dtype=gl.int32, is_pure=False, pack=1)
            _arm(slot, H, BLOCK_U)
        gl.inline_asm_elementwise("fence.mbarrier_init.release.cluster; mov.u32 $0, 0;", "=r,r", [first],
                                  dtype=gl.int32, is_pure=False, pack=1)  # the initialisations, for the cluster
    _cluster_barrier(first)
    _cluster_put(h, -1, u, H, BLOCK_U, BLOCK_K, CLUSTER)


@gluon.jit
def _cluster_put(h, s, u, H, BLOCK_U: gl.constexpr, BLOCK_K: gl.constexpr, CLUSTER: gl.constexpr):
    """A cluster program's units ``u`` (BLOCK_U, 1) of h (BLOCK_U, NB) after step ``s`` (-1: the initial state) into
    slot (s + 1) % 2 of every exchange buffer of its cluster (its own included); with CLUSTER 1 then the cluster's
    barrier, with 2 each write counted off its receiver's mbarrier of that slot."""
    r = gl.arange(0, NB, layout=gl.SliceLayout(0, _split_layout(gl.num_warps())))[None, :]
    slot = (s + 1) % 2
    address = _exchange_address(slot, u, r, BLOCK_K)
    for rank in range(0, H // BLOCK_U):
        if CLUSTER == 2:
            gl.inline_asm_elementwise("{ .reg .u32 remote, bar; mapa.shared::cluster.u32 remote, $1, $2; "
                                      "mapa.shared::cluster.u32 bar, $3, $2; "
                                      "st.async.shared::cluster.mbarrier::complete_tx::bytes.b32 [remote], $4, [bar]; "
                                      "mov.u32 $0, 0; }", "=r,r,r,r,f",
                                      [address, address * 0 + rank, _slot_barrier(slot, address), h], dtype=gl.int32,
                                      is_pure=False, pack=1)
        else:
            gl.inline_asm_elementwise("{ .reg .u32 remote; mapa.shared::cluster.u32 remote, $1, $2; "
                                      "st.shared::cluster.f32 [remote], $3; mov.u32 $0, 0; }", "=r,r,r,f",
                                      [address, address * 0 + rank, h], dtype=gl.int32, is_pure=False, pack=1)
    if CLUSTER == 1:
        _cluster_barrier(address)


@gluon.jit
def _cluster_read(s, k, r, H, BLOCK_U: gl.constexpr, BLOCK_K: gl.constexpr, CLUSTER: gl.constexpr):
    """The whole h (units ``k`` (BLOCK_K, 1) by batch-tile rows ``r`` (1, NB)) entering step ``s``, from slot s % 2
    of the program's own exchange buffer: with CLUSTER 2 once its mbarrier's phase for the step has completed (every
    thread waits; one then arms the slot for its next use, two steps on). Units past H were never written: their
    words, whatever they hold, do not reach the product (0 * NaN)."""
    if CLUSTER == 2:
        first = _first_thread(BLOCK_U)
        gl.inline_asm_elementwise("{ .reg .pred done; LAB_WAIT: "
                                  "mbarrier.try_wait.parity.acquire.cluster.shared::cta.b64 done, [$1], $2; "
                                  "@!done bra LAB_WAIT; mov.u32 $0, 0; }", "=r,r,r",
                                  [_slot_barrier(s % 2, first), first * 0 + (s // 2) % 2], dtype=gl.int32,
                                  is_pure=False, pack=1)
        _arm(s % 2, H, BLOCK_U)
    words = gl.inline_asm_elementwise("ld.shared.f32 $0, [$1];", "=f,r", [_exchange_address(s % 2, k, r, BLOCK_K)],
                                      dtype=gl.float32, is_pure=False, pack=1)
    return gl.where(k < H, words, 0.0)


@gluon.jit
def _lstm_fwd_held_split_kernel(GX, W, H0, C0, LEN, Y, HN, CN, HQ, COUNT, B, H, REVERSE: gl.constexpr,
                                BLOCK_U: gl.constexpr, BLOCK_K: gl.constexpr, GRID_SYNC: gl.constexpr,
                                FLAGGED: gl.constexpr, CLUSTER: gl.constexpr, CHAINS: gl.constexpr):
    # The held regime split over programs (_split_ids: a batch tile of NB rows, H / BLOCK_U programs each): each
    # holds BLOCK_U units of the four gate blocks; each step it multiplies them with the whole h (HQ: h_0 in slot 0;
    # CLUSTER: its shared memory), stages the product in shared memory to bring a unit's gates to one thread, runs the
    # cell's step and exchanges its units of h with the tile's other programs. GX (T, B, 4H); W (4H, H); H0, C0, HN,
    # CN (B, H)
    tile, part = _split_ids(H, BLOCK_U, CLUSTER)
    w = _split_blocks(W, 4, H, part, BLOCK_U, BLOCK_K, CHAINS)  # CHAINS blocks (4 BLOCK_U, BLOCK_K / CHAINS)
    u, b, length, steps = _rows(LEN, B, BLOCK_U, True, tile, part)
    h, c = _state(H0, u, b, B, H), _state(C0, u, b, B, H)  # (BLOCK_U, NB) each
    if CLUSTER:
        _cluster_start(h, u, H, BLOCK_U, BLOCK_K, CLUSTER)
    staged, gates = _split_buffers(W, BLOCK_U, BLOCK_K)
    row, live = _step(0, u, b, length, B, H, REVERSE)
    x_i, x_f, x_g, x_o = _lstm_inputs(GX, row * (4 * H) + u, H, live, gl.float32)
    for s in range(0, steps):
        row, live, next_row, next_live = _steps(s, u, b, length, B, H, REVERSE)
        n_i, n_f, n_g, n_o = _lstm_inputs(GX, next_row * (4 * H) + u, H, next_live, gl.float32)
        product = _split_product(w, staged, HQ, s, tile, B, H, W, BLOCK_K, FLAGGED, CLUSTER)
        gates.store(product)  # the last step's gates were read before _split_product's barrier
        tl.debug_barrier()
        h_new, c_new = _lstm_cell(_split_gate(gates, 0, BLOCK_U) + x_i, _split_gate(gates, 1, BLOCK_U) + x_f,
                                  _split_gate(gates, 2, BLOCK_U) + x_g, _split_gate(gates, 3, BLOCK_U) + x_o, Y,
                                  row * H + u, Y, Y, 0, H, 0, c, _stored_by_cell(live, CLUSTER), False)
        h = gl.where(live, h_new, h)
        c = gl.where(live, c_new, c)
        _split_exchange(h, HQ, COUNT, tile, s, steps, u, b, B, H, Y, row * H + u, live, BLOCK_U, BLOCK_K, GRID_SYNC,
                        FLAGGED, CLUSTER)
        x_i, x_f, x_g, x_o = n_i, n_f, n_g, n_o
    _store_state(HN, h, u, b, B, H)
    _store_state(CN, c, u, b, B, H)


@gluon.jit
def _gru_fwd_held_split_kernel(GX, W, BHH, H0, LEN, Y, HN, HQ, COUNT, B, H, REVERSE: gl.constexpr,
                               BLOCK_U: gl.constexpr, BLOCK_K: gl.constexpr, GRID_SYNC: gl.constexpr,
                               FLAGGED: gl.constexpr, CLUSTER: gl.constexpr, CHAINS: gl.constexpr):
    # As _lstm_fwd_held_split_kernel, with the r, z and n blocks (the fourth zero). GX (T, B, 3H); W (3H, H);
    # BHH (3H,); H0, HN (B, H)
    tile, part = _split_ids(H, BLOCK_U, CLUSTER)
    w = _split_blocks(W, 3, H, part, BLOCK_U, BLOCK_K, CHAINS)  # CHAINS blocks (4 BLOCK_U, BLOCK_K / CHAINS)
    u, b, length, steps = _rows(LEN, B, BLOCK_U, True, tile, part)
    h = _state(H0, u, b, B, H)  # (BLOCK_U, NB)
    if CLUSTER:
        _cluster_start(h, u, H, BLOCK_U, BLOCK_K, CLUSTER)
    staged, gates = _split_buffers(W, BLOCK_U, BLOCK_K)
    row, live = _step(0, u, b, length, B, H, REVERSE)
    x_r, x_z, x_n = _gru_inputs(GX, BHH, row * (3 * H) + u, u, H, live, gl.float32)
    for s in range(0, steps):
        row, live, next_row, next_live = _steps(s, u, b, length, B, H, REVERSE)
        n_r, n_z, n_n = _gru_inputs(GX, BHH, next_row * (3 * H) + u, u, H, next_live, gl.float32)
        product = _split_product(w, staged, HQ, s, tile, B, H, W, BLOCK_K, FLAGGED, CLUSTER)
        gates.store(product)  # the last step's gates were read before _split_product's barrier
        tl.debug_barrier()
        p_r, p_z, p_n = (_split_gate(gates, 0, BLOCK_U), _split_gate(gates, 1, BLOCK_U),
                         _split_gate(gates, 2, BLOCK_U))
        h_new = _gru_cell(p_r, p_z, p_n, x_r, x_z, x_n, BHH, u, Y, Y, Y, 0, row * H + u, H, h,
                          _stored_by_cell(live, CLUSTER), Y, False, False, False)
        h = gl.where(live, h_new, h)
        _split_exchange(h, HQ, COUNT, tile, s, steps, u, b, B, H, Y, row * H + u, live, BLOCK_U, BLOCK_K, GRID_SYNC,
                        FLAGGED, CLUSTER)
        x_r, x_z, x_n = n_r, n_z, n_n
    _store_state(HN, h, u, b, B, H)


def launch_split(kernel, launch, *args, **kwargs) -> None:
    """Launch a split held ``kernel`` (_lstm_fwd_held_split_kernel, _gru_...) as ``launch`` (dispatch.held_launch)
    says, with ``args`` and ``kwargs`` besides its meta. With CLUSTER the launch groups each batch tile's
    ``launch.cluster`` (H / BLOCK_U) programs into one thread-block cluster and gives every program exchange_bytes
    more dynamic shared memory than the kernel allocates, at its end (_exchange_address). Triton launches clusters
    only for kernels it compiled for several CTAs (num_ctas), whose every layout must then span them, so the compiled
    kernel's launch metadata (num_warps, num_ctas, shared: pack_metadata's, Triton 3.6 to 3.9) is set to the
    cluster's before it runs: its launcher then runs the grid's programs ``launch.cluster`` times over, in clusters."""
    meta = {**launch.meta, **kwargs}
    if launch.cluster > 1:
        compiled = kernel.warmup(*args, grid=launch.grid, **meta)
        compiled.packed_metadata = cluster_metadata(compiled.metadata, launch.cluster, meta["BLOCK_K"])
    kernel[launch.grid](*args, **meta)


def cluster_metadata(metadata, ctas: int, block_k: int) -> tuple[int, int, int]:
    """The launch metadata (num_warps, num_ctas, shared) of a split held kernel compiled as ``metadata`` and launched
    in clusters of ``ctas`` programs (launch_split): its shared memory rounded up to 16 bytes plus the exchange buffer
    for BLOCK_K ``block_k``. Refuses more than 48 KiB (beyond it a kernel must opt in, which Triton does only for what
    it allocates)."""
    shared = -(-metadata.shared // 16) * 16 + exchange_bytes(block_k)
    if shared > 48 * 1024:
        raise ValueError(f"the cluster exchange needs {shared} bytes of shared memory a program, more than the 49152 "
                         "a launch gets without opting in")
    return metadata.num_warps, ctas, shared
