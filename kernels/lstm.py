"""Fused LSTM recurrence, forward and backward through time.

Persistent regime (dispatch.py): one program owns BLOCK_B batch rows of one layer direction for the
whole sequence: it loads the four (H, H) gate blocks of W_hh once, side by side (H, 4H), keeps h and c
in fp32 registers, and per step takes one product h @ [W_i W_f W_g W_o]^T, splits it by gate (split_gates)
and adds the precomputed input projections, applies the gates and stores h, c and the gates'
pre-activations (what the backward needs: it recomputes the activations, a few exponentials,
but no product; in fp16/bf16 c and the pre-activations are stored in the input dtype, halving the
activation memory, and recomputing keeps the sigmoid derivatives that a rounded gate near 1 would
lose). Rows finish at their own length (packed input); in the reverse direction each row starts at its
own last step. The backward walks time in reverse with the same weight blocks (untransposed) and stores
the gradients of the gate pre-activations; dx and the weight gradients are GEMMs over all timesteps
outside the kernel, as in rnnlab.recurrence.lstm.

Tiled regime: the same math for any hidden size, by column tiles of BLOCK_H hidden units (all four
gates of each, in one product). A tile's step reads the whole previous h from a ping-pong buffer HQ
(2, B, H) in the products' operand type (fp16/bf16 for such input, which the product rounds h to anyway:
half the bytes every program reads each step) and streams W_hh (recurrent_product); c lives in an fp32
CS likewise. The backward's step has two phases: the gate gradients of every tile, then (after the
barrier) dh_{t-1} tile by tile from all of them. With a projection (proj_size P: h = (o * tanh c)
W_hr^T, W_hh (4H, P)) the forward adds a phase that projects the unprojected h (HF) by column tiles of
P, and the backward one that first gathers each step's dh_t (DHP) so the unprojected h's gradient
dh_t W_hr can be taken by tiles of H.

Resident regime: the tiled kernels with K_RES > 0 and one program per column tile, each loading its
tile's slices of W_hh once (resident_gates in the forward, resident_slice in the backward) instead of
streaming them every step.

Vector regime (forwards that keep nothing for a backward, up to 16 sequences): one program per sequence holds
its rows of the four gate blocks of W_hh in registers, W's own layout (vector_block), and takes each step's
product as matrix-vector sums (matvec), without tl.dot's 16-row padding; beyond one program's sizes, on CUDA, the
units split over programs that exchange h through HQ each step (vector_exchange: at the grid barrier, or flagged).

"fp32" above is the accumulator type: fp64 for fp64 input (so gradcheck applies to the kernels).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from ..recurrence.common import autocast_off, bias_grad, input_projection, linear_grads, recomputed_grads
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
    gate_rows,
    gates_block,
    lengths_from,
    lerp,
    load_previous,
    matvec,
    norm_args,
    norm_columns,
    norm_grad_tile,
    norm_grads,
    norm_sums,
    normalise,
    normalise_grad,
    ping_pong,
    plane,
    projection_grads,
    recurrent_operand,
    recurrent_product,
    resident_gates,
    resident_product,
    resident_slice,
    row_major_copy,
    sigmoid,
    sigmoid_tanh,
    split_gates,
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
def _lstm_inputs(GX, gates, H, mask, ACC: tl.constexpr):
    """A (BB, BH) tile's input projections for one step, gate by gate (i, f, g, o), in ACC: GX (T, B, 4H)
    at the offsets ``gates`` of gate i's units (gate k's are k * H further), zero outside ``mask``. Loaded
    in the cell's layout and added after the product is split (_lstm_cell): as the product's accumulator
    they took one more layout conversion a step (sm_90: 318 instructions a persistent bf16 step at
    BLOCK_H = 64 against 234)."""
    x_i = tl.load(GX + gates, mask=mask, other=0.0).to(ACC)
    x_f = tl.load(GX + gates + H, mask=mask, other=0.0).to(ACC)
    x_g = tl.load(GX + gates + 2 * H, mask=mask, other=0.0).to(ACC)
    x_o = tl.load(GX + gates + 3 * H, mask=mask, other=0.0).to(ACC)
    return x_i, x_f, x_g, x_o


@triton.jit
def _lstm_split(product, x_i, x_f, x_g, x_o, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr):
    """The gates' pre-activations of a (BB, BH) tile: the recurrent ``product`` (BB, 4 BH; h W_hh^T, gate k in
    columns k * BH..) split by gate, plus the input projections (_lstm_inputs)."""
    p_i, p_f, p_g, p_o = split_gates(product, BLOCK_B, BLOCK_H)
    return p_i + x_i, p_f + x_f, p_g + x_g, p_o + x_o


@triton.jit
def _lstm_cell(a_i, a_f, a_g, a_o, Y, y_off, C, G, gates, H, out, c, mask, STORE: tl.constexpr, h=0.0, cols=None,
               Z=None, ZC=None, ZS: tl.constexpr = False, ZONE: tl.constexpr = False, ZONE_C: tl.constexpr = False,
               NORM: tl.constexpr = False, c_gain=None, c_bias=None, stats=None, live=None):
    """One step of a (BB, BH) tile, every regime (or of a (BU,) row, the vector regime): the gates'
    pre-activations (the recurrent product split by gate, _lstm_split, plus the input projections) update c
    (fp32); stores h (Y at ``y_off``: the output, or with a projection the unprojected h) and, when STORE
    (training), c (C at ``out``) and the pre-activations (G at ``gates``, gate k's k * H further; the backward
    recomputes the gates from them); returns the new h and c.
    Zoneout (ZONE for h, ZONE_C for c, by the weights Z and ZC at the tile's ``cols``: zone_weight's) moves the
    new h and c towards the previous ``h`` and ``c``; h is computed from the new c before its zoneout.
    With NORM (one tile holds all H units: the persistent regime) h takes the layer-normalised c, times
    ``c_gain`` plus ``c_bias`` (BH,), and training stores its mean and 1 / std at ``stats`` + 1 and + 2
    ((BB, 1) pointers into NS, rows ``live``)."""
    c_new = sigmoid(a_f) * c + sigmoid_tanh(a_i, a_g)  # f c + i g
    if NORM:
        c_norm, mean_c, rstd_c = normalise(c_new, cols < H, H)
        h_new = sigmoid_tanh(a_o, c_norm * c_gain[None, :] + c_bias[None, :])  # o tanh(LN(c))
        if STORE:
            tl.store(stats + 1, mean_c, mask=live)
            tl.store(stats + 2, rstd_c, mask=live)
    else:
        h_new = sigmoid_tanh(a_o, c_new)  # o tanh(c)
    if ZONE_C:
        c_new = lerp(c_new, c, zone_weight(ZC, out, cols, ZS, mask, c.dtype))
    if ZONE:
        h_new = lerp(h_new, h, zone_weight(Z, out, cols, ZS, mask, c.dtype))
    tl.store(Y + y_off, h_new.to(Y.dtype.element_ty), mask=mask)
    if STORE:
        tl.store(C + out, c_new.to(C.dtype.element_ty), mask=mask)
        tl.store(G + gates, a_i.to(G.dtype.element_ty), mask=mask)
        tl.store(G + gates + H, a_f.to(G.dtype.element_ty), mask=mask)
        tl.store(G + gates + 2 * H, a_g.to(G.dtype.element_ty), mask=mask)
        tl.store(G + gates + 3 * H, a_o.to(G.dtype.element_ty), mask=mask)
    return h_new, c_new


@triton.jit
def _lstm_cell_grads(G, C, DG, gates, out, H, c_prev, dh, dc, mask, ZONE_C: tl.constexpr = False,
                     NORM: tl.constexpr = False, cols=None, c_gain=None, c_bias=None, mean_c=None, rstd_c=None):
    """The backward of _lstm_cell for a tile: from the gradients dh and dc reaching h_t and c_t (before any
    zoneout), stores the gate pre-activation gradients (DG) and returns them with the gradient passed on to
    c_{t-1}. The gates are recomputed from their stored pre-activations in dh's type: G and C may be stored
    narrower (half precision), and a sigmoid rounded to bf16 near 1 would leave its derivative s(1 - s) no
    digit. With ZONE_C, C holds the zoned-out cell states and the new one is recomputed, f c_{t-1} + i g.
    With NORM, tanh takes the layer-normalised c (_lstm_cell; its mean_c and rstd_c (BB, 1) as stored);
    also returns the gradient reaching the normalised c times its gain plus bias, and the normalised c
    (for the gain's and bias' gradients; c itself without NORM)."""
    i = sigmoid(tl.load(G + gates, mask=mask, other=0.0).to(dh.dtype))
    f = sigmoid(tl.load(G + gates + H, mask=mask, other=0.0).to(dh.dtype))
    g = tanh(tl.load(G + gates + 2 * H, mask=mask, other=0.0).to(dh.dtype))
    o = sigmoid(tl.load(G + gates + 3 * H, mask=mask, other=0.0).to(dh.dtype))
    if ZONE_C:
        c = f * c_prev + i * g
    else:
        c = tl.load(C + out, mask=mask, other=0.0).to(dh.dtype)
    if NORM:
        c = tl.where(cols[None, :] < H, (c - mean_c) * rstd_c, 0.0)  # normalised
        tc = tanh(c * c_gain[None, :] + c_bias[None, :])
    else:
        tc = tanh(c)
    d_o = dh * tc * o * (1.0 - o)
    d_shown = dh * o * (1.0 - tc * tc)
    if NORM:
        dc = dc + normalise_grad(d_shown * c_gain[None, :], c, rstd_c, cols < H, H)
    else:
        dc = dc + d_shown
    d_i = dc * g * i * (1.0 - i)
    d_f = dc * c_prev * f * (1.0 - f)
    d_g = dc * i * (1.0 - g * g)
    tl.store(DG + gates, d_i, mask=mask)
    tl.store(DG + gates + H, d_f, mask=mask)
    tl.store(DG + gates + 2 * H, d_g, mask=mask)
    tl.store(DG + gates + 3 * H, d_o, mask=mask)
    return d_i, d_f, d_g, d_o, dc * f, d_shown, c


@triton.jit
def _lstm_zone_grads(Z, ZC, out, cols, ZS, mask, dh, dc, ZONE: tl.constexpr, ZONE_C: tl.constexpr):
    """Zoneout's backward for a tile: from dh and dc reaching the zoned-out h_t and c_t, the parts reaching the
    cell's new h and c ((1 - w) d) and those going straight to h_{t-1} and c_{t-1} (w d; 0.0 where off)."""
    if ZONE:
        dh_cell, dh_direct = zone_split(Z, out, cols, ZS, mask, dh)
    else:
        dh_cell, dh_direct = dh, 0.0
    if ZONE_C:
        dc_cell, dc_direct = zone_split(ZC, out, cols, ZS, mask, dc)
    else:
        dc_cell, dc_direct = dc, 0.0
    return dh_cell, dh_direct, dc_cell, dc_direct


@triton.jit
def _lstm_fwd_kernel(GX, W, H0, C0, LEN, Y, C, G, HN, CN, D, Z, ZC, LN, RH, NS, T, B, H, ZS: tl.constexpr,
                     REVERSE: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, DOT_F32: tl.constexpr,
                     PRECISION: tl.constexpr, STORE: tl.constexpr, DROP: tl.constexpr, ZONE: tl.constexpr,
                     ZONE_C: tl.constexpr, NORM: tl.constexpr):
    # DROP: W_hh multiplies h * D (recurrent dropout, D (B, H)); ZONE, ZONE_C: zoneout (_lstm_cell).
    # NORM: layer norm (rnnlab.recurrence.variants) of the recurrent product (gains LN[:4H]) and of c (gain
    # LN[4H:5H], bias LN[5H:]); training stores the normalised products RH (T, B, 4H) and per row NS (T, B, 3):
    # the product's 1 / std, c's mean and 1 / std. The input projections GX come normalised.
    rows, cols, m2, state, length = batch_tile(LEN, B, H, BLOCK_B, BLOCK_H)
    w = gates_block(W, 0, H, H, 4, BLOCK_H, BLOCK_H, DOT_F32)  # (BH, 4 BH): row = input unit
    h = tl.load(H0 + state, mask=m2, other=0.0).to(HN.dtype.element_ty)  # the accumulator type
    c = tl.load(C0 + state, mask=m2, other=0.0).to(HN.dtype.element_ty)
    if NORM:
        ln_cols, ln_valid = norm_columns(H, 4, 4 * BLOCK_H, BLOCK_H)  # (4 BH,) each, the product's columns
        gain = tl.load(LN + ln_cols, mask=ln_valid, other=0.0).to(h.dtype)
        c_gain = tl.load(LN + 4 * H + cols, mask=cols < H, other=0.0).to(h.dtype)
        c_bias = tl.load(LN + 5 * H + cols, mask=cols < H, other=0.0).to(h.dtype)
    else:
        gain, c_gain, c_bias = 0.0, 0.0, 0.0  # unused
    active, row_t = step_rows(0, length, rows, B, REVERSE)  # (BB, 1) each
    x_i, x_f, x_g, x_o = _lstm_inputs(GX, row_t * (4 * H) + cols[None, :], H, m2 & active, h.dtype)
    for s in range(0, T):
        # recomputed rather than carried from the last step's: carrying them made the BLOCK_H = 64
        # half-precision kernel spill 16 bytes at its 128 registers (fit.py, sm_90)
        active, row_t = step_rows(s, length, rows, B, REVERSE)
        # the next step's input projections, loaded a step ahead (they do not depend on h)
        next_active, next_row = step_rows(s + 1, length, rows, B, REVERSE)
        n_i, n_f, n_g, n_o = _lstm_inputs(GX, next_row * (4 * H) + cols[None, :], H, m2 & next_active, h.dtype)
        out = row_t * H + cols[None, :]
        h_in = recurrent_operand(h, D, state, m2, DROP)
        product = dot(h_in.to(w.dtype), w, input_precision=PRECISION, out_dtype=h.dtype)
        if NORM:
            product, _, rstd = normalise(product, ln_valid, 4 * H)
            if STORE:
                tl.store(RH + row_t * (4 * H) + ln_cols[None, :], product.to(RH.dtype.element_ty),
                         mask=ln_valid[None, :] & active)
                tl.store(NS + row_t * 3, rstd, mask=active)
            product = product * gain[None, :]
        a_i, a_f, a_g, a_o = _lstm_split(product, x_i, x_f, x_g, x_o, BLOCK_B, BLOCK_H)
        h_new, c_new = _lstm_cell(a_i, a_f, a_g, a_o, Y, out, C, G, row_t * (4 * H) + cols[None, :], H, out, c,
                                  m2 & active, STORE, h, cols, Z, ZC, ZS, ZONE, ZONE_C, NORM, c_gain, c_bias,
                                  NS + row_t * 3, active)
        h = tl.where(active, h_new, h)
        c = tl.where(active, c_new, c)
        x_i, x_f, x_g, x_o = n_i, n_f, n_g, n_o
    tl.store(HN + state, h, mask=m2)
    tl.store(CN + state, c, mask=m2)


@triton.jit
def _lstm_bwd_kernel(G, C, C0, DY, DHN, DCN, W, LEN, DG, DH0, DC0, D, Z, ZC, LN, RH, NS, DR, DLN, T, B, H,
                     ZS: tl.constexpr, REVERSE: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr,
                     DOT_F32: tl.constexpr, PRECISION: tl.constexpr, DROP: tl.constexpr, ZONE: tl.constexpr,
                     ZONE_C: tl.constexpr, NORM: tl.constexpr):
    # NORM (_lstm_fwd_kernel's): DR (T, B, 4H) takes the gradients of the recurrent product before its layer
    # norm (what dW_hh needs; DG keeps those of the gates' pre-activations), and DLN (programs, 2, H) this
    # program's part of the gradients of c's gain and bias.
    rows, cols, m2, state, length = batch_tile(LEN, B, H, BLOCK_B, BLOCK_H)
    w_i = gate_block(W, 0, H, BLOCK_H, False, DOT_F32)  # (BH, BH): row = gate unit, column = hidden unit
    w_f = gate_block(W, 1, H, BLOCK_H, False, DOT_F32)
    w_g = gate_block(W, 2, H, BLOCK_H, False, DOT_F32)
    w_o = gate_block(W, 3, H, BLOCK_H, False, DOT_F32)
    dh = tl.load(DHN + state, mask=m2, other=0.0).to(DH0.dtype.element_ty)  # the accumulator type
    dc = tl.load(DCN + state, mask=m2, other=0.0).to(DH0.dtype.element_ty)
    if NORM:  # the recurrent gains gate by gate, c's gain and bias; (BH,) each
        g_i = tl.load(LN + cols, mask=cols < H, other=0.0).to(dh.dtype)
        g_f = tl.load(LN + H + cols, mask=cols < H, other=0.0).to(dh.dtype)
        g_g = tl.load(LN + 2 * H + cols, mask=cols < H, other=0.0).to(dh.dtype)
        g_o = tl.load(LN + 3 * H + cols, mask=cols < H, other=0.0).to(dh.dtype)
        c_gain = tl.load(LN + 4 * H + cols, mask=cols < H, other=0.0).to(dh.dtype)
        c_bias = tl.load(LN + 5 * H + cols, mask=cols < H, other=0.0).to(dh.dtype)
    else:
        g_i, g_f, g_g, g_o, c_gain, c_bias = 0.0, 0.0, 0.0, 0.0, 0.0, 0.0  # unused
    gain_grad = tl.zeros_like(dh)  # (BB, BH): c's gain and bias, summed over rows at the end
    bias_grad = tl.zeros_like(dh)
    for step in range(0, T):
        s = T - 1 - step
        active, row_t = step_rows(s, length, rows, B, REVERSE)  # (BB, 1) each
        am = m2 & active
        out = row_t * H + cols[None, :]
        c_prev = load_previous(C, C0, out, state, s, B, H, am, DH0.dtype.element_ty, REVERSE)
        dh_t = dh + tl.load(DY + out, mask=am, other=0.0).to(dh.dtype)
        if ZONE or ZONE_C:
            dh_t, dh_direct, dc_t, dc_direct = _lstm_zone_grads(Z, ZC, out, cols, ZS, am, dh_t, dc, ZONE, ZONE_C)
        else:
            dc_t = dc
        if NORM:  # c's mean and 1 / std, as the forward stored them
            mean_c = tl.load(NS + row_t * 3 + 1, mask=active, other=0.0)
            rstd_c = tl.load(NS + row_t * 3 + 2, mask=active, other=0.0)
        else:
            mean_c, rstd_c = 0.0, 0.0  # unused
        d_i, d_f, d_g, d_o, dc_prev, d_shown, c_norm = _lstm_cell_grads(
            G, C, DG, row_t * (4 * H) + cols[None, :], out, H, c_prev, dh_t, dc_t, am, ZONE_C, NORM, cols, c_gain,
            c_bias, mean_c, rstd_c)
        if NORM:  # the gradients through the recurrent product's layer norm (_lstm_fwd_kernel), gate by gate in the
            # cell's layout (joined into the product's, the fp32 kernel spilled: fit.py, sm_90)
            gain_grad += tl.where(am, d_shown * c_norm, 0.0)
            bias_grad += tl.where(am, d_shown, 0.0)
            gates = row_t * (4 * H) + cols[None, :]
            r_i, r_f, r_g, r_o = _lstm_inputs(RH, gates, H, am, dh.dtype)  # the normalised products
            d_i, d_f, d_g, d_o = d_i * g_i[None, :], d_f * g_f[None, :], d_g * g_g[None, :], d_o * g_o[None, :]
            s_i, q_i = norm_sums(d_i, r_i)
            s_f, q_f = norm_sums(d_f, r_f)
            s_g, q_g = norm_sums(d_g, r_g)
            s_o, q_o = norm_sums(d_o, r_o)
            mean_d, mean_dx = (s_i + s_f + s_g + s_o) / (4 * H), (q_i + q_f + q_g + q_o) / (4 * H)
            rstd = tl.load(NS + row_t * 3, mask=active, other=1.0)
            d_i = norm_grad_tile(d_i, r_i, rstd, mean_d, mean_dx, cols < H)
            d_f = norm_grad_tile(d_f, r_f, rstd, mean_d, mean_dx, cols < H)
            d_g = norm_grad_tile(d_g, r_g, rstd, mean_d, mean_dx, cols < H)
            d_o = norm_grad_tile(d_o, r_o, rstd, mean_d, mean_dx, cols < H)
            tl.store(DR + gates, d_i, mask=am)
            tl.store(DR + gates + H, d_f, mask=am)
            tl.store(DR + gates + 2 * H, d_g, mask=am)
            tl.store(DR + gates + 3 * H, d_o, mask=am)
        dh_new = dot(d_i.to(w_i.dtype), w_i, input_precision=PRECISION)
        dh_new += dot(d_f.to(w_f.dtype), w_f, input_precision=PRECISION)
        dh_new += dot(d_g.to(w_g.dtype), w_g, input_precision=PRECISION)
        dh_new += dot(d_o.to(w_o.dtype), w_o, input_precision=PRECISION)
        if DROP:
            dh_new = dh_new * dropout_tile(D, state, m2, dh.dtype)
        if ZONE or ZONE_C:
            dh_new += dh_direct
            dc_prev += dc_direct
        dh = tl.where(active, dh_new, dh)
        dc = tl.where(active, dc_prev, dc)
    tl.store(DH0 + state, dh, mask=m2)
    tl.store(DC0 + state, dc, mask=m2)
    if NORM:
        tl.store(DLN + tl.program_id(0) * 2 * H + cols, tl.sum(gain_grad, axis=0), mask=cols < H)
        tl.store(DLN + tl.program_id(0) * 2 * H + H + cols, tl.sum(bias_grad, axis=0), mask=cols < H)


@triton.jit
def _lstm_fwd_vector_kernel(GX, W, H0, C0, LEN, Y, HN, CN, HQ, COUNT, B, H, REVERSE: tl.constexpr,
                            BLOCK_H: tl.constexpr, BLOCK_U: tl.constexpr, GRID_SYNC: tl.constexpr,
                            FLAGGED: tl.constexpr):
    # The vector regime (dispatch.py): the units BLOCK_U of program (b, j) of batch row b in a forward that keeps
    # nothing for a backward, their rows of the four gate blocks of W_hh held in registers in the accumulator type;
    # each step's product is four matrix-vector sums (vector_operand's h). One program a row (BLOCK_U = BLOCK_H), or
    # with GRID_SYNC the units split over the row's programs, which exchange h through HQ (vector_exchange; with
    # FLAGGED as tagged words, without the barrier).
    b, units, valid, length = vector_row(LEN, H, BLOCK_U, GRID_SYNC)
    acc: tl.constexpr = HN.dtype.element_ty
    w_i = vector_block(W, 0, H, units, BLOCK_H, acc)
    w_f = vector_block(W, 1, H, units, BLOCK_H, acc)
    w_g = vector_block(W, 2, H, units, BLOCK_H, acc)
    w_o = vector_block(W, 3, H, units, BLOCK_H, acc)
    h = tl.load(H0 + b * H + units, mask=valid, other=0.0).to(acc)
    c = tl.load(C0 + b * H + units, mask=valid, other=0.0).to(acc)
    row, live = vector_step(0, length, b, B, valid, REVERSE)
    x_i, x_f, x_g, x_o = _lstm_inputs(GX, row * (4 * H) + units, H, live, acc)
    for s in range(0, length):
        row, _ = vector_step(s, length, b, B, valid, REVERSE)
        # the next step's input projections, loaded a step ahead (they do not depend on h)
        next_row, next_live = vector_step(s + 1, length, b, B, valid, REVERSE)
        n_i, n_f, n_g, n_o = _lstm_inputs(GX, next_row * (4 * H) + units, H, next_live, acc)
        h_in = vector_operand(h, HQ, s, b, B, H, W, BLOCK_H, GRID_SYNC, FLAGGED)
        h, c = _lstm_cell(matvec(w_i, h_in) + x_i, matvec(w_f, h_in) + x_f, matvec(w_g, h_in) + x_g,
                          matvec(w_o, h_in) + x_o, Y, row * H + units, Y, Y, 0, H, 0, c, valid, False)
        vector_exchange(h, HQ, COUNT, b, s, b, B, H, units, valid, GRID_SYNC, FLAGGED)
        x_i, x_f, x_g, x_o = n_i, n_f, n_g, n_o
    tl.store(HN + b * H + units, h, mask=valid)
    tl.store(CN + b * H + units, c, mask=valid)


@triton.jit
def _lstm_fwd_tiled_kernel(GX, W, WR, HQ, CS, HF, LEN, Y, C, G, HN, CN, COUNT, HS, D, Z, ZC, T, B, H, P,
                           ZS: tl.constexpr,
                           REVERSE: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr,
                           BLOCK_K: tl.constexpr, DOT_F32: tl.constexpr, PRECISION: tl.constexpr,
                           GRID_SYNC: tl.constexpr, STORE: tl.constexpr, PROJ: tl.constexpr,
                           K_RES: tl.constexpr, DROP: tl.constexpr, ZONE: tl.constexpr, ZONE_C: tl.constexpr):
    # h is P wide (HQ: (2, B, P)), c H wide (CS: (2, B, H)); P == H without a projection. With PROJ a
    # second phase projects the unprojected h (HF: (T, B, H) when STORE, else (B, H)) with WR (P, H).
    # K_RES > 0: this program holds its column tile of W_hh for the whole sequence (resident regime).
    # Without PROJ only: DROP puts h * D (recurrent dropout, D (B, H)) in HQ (the host puts h_0 * D in slot 0);
    # ZONE, ZONE_C: zoneout (_lstm_cell), with HS (2, B, H) holding h as it is, in the accumulator type.
    rows, length = batch_rows(LEN, B, BLOCK_B)
    w_all = resident_gates(W, H, P, 4, BLOCK_H, K_RES, DOT_F32)  # (K_RES, 4 BH), or W when K_RES == 0
    state_rows = rows[:, None] * H  # (BB, 1) offsets into a (B, H) buffer
    h_rows = rows[:, None] * P  # ... and into a (B, P) one
    h_slot, c_slot = plane(B, P), plane(B, H)  # the distance between the slots of HQ, and of CS and HS
    for s in range(0, T):
        active, row_t = step_rows(s, length, rows, B, REVERSE)  # (BB, 1) each
        last = active & (s == length - 1)[:, None]
        h_src = (s % 2) * h_slot  # h_{t-1}, c_{t-1} in slot s % 2; h_t, c_t go to the other
        c_src = (s % 2) * c_slot
        for j in range(tl.program_id(1), tl.cdiv(H, BLOCK_H), tl.num_programs(1)):
            cols, am = column_tile(j, active, H, BLOCK_H)
            state = state_rows + cols[None, :]
            out = row_t * H + cols[None, :]
            if PROJ:
                if STORE:
                    h_target, h_off = HF, out
                else:
                    h_target, h_off = HF, state
            else:
                h_target, h_off = Y, out
            gates = row_t * (4 * H) + cols[None, :]
            x_i, x_f, x_g, x_o = _lstm_inputs(GX, gates, H, am, CS.dtype.element_ty)
            c_prev = tl.load(CS + c_src + state, mask=am, other=0.0)
            product = recurrent_product(HQ + h_src, h_rows, active, W, 0, gate_rows(j, H, 4, BLOCK_H), 4 * H, P, P,
                                        True, BLOCK_K, DOT_F32, PRECISION, w_all, K_RES)
            if ZONE:
                h_prev = tl.load(HS + c_src + state, mask=am, other=0.0)
            else:
                h_prev = 0.0  # unused
            a_i, a_f, a_g, a_o = _lstm_split(product, x_i, x_f, x_g, x_o, BLOCK_B, BLOCK_H)
            h_new, c_new = _lstm_cell(a_i, a_f, a_g, a_o, h_target, h_off, C, G, gates, H, out, c_prev, am, STORE,
                                      h_prev, cols, Z, ZC, ZS, ZONE, ZONE_C)
            tl.store(CS + c_slot - c_src + state, c_new, mask=am)
            tl.store(CN + state, c_new, mask=am & last)
            if not PROJ:
                if ZONE:
                    tl.store(HS + c_slot - c_src + state, h_new, mask=am)
                h_in = recurrent_operand(h_new, D, state, am, DROP)
                tl.store(HQ + h_slot - h_src + state, h_in.to(HQ.dtype.element_ty), mask=am)
                tl.store(HN + state, h_new, mask=am & last)
        if PROJ:
            step_barrier(COUNT + tl.program_id(0), (2 * s + 1) * tl.num_programs(1), GRID_SYNC)
            if STORE:
                hf_rows = row_t * H
            else:
                hf_rows = state_rows
            for j in range(tl.program_id(1), tl.cdiv(P, BLOCK_H), tl.num_programs(1)):
                cols, am = column_tile(j, active, P, BLOCK_H)
                h = recurrent_product(HF, hf_rows, active, WR, 0, cols, P, H, H, True, BLOCK_K, DOT_F32, PRECISION,
                                      WR, 0)
                tl.store(Y + row_t * P + cols[None, :], h.to(Y.dtype.element_ty), mask=am)
                tl.store(HQ + h_slot - h_src + h_rows + cols[None, :], h.to(HQ.dtype.element_ty), mask=am)
                tl.store(HN + h_rows + cols[None, :], h, mask=am & last)
            step_barrier(COUNT + tl.program_id(0), (2 * s + 2) * tl.num_programs(1), GRID_SYNC)
        else:
            step_barrier(COUNT + tl.program_id(0), (s + 1) * tl.num_programs(1), GRID_SYNC)


@triton.jit
def _lstm_bwd_tiled_kernel(G, C, C0, DY, W, WR, LEN, DG, DQ, DHS, DCS, DHP, COUNT, D, DHQ, Z, ZC, T, B, H, P,
                           ZS: tl.constexpr,
                           REVERSE: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr,
                           BLOCK_K: tl.constexpr, DOT_F32: tl.constexpr, PRECISION: tl.constexpr,
                           GRID_SYNC: tl.constexpr, PROJ: tl.constexpr, K_RES: tl.constexpr, DROP: tl.constexpr,
                           ZONE: tl.constexpr, ZONE_C: tl.constexpr):
    # DHS (B, P), DCS (B, H): dh and dc entering each step, from dh_n and dc_n in to dh_0 and dc_0 out.
    # With PROJ, DHP (T, B, P) keeps each step's full dh_t (for the unprojected h's gradient and dW_hr).
    # DQ (2, B, 4H): a step's gate gradients for the product (exchange_rows); DG (T, B, 4H) keeps them all.
    # K_RES > 0: this program holds its column tile of W_hh for the whole sequence (resident regime).
    # Without PROJ only: with DROP or ZONE the product's part of dh goes to DHQ (B, H) and the next step adds it
    # (through the mask D with DROP; the host adds the last one) to zoneout's direct part, kept in DHS: added in
    # the product's layout they spilled the resident kernel at H = 256 and the wide one at 1024 (fit.py, sm_90).
    rows, length = batch_rows(LEN, B, BLOCK_B)
    w_i = resident_slice(W, 0, P, H, P, False, BLOCK_H, K_RES, DOT_F32)  # (K_RES, BH), or W when K_RES == 0
    w_f = resident_slice(W, H, P, H, P, False, BLOCK_H, K_RES, DOT_F32)
    w_g = resident_slice(W, 2 * H, P, H, P, False, BLOCK_H, K_RES, DOT_F32)
    w_o = resident_slice(W, 3 * H, P, H, P, False, BLOCK_H, K_RES, DOT_F32)
    state_rows = rows[:, None] * H
    h_rows = rows[:, None] * P
    for step in range(0, T):
        s = T - 1 - step
        active, row_t = step_rows(s, length, rows, B, REVERSE)  # (BB, 1) each
        q_rows = exchange_rows(step, rows, B, 4 * H)
        if PROJ:
            for j in range(tl.program_id(1), tl.cdiv(P, BLOCK_H), tl.num_programs(1)):
                cols, am = column_tile(j, active, P, BLOCK_H)
                dh = tl.load(DHS + h_rows + cols[None, :], mask=am, other=0.0)
                dh += tl.load(DY + row_t * P + cols[None, :], mask=am, other=0.0).to(dh.dtype)
                tl.store(DHP + row_t * P + cols[None, :], dh, mask=am)
            step_barrier(COUNT + tl.program_id(0), (2 * step + 1) * tl.num_programs(1), GRID_SYNC)
        for j in range(tl.program_id(1), tl.cdiv(H, BLOCK_H), tl.num_programs(1)):
            cols, am = column_tile(j, active, H, BLOCK_H)
            out = row_t * H + cols[None, :]
            state = state_rows + cols[None, :]
            if PROJ:  # the gradient of the unprojected h: dh_t @ W_hr
                dh_t = recurrent_product(DHP, row_t * P, active, WR, 0, cols, H, P, H, False, BLOCK_K, DOT_F32,
                                         PRECISION, WR, 0)
            else:
                dh_t = tl.load(DHS + state, mask=am, other=0.0)
                if DROP:
                    dh_t += tl.load(DHQ + state, mask=am, other=0.0) * dropout_tile(D, state, am, dh_t.dtype)
                elif ZONE:
                    dh_t += tl.load(DHQ + state, mask=am, other=0.0)
                dh_t += tl.load(DY + out, mask=am, other=0.0).to(dh_t.dtype)
            c_prev = load_previous(C, C0, out, state, s, B, H, am, DCS.dtype.element_ty, REVERSE)
            dc_t = tl.load(DCS + state, mask=am, other=0.0)
            # zoneout (without PROJ only): the parts going straight to h_{t-1} and c_{t-1} (_lstm_zone_grads) are
            # stored at once, not held in registers across the cell's backward (held, the wide kernel at
            # H = 1024 spilled 16-32 bytes, fit.py, sm_90); dh's is added to the product's part next step, dc's
            # read back below
            if ZONE:
                dh_t, zoned = zone_split(Z, out, cols, ZS, am, dh_t)
                tl.store(DHS + state, zoned, mask=am)
            elif DROP:
                tl.store(DHS + state, tl.zeros_like(dh_t), mask=am)
            if ZONE_C:
                dc_t, zoned_c = zone_split(ZC, out, cols, ZS, am, dc_t)
                tl.store(DCS + state, zoned_c, mask=am)
            d_i, d_f, d_g, d_o, dc_prev, _, _ = _lstm_cell_grads(G, C, DG, row_t * (4 * H) + cols[None, :], out, H,
                                                                 c_prev, dh_t, dc_t, am, ZONE_C)
            if ZONE_C:
                dc_prev += tl.load(DCS + state, mask=am, other=0.0)
            tl.store(DCS + state, dc_prev, mask=am)
            q = DQ + q_rows + cols[None, :]
            tl.store(q, d_i.to(DQ.dtype.element_ty), mask=am)
            tl.store(q + H, d_f.to(DQ.dtype.element_ty), mask=am)
            tl.store(q + 2 * H, d_g.to(DQ.dtype.element_ty), mask=am)
            tl.store(q + 3 * H, d_o.to(DQ.dtype.element_ty), mask=am)
        if PROJ:
            step_barrier(COUNT + tl.program_id(0), (2 * step + 2) * tl.num_programs(1), GRID_SYNC)
        else:
            step_barrier(COUNT + tl.program_id(0), (step + 1) * tl.num_programs(1), GRID_SYNC)
        for j in range(tl.program_id(1), tl.cdiv(P, BLOCK_H), tl.num_programs(1)):
            cols, am = column_tile(j, active, P, BLOCK_H)
            if K_RES:  # a product a gate (one over all four spilled 40 bytes at H = 256 for sm_90, and its
                # slices need 256 KiB at 1024; a gate's operand takes a quarter of the staging: fit.py)
                dh = resident_product(DQ, q_rows, active, w_i, H, K_RES, PRECISION)
                dh += resident_product(DQ + H, q_rows, active, w_f, H, K_RES, PRECISION)
                dh += resident_product(DQ + 2 * H, q_rows, active, w_g, H, K_RES, PRECISION)
                dh += resident_product(DQ + 3 * H, q_rows, active, w_o, H, K_RES, PRECISION)
            else:
                # one product over every gate's gradient (K = 4H: DQ's rows and W's are gate-major)
                dh = recurrent_product(DQ, q_rows, active, W, 0, cols, P, 4 * H, P, False, BLOCK_K, DOT_F32, PRECISION,
                                       W, 0)
            if DROP or ZONE:
                tl.store(DHQ + h_rows + cols[None, :], dh, mask=am)
            else:
                tl.store(DHS + h_rows + cols[None, :], dh, mask=am)
        tl.debug_barrier()  # this program reads its dh tiles back next step, in another thread layout


@autocast_off
def _lstm_forward(x: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor | None, w_hh: Tensor, b_ih: Tensor | None,
                  b_hh: Tensor | None, w_hr: Tensor | None, batch_sizes: list[int] | None, reverse: bool, store: bool,
                  drop: Tensor | None = None, zone: Tensor | None = None, zone_c: Tensor | None = None,
                  norm: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The fused forward (the custom op ``rnnlab::lstm_fused``, and called directly in plain inference): Y (T, B, P),
    h_n (B, P), c_n (B, H) (P = H without a projection w_hr (P, H)), and for the backward the gates'
    pre-activations G (T, B, 4H), the cell states C (T, B, H) and with a projection the unprojected outputs HF
    (T, B, H); G and C in the stored type, HF in the accumulator's (empty unless ``store``; HF also without a
    projection). ``drop``, ``zone`` and ``zone_c``: recurrent dropout's mask and zoneout's weights for h and c
    (rnnlab.recurrence.variants.Masks; not with a projection); C then holds the zoned-out cell states.
    ``norm``: layer norm's recurrent gains, c's gain and c's bias, concatenated (6H,); x then holds the
    normalised input projections (T, B, 4H) (``w_ih`` None), and for the backward the normalised recurrent
    products RH (T, B, 4H, stored type) and per row the statistics NS (T, B, 3) come last (else empty)."""
    T, B, _ = x.shape
    H, P = w_hh.shape[0] // 4, w_hh.shape[1]
    masks = variant_args(drop, zone, zone_c, cell_state=True)
    if w_hr is not None and (masks["DROP"] or masks["ZONE"] or masks["ZONE_C"]):
        raise NotImplementedError("LSTM: the fused kernels take recurrent dropout and zoneout without proj_size "
                                  "only; use backend='torch' for proj_size with them")
    plain = not store and all(t is None for t in (drop, zone, zone_c, norm))
    launch = plan("lstm", x, H, B, proj=w_hr is not None, norm=norm is not None, inference=plain)
    acc, keep = accumulator(x.dtype), stored(x.dtype)
    kept = T if store else 0
    gx = input_projection(x, w_ih, None if b_ih is None else b_ih + b_hh).contiguous()  # (T, B, 4H)
    normed = kept if norm is not None else 0
    RH = torch.zeros(normed, B, 4 * H, dtype=keep, device=x.device)
    NS = torch.zeros(normed, B, 3, dtype=acc, device=x.device)
    lengths = lengths_from(batch_sizes, T, B, x.device)
    Y = torch.zeros(T, B, P, dtype=x.dtype, device=x.device)
    C = torch.zeros(kept, B, H, dtype=keep, device=x.device)
    G = torch.zeros(kept, B, 4 * H, dtype=keep, device=x.device)
    # the unprojected outputs: every step's when training, else only the current step's
    HF = x.new_zeros((T if store else 1, B, H) if w_hr is not None else (0, B, H), dtype=acc)
    hn = torch.empty(B, P, dtype=acc, device=x.device)
    cn = torch.empty(B, H, dtype=acc, device=x.device)
    w = w_hh.contiguous()
    if launch.regime == "held":
        from .held import _lstm_fwd_held_kernel, _lstm_fwd_held_split_kernel, launch_split  # Gluon's (Triton >= 3.6)

        if launch.meta.get("GRID_SYNC"):  # split over programs, which exchange h
            launch_split(_lstm_fwd_held_split_kernel, launch, gx, w, h0.contiguous(), c0.contiguous(), lengths, Y,
                         hn, cn, *vector_buffers(launch, h0, keep), B, H, REVERSE=reverse)
        else:
            _lstm_fwd_held_kernel[launch.grid](gx, w, h0.contiguous(), c0.contiguous(), lengths, Y, hn, cn, B, H,
                                               REVERSE=reverse, **launch.meta)
    elif launch.regime == "vector":
        _lstm_fwd_vector_kernel[launch.grid](gx, w, h0.contiguous(), c0.contiguous(), lengths, Y, hn, cn,
                                             *vector_buffers(launch, h0, keep), B=B, H=H, REVERSE=reverse,
                                             **launch.meta)
    elif launch.tiled:
        wr = w if w_hr is None else w_hr.contiguous()
        hq = ping_pong(h0 if drop is None else h0.to(acc) * drop, keep)  # what W_hh multiplies
        hs = ping_pong(h0, acc) if zone is not None else None
        _lstm_fwd_tiled_kernel[launch.grid](gx, w, wr, hq, ping_pong(c0, acc), HF, lengths, Y, C, G,
                                            hn, cn, launch.counters(x.device), hs, T=T, B=B, H=H, P=P, REVERSE=reverse,
                                            STORE=store, PROJ=w_hr is not None, **launch.meta, **masks)
    else:
        _lstm_fwd_kernel[launch.grid](gx, w, h0.contiguous(), c0.contiguous(), lengths, Y, C, G, hn, cn, RH=RH, NS=NS,
                                      T=T, B=B, H=H, REVERSE=reverse, STORE=store, **launch.meta, **masks,
                                      **norm_args(norm))
    return Y, hn.to(x.dtype), cn.to(c0.dtype), G, C, HF[:kept], RH, NS


lstm_fused = torch.library.custom_op("rnnlab::lstm_fused", mutates_args=())(_lstm_forward)


@lstm_fused.register_fake
def _(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, reverse, store, drop=None, zone=None, zone_c=None,
      norm=None):
    T, B, _ = x.shape
    H, P = w_hh.shape[0] // 4, w_hh.shape[1]
    kept, acc, keep = T if store else 0, accumulator(x.dtype), stored(x.dtype)
    normed = kept if norm is not None else 0
    return (x.new_empty(T, B, P), x.new_empty(B, P), c0.new_empty(B, H), x.new_empty(kept, B, 4 * H, dtype=keep),
            x.new_empty(kept, B, H, dtype=keep), x.new_empty(kept if w_hr is not None else 0, B, H, dtype=acc),
            x.new_empty(normed, B, 4 * H, dtype=keep), x.new_empty(normed, B, 3, dtype=acc))


@torch.library.custom_op("rnnlab::lstm_fused_backward", mutates_args=())
@autocast_off
def lstm_fused_backward(dY: Tensor, dh_n: Tensor, dc_n: Tensor, x: Tensor, h0: Tensor, c0: Tensor,
                        w_ih: Tensor | None, w_hh: Tensor, w_hr: Tensor | None, G: Tensor, C: Tensor, HF: Tensor,
                        Y: Tensor, RH: Tensor, NS: Tensor, batch_sizes: list[int] | None, reverse: bool,
                        need: list[bool], drop: Tensor | None = None, zone: Tensor | None = None,
                        zone_c: Tensor | None = None, norm: Tensor | None = None
                        ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Gradients of x, h0, c0, w_ih, w_hh, the bias, w_hr and the layer-norm parameters ``norm`` (each empty where
    ``need`` says it is not wanted)."""
    T, B, _ = x.shape
    H, P = w_hh.shape[0] // 4, w_hh.shape[1]
    launch = plan("lstm", x, H, B, proj=w_hr is not None, backward=True, norm=norm is not None)
    acc = accumulator(x.dtype)
    lengths = lengths_from(batch_sizes, T, B, x.device)
    dG = torch.zeros(T, B, 4 * H, dtype=acc, device=x.device)
    DHP = x.new_zeros((T, B, P) if w_hr is not None else (0, B, P), dtype=acc)  # each step's dh (projection)
    w = w_hh.contiguous()
    masks = variant_args(drop, zone, zone_c, cell_state=True)
    dR = torch.zeros_like(dG) if norm is not None else dG  # the recurrent product's gradients
    dLN = torch.zeros(launch.grid[0] if norm is not None else 0, 2, H, dtype=acc, device=x.device)
    if launch.tiled:
        dh0, dc0 = row_major_copy(dh_n, acc), row_major_copy(dc_n, acc)  # (B, H) each, updated in place
        wr = w if w_hr is None else w_hr.contiguous()
        dq = torch.empty(2, B, 4 * H, dtype=stored(x.dtype), device=x.device)  # a step's dG for the product
        split = drop is not None or zone is not None
        dhq = torch.zeros_like(dh0) if split else None  # the product's part of dh, with dropout or zoneout
        _lstm_bwd_tiled_kernel[launch.grid](G, C, c0.contiguous(), dY.contiguous(), w, wr, lengths, dG, dq, dh0, dc0,
                                            DHP, launch.counters(x.device), DHQ=dhq, T=T, B=B, H=H, P=P,
                                            REVERSE=reverse, PROJ=w_hr is not None, **launch.meta, **masks)
        if split:
            dh0 += dhq if drop is None else dhq * drop
    else:
        dh0 = torch.empty(B, H, dtype=acc, device=x.device)
        dc0 = torch.empty(B, H, dtype=acc, device=x.device)
        _lstm_bwd_kernel[launch.grid](G, C, c0.contiguous(), dY.contiguous(), dh_n.contiguous(), dc_n.contiguous(),
                                      w, lengths, dG, dh0, dc0, RH=RH, NS=NS, DR=dR, DLN=dLN, T=T, B=B, H=H,
                                      REVERSE=reverse, **launch.meta, **masks, **norm_args(norm))
    # weight gradients accumulate in fp32 (fp64 for fp64 input) whatever the input dtype
    dx, dw_ih, dw_hh = projection_grads(dG, dR, x, h0, Y, w_ih, w_hh, batch_sizes, reverse, *need[:1], *need[3:5],
                                        drop)
    db = bias_grad(dG, need[5])
    dw_hr = linear_grads(DHP, HF, w_hr.to(acc), False, True)[1] if need[6] else None  # sum_t dh_t^T hf_t
    d_norm = norm_grads(dG, RH, dLN) if need[7] else None
    likes = (x, h0, c0, w_hh, w_hh, w_hh, w_hh if w_hr is None else w_hr, w_hh if norm is None else norm)
    return cast_grads((dx, dh0, dc0, dw_ih, dw_hh, db, dw_hr, d_norm), likes, need)


@lstm_fused_backward.register_fake
def _(dY, dh_n, dc_n, x, h0, c0, w_ih, w_hh, w_hr, G, C, HF, Y, RH, NS, batch_sizes, reverse, need, drop=None,
      zone=None, zone_c=None, norm=None):
    proj = w_hh.new_empty(0) if w_hr is None else w_hr
    return fake_grads((x, h0, c0, w_hh if w_ih is None else w_ih, w_hh, w_hh.new_empty(w_hh.shape[0]), proj,
                       w_hh if norm is None else norm), need)


def _lstm_setup(ctx, inputs, output):
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, reverse, _, drop, zone, zone_c, norm = inputs
    Y, _, _, G, C, HF, RH, NS = output
    ctx.save_for_backward(x, h0, c0, w_ih, w_hh, w_hr, G, C, HF, Y, RH, NS, drop, zone, zone_c, norm, b_ih, b_hh)
    ctx.batch_sizes, ctx.reverse, ctx.has_bias = batch_sizes, reverse, b_ih is not None
    ctx.mark_non_differentiable(G, C, HF, RH, NS)


def _lstm_backward(ctx, dY, dh_n, dc_n, _dG, _dC, _dHF, _dRH, _dNS):
    given, need = input_needs(ctx, 15)
    bias = ctx.has_bias and (need[5] or need[6])
    *saved, drop, zone, zone_c, norm, b_ih, b_hh = ctx.saved_tensors
    if torch.is_grad_enabled():  # create_graph=True: gradients with a graph, by the step-by-step recurrence
        x, h0, c0, w_ih, w_hh, w_hr = saved[:6]
        H = w_hh.shape[0] // 4
        got = recomputed_grads("LSTM", [x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, norm],
                               [*need[:8], need[14]],
                               [dY, dh_n, dc_n], ctx.batch_sizes, ctx.reverse, Masks(drop, zone, zone_c),
                               [4 * H, H, H], accumulator(x.dtype))
        return (*got[:8], None, None, None, None, None, None, got[8])[:given]
    grads = lstm_fused_backward(dY, dh_n, dc_n, *saved, ctx.batch_sizes, ctx.reverse,
                                [*need[:5], bias, need[7], need[14]], drop, zone, zone_c, norm)
    dx, dh0, dc0, dw_ih, dw_hh, db, dw_hr, d_norm = grads
    every = (*wanted((dx, dh0, dc0, dw_ih, dw_hh), need[:5]), *wanted((db, db.clone()), (bias, bias)),
             *wanted((dw_hr,), need[7:8]), None, None, None, None, None, None, *wanted((d_norm,), need[14:]))
    return every[:given]


lstm_fused.register_autograd(_lstm_backward, setup_context=_lstm_setup)


def lstm_scan_triton(x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None, w_hr=None, batch_sizes=None, reverse=False,
                     masks=None, norms=None):
    """Fused LSTM over a sequence; arguments and outputs as :func:`rnnlab.recurrence.lstm_scan`, ``masks``
    (rnnlab.recurrence.variants.Masks) for recurrent dropout and zoneout and ``norms`` (variant_scan's) for
    layer norm (both without ``w_hr``)."""
    x, w_ih, norm = fused_norm(x, w_ih, norms, ("hh", "c", "c_bias"))
    tensors = (x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr)
    store = needs_backward(*tensors, norm)
    forward = _lstm_forward if plain_inference(*tensors, norm, store=store) else lstm_fused
    drawn = (None, None, None) if masks is None else (masks.dropout, masks.zoneout, masks.zoneout_cell)
    return forward(*tensors, batch_sizes, reverse, store, *drawn, norm)[:3]
