"""Fused Elman RNN recurrence (tanh or relu), forward and backward through time, in every regime (see lstm.py
for the layouts). The activation's derivative comes from the stored outputs."""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from ..recurrence.common import autocast_off, bias_grad, input_projection, recomputed_grads
from ..recurrence.custom_ops import cast_grads, fake_grads, input_needs, needs_backward, plain_inference, wanted
from ..recurrence.variants import Masks
from .common import (
    batch_rows,
    batch_tile,
    column_tile,
    dot,
    dropout_tile,
    exchange_rows,
    fused_norm,
    gate_block,
    lengths_from,
    lerp,
    matvec,
    norm_args,
    norm_grads,
    normalise,
    normalise_grad,
    ping_pong,
    plane,
    projection_grads,
    recurrent_operand,
    recurrent_product,
    resident_slice,
    row_major_copy,
    step_barrier,
    step_rows,
    tanh,
    variant_args,
    vector_block,
    vector_buffers,
    vector_exchange,
    vector_operand,
    vector_row,
    vector_step,
    zone_split,
    zone_weight,
)
from .dispatch import accumulator, plan, stored


@triton.jit
def _rnn_cell(GX, Y, A, out, cols, hw, h, mask, Z, ZS, RELU: tl.constexpr, ZONE: tl.constexpr):
    """One step of a (BB, BH) tile, every regime (or of a (BU,) row, the vector regime): the activation of the
    input projection (GX) plus the recurrent product ``hw``; stores h (Y) and returns it. With ZONE the activation
    is stored in A and the new h is zoned out towards ``h`` by the weights Z (zone_weight's, ZS)."""
    pre = tl.load(GX + out, mask=mask, other=0.0).to(hw.dtype) + hw
    if RELU:  # NaN stays NaN, as in torch.relu (tl.maximum's default drops it: max(NaN, 0) = 0)
        h_new = tl.where(pre < 0.0, 0.0, pre)
    else:
        h_new = tanh(pre)
    if ZONE:
        tl.store(A + out, h_new.to(A.dtype.element_ty), mask=mask)
        h_new = lerp(h_new, h, zone_weight(Z, out, cols, ZS, mask, h.dtype))
    tl.store(Y + out, h_new.to(Y.dtype.element_ty), mask=mask)
    return h_new


@triton.jit
def _rnn_step_grads(Y, A, DY, DG, out, cols, dh, mask, Z, ZS, RELU: tl.constexpr, ZONE: tl.constexpr):
    """The backward of _rnn_cell for a tile: dh (from later steps) plus DY at h_t, through zoneout (ZONE) and
    the activation; stores the pre-activation gradient (DG) and returns it with the part of dh_t that goes
    straight to h_{t-1} (zoneout's; 0.0 without)."""
    dh = dh + tl.load(DY + out, mask=mask, other=0.0).to(dh.dtype)
    if ZONE:  # h_t = lerp(a_t, h_{t-1}, w): da_t = (1 - w) dh_t, and w dh_t goes straight to h_{t-1}
        d_act, direct = zone_split(Z, out, cols, ZS, mask, dh)
        d_pre = _rnn_cell_grads(A, DG, out, d_act, mask, RELU)
    else:
        d_pre, direct = _rnn_cell_grads(Y, DG, out, dh, mask, RELU), 0.0
    return d_pre, direct


@triton.jit
def _rnn_cell_grads(Y, DG, out, dh, mask, RELU: tl.constexpr):
    """dh at the activation's output, through the activation (its derivative from the stored output Y);
    stores the pre-activation gradient (DG) and returns it."""
    y = tl.load(Y + out, mask=mask, other=0.0).to(dh.dtype)
    if RELU:  # torch's threshold_backward: zero where y <= 0, so a NaN y passes dh on
        d_pre = tl.where(y <= 0.0, 0.0, dh)
    else:
        d_pre = dh * (1.0 - y * y)
    tl.store(DG + out, d_pre, mask=mask)
    return d_pre


@triton.jit
def _rnn_fwd_kernel(GX, W, H0, LEN, Y, HN, A, D, Z, LN, RH, NS, T, B, H, ZS: tl.constexpr,
                    RELU: tl.constexpr, REVERSE: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr,
                    DOT_F32: tl.constexpr, PRECISION: tl.constexpr, DROP: tl.constexpr, ZONE: tl.constexpr,
                    NORM: tl.constexpr):
    # DROP: W_hh multiplies h * D (recurrent dropout, D (B, H)); ZONE: zoneout by the weights Z (_rnn_cell).
    # NORM: the recurrent product layer-normalised (gain LN (H,)), stored normalised in RH (T, B, H) with its
    # 1 / std in NS (T, B, 1) for the backward. The input projections GX come normalised.
    rows, cols, m2, state, length = batch_tile(LEN, B, H, BLOCK_B, BLOCK_H)
    w = gate_block(W, 0, H, BLOCK_H, True, DOT_F32)
    h = tl.load(H0 + state, mask=m2, other=0.0).to(HN.dtype.element_ty)  # the accumulator type
    if NORM:
        gain = tl.load(LN + cols, mask=cols < H, other=0.0).to(h.dtype)
    else:
        gain = 0.0  # unused
    for s in range(0, T):
        active, row_t = step_rows(s, length, rows, B, REVERSE)  # (BB, 1) each
        out = row_t * H + cols[None, :]
        h_in = recurrent_operand(h, D, state, m2, DROP)
        hw = dot(h_in.to(w.dtype), w, input_precision=PRECISION, out_dtype=h.dtype)
        if NORM:
            hw, _, rstd = normalise(hw, cols < H, H)
            tl.store(RH + out, hw.to(RH.dtype.element_ty), mask=m2 & active)
            tl.store(NS + row_t, rstd, mask=active)
            hw = hw * gain[None, :]
        h_new = _rnn_cell(GX, Y, A, out, cols, hw, h, m2 & active, Z, ZS, RELU, ZONE)
        h = tl.where(active, h_new, h)
    tl.store(HN + state, h, mask=m2)


@triton.jit
def _rnn_bwd_kernel(Y, DY, DHN, W, LEN, DG, DH0, A, D, Z, LN, RH, NS, DR, T, B, H, ZS: tl.constexpr,
                    RELU: tl.constexpr, REVERSE: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr,
                    DOT_F32: tl.constexpr, PRECISION: tl.constexpr, DROP: tl.constexpr, ZONE: tl.constexpr,
                    NORM: tl.constexpr):
    # NORM (_rnn_fwd_kernel's): DR (T, B, H) takes the gradients of the recurrent product before its layer norm
    rows, cols, m2, state, length = batch_tile(LEN, B, H, BLOCK_B, BLOCK_H)
    w = gate_block(W, 0, H, BLOCK_H, False, DOT_F32)
    dh = tl.load(DHN + state, mask=m2, other=0.0).to(DH0.dtype.element_ty)  # the accumulator type
    if NORM:
        gain = tl.load(LN + cols, mask=cols < H, other=0.0).to(dh.dtype)
    else:
        gain = 0.0  # unused
    for step in range(0, T):
        s = T - 1 - step
        active, row_t = step_rows(s, length, rows, B, REVERSE)  # (BB, 1) each
        out = row_t * H + cols[None, :]
        d_pre, direct = _rnn_step_grads(Y, A, DY, DG, out, cols, dh, m2 & active, Z, ZS, RELU, ZONE)
        if NORM:  # through the recurrent product's layer norm
            r_norm = tl.load(RH + out, mask=m2 & active, other=0.0).to(dh.dtype)
            d_pre = normalise_grad(d_pre * gain[None, :], r_norm, tl.load(NS + row_t, mask=active, other=1.0),
                                   cols < H, H)
            tl.store(DR + out, d_pre, mask=m2 & active)
        back = dot(d_pre.to(w.dtype), w, input_precision=PRECISION)
        if DROP:
            back = back * dropout_tile(D, state, m2, dh.dtype)
        if ZONE:
            back += direct
        dh = tl.where(active, back, dh)
    tl.store(DH0 + state, dh, mask=m2)


@triton.jit
def _rnn_fwd_vector_kernel(GX, W, H0, LEN, Y, HN, HQ, COUNT, B, H, RELU: tl.constexpr, REVERSE: tl.constexpr,
                           BLOCK_H: tl.constexpr, BLOCK_U: tl.constexpr, GRID_SYNC: tl.constexpr,
                           FLAGGED: tl.constexpr):
    # The vector regime (dispatch.py; lstm._lstm_fwd_vector_kernel): program (b, j)'s units, their rows of W_hh held
    # in registers.
    b, units, valid, length = vector_row(LEN, H, BLOCK_U, GRID_SYNC)
    acc: tl.constexpr = HN.dtype.element_ty
    w = vector_block(W, 0, H, units, BLOCK_H, acc)
    h = tl.load(H0 + b * H + units, mask=valid, other=0.0).to(acc)
    for s in range(0, length):
        row, _ = vector_step(s, length, b, B, valid, REVERSE)
        h_in = vector_operand(h, HQ, s, b, B, H, W, BLOCK_H, GRID_SYNC, FLAGGED)
        h = _rnn_cell(GX, Y, Y, row * H + units, units, matvec(w, h_in), h, valid, Y, False, RELU, False)
        vector_exchange(h, HQ, COUNT, b, s, b, B, H, units, valid, GRID_SYNC, FLAGGED)
    tl.store(HN + b * H + units, h, mask=valid)


@triton.jit
def _rnn_fwd_tiled_kernel(GX, W, HQ, LEN, Y, HN, COUNT, HS, A, D, Z, T, B, H, ZS: tl.constexpr,
                          RELU: tl.constexpr, REVERSE: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr,
                          BLOCK_K: tl.constexpr, DOT_F32: tl.constexpr, PRECISION: tl.constexpr,
                          GRID_SYNC: tl.constexpr, K_RES: tl.constexpr, DROP: tl.constexpr, ZONE: tl.constexpr):
    # K_RES > 0: this program holds its column tile of W_hh for the whole sequence (resident regime).
    # HQ (2, B, H): h_{t-1} and h_t in the products' type, times the dropout mask D (B, H) with DROP (the host
    # puts h_0 * D in slot 0); with ZONE, HS (2, B, H) holds them as they are, in the accumulator type.
    rows, length = batch_rows(LEN, B, BLOCK_B)
    w = resident_slice(W, 0, H, H, H, True, BLOCK_H, K_RES, DOT_F32)  # (K_RES, BH), or W when K_RES == 0
    state_rows = rows[:, None] * H  # (BB, 1) offsets into a (B, H) state buffer
    slot = plane(B, H)  # the distance between the slots of HQ and HS
    for s in range(0, T):
        active, row_t = step_rows(s, length, rows, B, REVERSE)  # (BB, 1) each
        last = (s == length - 1)[:, None]
        src = (s % 2) * slot  # h_{t-1} in slot s % 2; h_t goes to the other
        for j in range(tl.program_id(1), tl.cdiv(H, BLOCK_H), tl.num_programs(1)):
            cols, am = column_tile(j, active, H, BLOCK_H)
            hw = recurrent_product(HQ + src, state_rows, active, W, 0, cols, H, H, H, True,
                                   BLOCK_K, DOT_F32, PRECISION, w, K_RES)
            state = state_rows + cols[None, :]
            if ZONE:
                h_prev = tl.load(HS + src + state, mask=am, other=0.0)
            else:
                h_prev = 0.0  # unused
            h_new = _rnn_cell(GX, Y, A, row_t * H + cols[None, :], cols, hw, h_prev, am, Z, ZS, RELU, ZONE)
            if ZONE:
                tl.store(HS + slot - src + state, h_new, mask=am)
            h_in = recurrent_operand(h_new, D, state, am, DROP)
            tl.store(HQ + slot - src + state, h_in.to(HQ.dtype.element_ty), mask=am)
            tl.store(HN + state, h_new, mask=am & last)
        step_barrier(COUNT + tl.program_id(0), (s + 1) * tl.num_programs(1), GRID_SYNC)


@triton.jit
def _rnn_bwd_tiled_kernel(Y, DY, W, LEN, DG, DQ, DHS, COUNT, A, D, Z, T, B, H, ZS: tl.constexpr,
                          RELU: tl.constexpr, REVERSE: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr,
                          BLOCK_K: tl.constexpr, DOT_F32: tl.constexpr, PRECISION: tl.constexpr,
                          GRID_SYNC: tl.constexpr, K_RES: tl.constexpr, DROP: tl.constexpr, ZONE: tl.constexpr):
    # DHS (B, H) fp32: dh entering each step, from dh_n in to dh_0 out. DQ (2, B, H): a step's gradients
    # for the product (exchange_rows); DG (T, B, H) keeps them all. K_RES > 0: this program holds its
    # column tile of W_hh for the whole sequence (resident regime).
    rows, length = batch_rows(LEN, B, BLOCK_B)
    w = resident_slice(W, 0, H, H, H, False, BLOCK_H, K_RES, DOT_F32)  # (K_RES, BH), or W when K_RES == 0
    state_rows = rows[:, None] * H
    for step in range(0, T):
        s = T - 1 - step
        active, row_t = step_rows(s, length, rows, B, REVERSE)  # (BB, 1) each
        q_rows = exchange_rows(step, rows, B, H)
        for j in range(tl.program_id(1), tl.cdiv(H, BLOCK_H), tl.num_programs(1)):
            cols, am = column_tile(j, active, H, BLOCK_H)
            d_pre, direct = _rnn_step_grads(Y, A, DY, DG, row_t * H + cols[None, :], cols,
                                            tl.load(DHS + state_rows + cols[None, :], mask=am, other=0.0), am, Z, ZS,
                                            RELU, ZONE)
            tl.store(DQ + q_rows + cols[None, :], d_pre.to(DQ.dtype.element_ty), mask=am)
            if ZONE:  # added to the product's below
                tl.store(DHS + state_rows + cols[None, :], direct, mask=am)
        step_barrier(COUNT + tl.program_id(0), (step + 1) * tl.num_programs(1), GRID_SYNC)
        for j in range(tl.program_id(1), tl.cdiv(H, BLOCK_H), tl.num_programs(1)):
            cols, am = column_tile(j, active, H, BLOCK_H)
            dh = recurrent_product(DQ, q_rows, active, W, 0, cols, H, H, H, False, BLOCK_K, DOT_F32, PRECISION,
                                   w, K_RES)
            if DROP:
                dh = dh * dropout_tile(D, state_rows + cols[None, :], am, dh.dtype)
            if ZONE:
                dh += tl.load(DHS + state_rows + cols[None, :], mask=am, other=0.0)
            tl.store(DHS + state_rows + cols[None, :], dh, mask=am)
        tl.debug_barrier()  # this program reads its dh tiles back next step, in another thread layout


@autocast_off
def _rnn_forward(x: Tensor, h0: Tensor, w_ih: Tensor | None, w_hh: Tensor, b_ih: Tensor | None,
                 b_hh: Tensor | None, batch_sizes: list[int] | None, reverse: bool, relu: bool,
                 drop: Tensor | None = None, zone: Tensor | None = None, norm: Tensor | None = None
                 ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The fused forward (the custom op ``rnnlab::rnn_fused``, and called directly in plain inference): Y (T, B, H),
    h_n (B, H) and, with zoneout, the activations before it, A (T, B, H) (for the backward; else empty).
    ``drop`` and ``zone``: recurrent dropout's mask and zoneout's weights (rnnlab.recurrence.variants.Masks).
    ``norm``: layer norm's recurrent gain (H,); x then holds the normalised input projections (T, B, H)
    (``w_ih`` None), and the normalised recurrent products RH (T, B, H, stored type) and their 1 / std NS
    (T, B, 1) come last (else empty)."""
    T, B, _ = x.shape
    H = w_hh.shape[1]
    plain = all(t is None for t in (drop, zone, norm))  # the forward keeps nothing else for the backward
    launch = plan("rnn", x, H, B, norm=norm is not None, inference=plain)
    acc = accumulator(x.dtype)
    gx = input_projection(x, w_ih, None if b_ih is None else b_ih + b_hh).contiguous()  # (T, B, H)
    lengths = lengths_from(batch_sizes, T, B, x.device)
    Y = torch.zeros(T, B, H, dtype=x.dtype, device=x.device)
    A = torch.zeros(T if zone is not None else 0, B, H, dtype=x.dtype, device=x.device)
    hn = torch.empty(B, H, dtype=acc, device=x.device)
    normed = T if norm is not None else 0
    RH = torch.zeros(normed, B, H, dtype=stored(x.dtype), device=x.device)
    NS = torch.zeros(normed, B, 1, dtype=acc, device=x.device)
    w = w_hh.contiguous()
    masks = variant_args(drop, zone)
    if launch.regime == "held":
        from .held import _rnn_fwd_held_kernel  # Gluon's (Triton >= 3.6), imported where the regime runs

        _rnn_fwd_held_kernel[launch.grid](gx, w, h0.contiguous(), lengths, Y, hn, B, H, RELU=relu, REVERSE=reverse,
                                          **launch.meta)
    elif launch.regime == "vector":
        _rnn_fwd_vector_kernel[launch.grid](gx, w, h0.contiguous(), lengths, Y, hn,
                                            *vector_buffers(launch, h0, stored(x.dtype)), B=B, H=H, RELU=relu,
                                            REVERSE=reverse, **launch.meta)
    elif launch.tiled:
        hq = ping_pong(h0 if drop is None else h0.to(acc) * drop, stored(x.dtype))  # what W_hh multiplies
        hs = ping_pong(h0, acc) if zone is not None else None
        _rnn_fwd_tiled_kernel[launch.grid](gx, w, hq, lengths, Y, hn, launch.counters(x.device), hs, A, T=T, B=B, H=H,
                                           RELU=relu, REVERSE=reverse, **launch.meta, **masks)
    else:
        _rnn_fwd_kernel[launch.grid](gx, w, h0.contiguous(), lengths, Y, hn, A, RH=RH, NS=NS, T=T, B=B, H=H,
                                     RELU=relu, REVERSE=reverse, **launch.meta, **masks, **norm_args(norm))
    return Y, hn.to(x.dtype), A, RH, NS


rnn_fused = torch.library.custom_op("rnnlab::rnn_fused", mutates_args=())(_rnn_forward)


@rnn_fused.register_fake
def _(x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse, relu, drop=None, zone=None, norm=None):
    T, B, _ = x.shape
    H = w_hh.shape[1]
    normed = T if norm is not None else 0
    return (x.new_empty(T, B, H), x.new_empty(B, H), x.new_empty(T if zone is not None else 0, B, H),
            x.new_empty(normed, B, H, dtype=stored(x.dtype)), x.new_empty(normed, B, 1, dtype=accumulator(x.dtype)))


@torch.library.custom_op("rnnlab::rnn_fused_backward", mutates_args=())
@autocast_off
def rnn_fused_backward(dY: Tensor, dh_n: Tensor, x: Tensor, h0: Tensor, w_ih: Tensor | None, w_hh: Tensor,
                       Y: Tensor, A: Tensor, RH: Tensor, NS: Tensor, batch_sizes: list[int] | None, reverse: bool,
                       relu: bool, need: list[bool], drop: Tensor | None = None, zone: Tensor | None = None,
                       norm: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Gradients of x, h0, w_ih, w_hh, the bias and the layer-norm gain ``norm`` (each empty where ``need`` says
    it is not wanted)."""
    T, B, _ = x.shape
    H = w_hh.shape[1]
    launch = plan("rnn", x, H, B, backward=True, norm=norm is not None)
    acc = accumulator(x.dtype)
    lengths = lengths_from(batch_sizes, T, B, x.device)
    dG = torch.zeros(T, B, H, dtype=acc, device=x.device)
    dR = torch.zeros_like(dG) if norm is not None else dG  # the recurrent product's gradients
    w = w_hh.contiguous()
    masks = variant_args(drop, zone)
    if launch.tiled:
        dh0 = row_major_copy(dh_n, acc)  # (B, H), updated in place
        dq = torch.empty(2, B, H, dtype=stored(x.dtype), device=x.device)  # a step's dG for the product
        _rnn_bwd_tiled_kernel[launch.grid](Y, dY.contiguous(), w, lengths, dG, dq, dh0, launch.counters(x.device), A,
                                           T=T, B=B, H=H, RELU=relu, REVERSE=reverse, **launch.meta, **masks)
    else:
        dh0 = torch.empty(B, H, dtype=acc, device=x.device)
        _rnn_bwd_kernel[launch.grid](Y, dY.contiguous(), dh_n.contiguous(), w, lengths, dG, dh0, A, RH=RH, NS=NS,
                                     DR=dR, T=T, B=B, H=H, RELU=relu, REVERSE=reverse, **launch.meta, **masks,
                                     **norm_args(norm))
    dx, dw_ih, dw_hh = projection_grads(dG, dR, x, h0, Y, w_ih, w_hh, batch_sizes, reverse, *need[:1], *need[2:4],
                                        drop)
    db = bias_grad(dG, need[4])
    d_norm = norm_grads(dG, RH) if need[5] else None
    return cast_grads((dx, dh0, dw_ih, dw_hh, db, d_norm), (x, h0, w_hh, w_hh, w_hh, w_hh if norm is None else norm),
                      need)


@rnn_fused_backward.register_fake
def _(dY, dh_n, x, h0, w_ih, w_hh, Y, A, RH, NS, batch_sizes, reverse, relu, need, drop=None, zone=None, norm=None):
    bias = w_hh.new_empty(w_hh.shape[0])
    return fake_grads((x, h0, w_hh if w_ih is None else w_ih, w_hh, bias, bias if norm is None else norm), need)


def _rnn_setup(ctx, inputs, output):
    x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse, relu, drop, zone, norm = inputs
    Y, _, A, RH, NS = output
    ctx.save_for_backward(x, h0, w_ih, w_hh, Y, A, RH, NS, drop, zone, norm, b_ih, b_hh)
    ctx.batch_sizes, ctx.reverse, ctx.relu, ctx.has_bias = batch_sizes, reverse, relu, b_ih is not None
    ctx.mark_non_differentiable(A, RH, NS)


def _rnn_backward(ctx, dY, dh_n, _dA, _dRH, _dNS):
    given, need = input_needs(ctx, 12)
    bias = ctx.has_bias and (need[4] or need[5])
    *saved, drop, zone, norm, b_ih, b_hh = ctx.saved_tensors
    if torch.is_grad_enabled():  # create_graph=True: gradients with a graph, by the step-by-step recurrence
        x, h0, w_ih, w_hh = saved[:4]
        got = recomputed_grads("RNN_RELU" if ctx.relu else "RNN_TANH", [x, h0, w_ih, w_hh, b_ih, b_hh, None, norm],
                               [*need[:6], False, need[11]], [dY, dh_n], ctx.batch_sizes,
                               ctx.reverse, Masks(drop, zone), dtype=accumulator(x.dtype))
        return (*got[:6], None, None, None, None, None, got[7])[:given]
    dx, dh0, dw_ih, dw_hh, db, d_norm = rnn_fused_backward(dY, dh_n, *saved, ctx.batch_sizes, ctx.reverse, ctx.relu,
                                                           [*need[:4], bias, need[11]], drop, zone, norm)
    every = (*wanted((dx, dh0, dw_ih, dw_hh), need[:4]), *wanted((db, db.clone()), (bias, bias)), None, None, None,
             None, None, *wanted((d_norm,), need[11:]))
    return every[:given]


rnn_fused.register_autograd(_rnn_backward, setup_context=_rnn_setup)


def rnn_scan_triton(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, batch_sizes=None, reverse=False, nonlinearity="tanh",
                    masks=None, norms=None):
    """Fused Elman RNN over a sequence; arguments and outputs as :func:`rnnlab.recurrence.rnn_scan`, ``masks``
    (rnnlab.recurrence.variants.Masks) for recurrent dropout and zoneout and ``norms`` (variant_scan's) for
    layer norm."""
    x, w_ih, norm = fused_norm(x, w_ih, norms, ("hh",))
    tensors = (x, h0, w_ih, w_hh, b_ih, b_hh)
    forward = _rnn_forward if plain_inference(*tensors, norm, store=needs_backward(*tensors, norm)) else rnn_fused
    drop, zone = (None, None) if masks is None else (masks.dropout, masks.zoneout)
    return forward(*tensors, batch_sizes, reverse, nonlinearity == "relu", drop, zone, norm)[:2]
