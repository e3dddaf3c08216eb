"""Fused GRU recurrence, forward and backward through time, in every regime (see lstm.py for the
layouts). Gate order r, z, n as torch.nn; b_hn stays inside r * (h W_hn^T + b_hn), so the kernel adds
the hidden bias itself and stores h W_hn^T + b_hn for the backward.
"""

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
def _gru_inputs(GX, BHH, gates, cols, H, mask, ACC: tl.constexpr):
    """A (BB, BH) tile's step inputs, in ACC, in the cell's layout (see lstm._lstm_inputs): the r and z input
    projections plus their hidden biases and the n input projection; GX (T, B, 3H) at the offsets ``gates``
    of r's units (z's H further, n's 2H), zero outside ``mask``; the hidden biases BHH (3H,) at ``cols``
    (BH,). The hidden biases are loaded every step: held across the loop they took 3 more tiles of
    registers and the fp32 persistent kernel spilled 8-24 bytes at its 128 (fit.py, sm_90)."""
    b_mask = cols < H
    x_r = tl.load(GX + gates, mask=mask, other=0.0).to(ACC) + tl.load(BHH + cols, mask=b_mask, other=0.0).to(ACC)
    x_z = (tl.load(GX + gates + H, mask=mask, other=0.0).to(ACC)
           + tl.load(BHH + H + cols, mask=b_mask, other=0.0).to(ACC))
    x_n = tl.load(GX + gates + 2 * H, mask=mask, other=0.0).to(ACC)
    return x_r, x_z, x_n


@triton.jit
def _gru_cell(p_r, p_z, p_n, x_r, x_z, x_n, BHH, cols, Y, G, GHN, gates, out, H, h, mask, Z, ZS, STORE: tl.constexpr,
              ZONE: tl.constexpr):
    """One step of a (BB, BH) tile, every regime (or of a (BU,) row, the vector regime): the recurrent products
    h W_hh^T of r, z and n (split_gates' of one product over all gates, whose fourth block W_hh lacks) are added
    to _gru_inputs' tiles (h W_hn^T to b_hn, from BHH (3H,) at ``cols`` (BH,)); r, z and n update h (fp32);
    stores h (Y) and, when STORE (training), the gates' pre-activations (G at ``gates``, z's H and n's 2H
    further; the backward recomputes the gates from them) and h W_hn^T + b_hn (GHN); returns the new h. With
    ZONE the new h is zoned out towards h by the weights Z (zone_weight's, ZS) before it is stored."""
    a_r, a_z = p_r + x_r, p_z + x_z
    ghn = p_n + tl.load(BHH + 2 * H + cols, mask=cols < H, other=0.0).to(p_n.dtype)
    r, z = sigmoid(a_r), sigmoid(a_z)
    a_n = x_n + r * ghn
    n = tanh(a_n)
    h_new = n + z * (h - n)
    if ZONE:
        h_new = lerp(h_new, h, zone_weight(Z, out, cols, ZS, mask, h.dtype))
    tl.store(Y + out, h_new.to(Y.dtype.element_ty), mask=mask)
    if STORE:
        tl.store(G + gates, a_r.to(G.dtype.element_ty), mask=mask)
        tl.store(G + gates + H, a_z.to(G.dtype.element_ty), mask=mask)
        tl.store(G + gates + 2 * H, a_n.to(G.dtype.element_ty), mask=mask)
        tl.store(GHN + out, ghn.to(GHN.dtype.element_ty), mask=mask)
    return h_new


@triton.jit
def _gru_cell_grads(G, GHN, DG, DGH, gates, out, H, h_prev, dh, mask):
    """The backward of _gru_cell for a tile: from the gradient dh reaching h_t, stores the input-side (DG)
    and hidden-side (DGH) pre-activation gradients and returns the hidden-side ones with the direct part
    of the gradient passed on to h_{t-1} (dh * z; the products with W_hh come on top)."""
    r = sigmoid(tl.load(G + gates, mask=mask, other=0.0).to(dh.dtype))  # recomputed from the pre-activations
    z = sigmoid(tl.load(G + gates + H, mask=mask, other=0.0).to(dh.dtype))
    n = tanh(tl.load(G + gates + 2 * H, mask=mask, other=0.0).to(dh.dtype))
    d_z = dh * (h_prev - n) * z * (1.0 - z)
    d_n = dh * (1.0 - z) * (1.0 - n * n)
    d_r = d_n * tl.load(GHN + out, mask=mask, other=0.0).to(dh.dtype) * r * (1.0 - r)
    tl.store(DG + gates, d_r, mask=mask)
    tl.store(DG + gates + H, d_z, mask=mask)
    tl.store(DG + gates + 2 * H, d_n, mask=mask)
    tl.store(DGH + gates, d_r, mask=mask)
    tl.store(DGH + gates + H, d_z, mask=mask)
    tl.store(DGH + gates + 2 * H, d_n * r, mask=mask)
    return d_r, d_z, d_n * r, dh * z


@triton.jit
def _gru_fwd_kernel(GX, W, BHH, H0, LEN, Y, G, GHN, HN, D, Z, LN, RH, NS, T, B, H, ZS: tl.constexpr,
                    REVERSE: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, DOT_F32: tl.constexpr,
                    PRECISION: tl.constexpr, STORE: tl.constexpr, DROP: tl.constexpr, ZONE: tl.constexpr,
                    NORM: tl.constexpr):
    # DROP: W_hh multiplies h * D (recurrent dropout, D (B, H)); ZONE: zoneout by the weights Z (_gru_cell).
    # NORM: the recurrent product layer-normalised (gains LN (3H,)) before b_hh; training stores the normalised
    # products RH (T, B, 3H) and their 1 / std NS (T, B, 1). The input projections GX come normalised.
    rows, cols, m2, state, length = batch_tile(LEN, B, H, BLOCK_B, BLOCK_H)
    # (BH, 4 BH): row = input unit, column = gate (r, z, n, none) and output unit
    w = gates_block(W, 0, H, H, 3, BLOCK_H, BLOCK_H, DOT_F32)
    h = tl.load(H0 + state, mask=m2, other=0.0).to(HN.dtype.element_ty)  # the accumulator type
    if NORM:
        ln_cols, ln_valid = norm_columns(H, 3, 4 * BLOCK_H, BLOCK_H)  # (4 BH,) each, the product's columns
        gain = tl.load(LN + ln_cols, mask=ln_valid, other=0.0).to(h.dtype)
    else:
        gain = 0.0  # unused
    active, row_t = step_rows(0, length, rows, B, REVERSE)  # (BB, 1) each
    x_r, x_z, x_n = _gru_inputs(GX, BHH, row_t * (3 * H) + cols[None, :], cols, H, m2 & active, h.dtype)
    for s in range(0, T):
        active, row_t = step_rows(s, length, rows, B, REVERSE)  # recomputed, not carried: see _lstm_fwd_kernel
        # the next step's inputs, loaded a step ahead (they do not depend on h)
        next_active, next_row = step_rows(s + 1, length, rows, B, REVERSE)
        n_r, n_z, n_n = _gru_inputs(GX, BHH, next_row * (3 * H) + cols[None, :], cols, H, m2 & next_active, h.dtype)
        h_in = recurrent_operand(h, D, state, m2, DROP)
        product = dot(h_in.to(w.dtype), w, input_precision=PRECISION, out_dtype=h.dtype)
        if NORM:
            product, _, rstd = normalise(product, ln_valid, 3 * H)
            if STORE:
                tl.store(RH + row_t * (3 * H) + ln_cols[None, :], product.to(RH.dtype.element_ty),
                         mask=ln_valid[None, :] & active)
                tl.store(NS + row_t, rstd, mask=active)
            product = product * gain[None, :]
        p_r, p_z, p_n, _ = split_gates(product, BLOCK_B, BLOCK_H)
        h_new = _gru_cell(p_r, p_z, p_n, x_r, x_z, x_n, BHH, cols, Y, G, GHN, row_t * (3 * H) + cols[None, :],
                          row_t * H + cols[None, :], H, h, m2 & active, Z, ZS, STORE, ZONE)
        h = tl.where(active, h_new, h)
        x_r, x_z, x_n = n_r, n_z, n_n
    tl.store(HN + state, h, mask=m2)


@triton.jit
def _gru_bwd_kernel(G, GHN, Y, H0, DY, DHN, W, LEN, DG, DGH, DH0, D, Z, LN, RH, NS, DR, T, B, H, ZS: tl.constexpr,
                    REVERSE: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, DOT_F32: tl.constexpr,
                    PRECISION: tl.constexpr, DROP: tl.constexpr, ZONE: tl.constexpr, NORM: tl.constexpr):
    # NORM (_gru_fwd_kernel's): DR (T, B, 3H) takes the gradients of the recurrent product before its layer
    # norm (what dW_hh needs; DGH keeps those after it)
    rows, cols, m2, state, length = batch_tile(LEN, B, H, BLOCK_B, BLOCK_H)
    w_r = gate_block(W, 0, H, BLOCK_H, False, DOT_F32)
    w_z = gate_block(W, 1, H, BLOCK_H, False, DOT_F32)
    w_n = gate_block(W, 2, H, BLOCK_H, False, DOT_F32)
    dh = tl.load(DHN + state, mask=m2, other=0.0).to(DH0.dtype.element_ty)  # the accumulator type
    if NORM:  # the recurrent gains gate by gate, (BH,) each
        g_r = tl.load(LN + cols, mask=cols < H, other=0.0).to(dh.dtype)
        g_z = tl.load(LN + H + cols, mask=cols < H, other=0.0).to(dh.dtype)
        g_n = tl.load(LN + 2 * H + cols, mask=cols < H, other=0.0).to(dh.dtype)
    else:
        g_r, g_z, g_n = 0.0, 0.0, 0.0  # unused
    for step in range(0, T):
        s = T - 1 - step
        active, row_t = step_rows(s, length, rows, B, REVERSE)  # (BB, 1) each
        am = m2 & active
        out = row_t * H + cols[None, :]
        h_prev = load_previous(Y, H0, out, state, s, B, H, am, DG.dtype.element_ty, REVERSE)
        dh_t = dh + tl.load(DY + out, mask=am, other=0.0).to(dh.dtype)
        if ZONE:  # h_t = lerp(h'_t, h_{t-1}, w): dh'_t = (1 - w) dh_t, and w dh_t goes straight to h_{t-1}
            d_cell, zoned = zone_split(Z, out, cols, ZS, am, dh_t)
        else:
            d_cell = dh_t
        d_r, d_z, d_hn, dh_new = _gru_cell_grads(G, GHN, DG, DGH, row_t * (3 * H) + cols[None, :], out, H, h_prev,
                                                 d_cell, am)
        if ZONE:
            dh_new += zoned
        if NORM:  # through the recurrent product's layer norm, gate by gate (as the LSTM's)
            gates = row_t * (3 * H) + cols[None, :]
            r_r = tl.load(RH + gates, mask=am, other=0.0).to(dh.dtype)  # the normalised products
            r_z = tl.load(RH + gates + H, mask=am, other=0.0).to(dh.dtype)
            r_n = tl.load(RH + gates + 2 * H, mask=am, other=0.0).to(dh.dtype)
            d_r, d_z, d_hn = d_r * g_r[None, :], d_z * g_z[None, :], d_hn * g_n[None, :]
            s_r, q_r = norm_sums(d_r, r_r)
            s_z, q_z = norm_sums(d_z, r_z)
            s_n, q_n = norm_sums(d_hn, r_n)
            mean_d, mean_dx = (s_r + s_z + s_n) / (3 * H), (q_r + q_z + q_n) / (3 * H)
            rstd = tl.load(NS + row_t, mask=active, other=1.0)
            d_r = norm_grad_tile(d_r, r_r, rstd, mean_d, mean_dx, cols < H)
            d_z = norm_grad_tile(d_z, r_z, rstd, mean_d, mean_dx, cols < H)
            d_hn = norm_grad_tile(d_hn, r_n, rstd, mean_d, mean_dx, cols < H)
            tl.store(DR + gates, d_r, mask=am)
            tl.store(DR + gates + H, d_z, mask=am)
            tl.store(DR + gates + 2 * H, d_hn, mask=am)
        if DROP:
            back = dot(d_r.to(w_r.dtype), w_r, input_precision=PRECISION)
            back += dot(d_z.to(w_z.dtype), w_z, input_precision=PRECISION)
            back += dot(d_hn.to(w_n.dtype), w_n, input_precision=PRECISION)
            dh_new += back * dropout_tile(D, state, m2, dh.dtype)
        else:
            dh_new += dot(d_r.to(w_r.dtype), w_r, input_precision=PRECISION)
            dh_new += dot(d_z.to(w_z.dtype), w_z, input_precision=PRECISION)
            dh_new += dot(d_hn.to(w_n.dtype), w_n, input_precision=PRECISION)
        dh = tl.where(active, dh_new, dh)
    tl.store(DH0 + state, dh, mask=m2)


@triton.jit
def _gru_fwd_vector_kernel(GX, W, BHH, H0, LEN, Y, HN, HQ, COUNT, B, H, REVERSE: tl.constexpr, BLOCK_H: tl.constexpr,
                           BLOCK_U: tl.constexpr, GRID_SYNC: tl.constexpr, FLAGGED: tl.constexpr):
    # The vector regime (dispatch.py; lstm._lstm_fwd_vector_kernel): program (b, j)'s units, their rows of the r, z
    # and n blocks of W_hh held in registers.
    b, units, valid, length = vector_row(LEN, H, BLOCK_U, GRID_SYNC)
    acc: tl.constexpr = HN.dtype.element_ty
    w_r = vector_block(W, 0, H, units, BLOCK_H, acc)
    w_z = vector_block(W, 1, H, units, BLOCK_H, acc)
    w_n = vector_block(W, 2, H, units, BLOCK_H, acc)
    h = tl.load(H0 + b * H + units, mask=valid, other=0.0).to(acc)
    row, live = vector_step(0, length, b, B, valid, REVERSE)
    x_r, x_z, x_n = _gru_inputs(GX, BHH, row * (3 * H) + units, units, H, live, acc)
    for s in range(0, length):
        row, _ = vector_step(s, length, b, B, valid, REVERSE)
        next_row, next_live = vector_step(s + 1, length, b, B, valid, REVERSE)  # loaded a step ahead
        n_r, n_z, n_n = _gru_inputs(GX, BHH, next_row * (3 * H) + units, units, H, next_live, acc)
        h_in = vector_operand(h, HQ, s, b, B, H, W, BLOCK_H, GRID_SYNC, FLAGGED)
        h = _gru_cell(matvec(w_r, h_in), matvec(w_z, h_in), matvec(w_n, h_in), x_r, x_z, x_n, BHH, units, Y, Y, Y,
                      0, row * H + units, H, h, valid, Y, False, False, False)
        vector_exchange(h, HQ, COUNT, b, s, b, B, H, units, valid, GRID_SYNC, FLAGGED)
        x_r, x_z, x_n = n_r, n_z, n_n
    tl.store(HN + b * H + units, h, mask=valid)


@triton.jit
def _gru_fwd_tiled_kernel(GX, W, BHH, HS, HQ, LEN, Y, G, GHN, HN, COUNT, D, Z, T, B, H, ZS: tl.constexpr,
                          REVERSE: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr,
                          BLOCK_K: tl.constexpr, DOT_F32: tl.constexpr, PRECISION: tl.constexpr,
                          GRID_SYNC: tl.constexpr, STORE: tl.constexpr, K_RES: tl.constexpr, DROP: tl.constexpr,
                          ZONE: tl.constexpr):
    # HS (2, B, H): h_{t-1} and h_t in the accumulator type, HQ likewise in the products' (dispatch.stored),
    # times the dropout mask D (B, H) with DROP (the host puts h_0 * D in slot 0). ZONE: see _gru_cell.
    # K_RES > 0: this program holds its column tile of W_hh for the whole sequence (resident regime).
    rows, length = batch_rows(LEN, B, BLOCK_B)
    w_all = resident_gates(W, H, H, 3, BLOCK_H, K_RES, DOT_F32)  # (K_RES, 4 BH), the last gate zero; or W
    state_rows = rows[:, None] * H  # (BB, 1) offsets into a (B, H) state buffer
    slot = plane(B, H)  # the distance between the slots of HQ and HS
    for s in range(0, T):
        active, row_t = step_rows(s, length, rows, B, REVERSE)  # (BB, 1) each
        last = (s == length - 1)[:, None]
        src = (s % 2) * slot  # h_{t-1} in slot s % 2; h_t goes to the other
        for j in range(tl.program_id(1), tl.cdiv(H, BLOCK_H), tl.num_programs(1)):
            cols, am = column_tile(j, active, H, BLOCK_H)
            state = state_rows + cols[None, :]
            gates = row_t * (3 * H) + cols[None, :]
            x_r, x_z, x_n = _gru_inputs(GX, BHH, gates, cols, H, am, HS.dtype.element_ty)
            h_prev = tl.load(HS + src + state, mask=am, other=0.0)
            product = recurrent_product(HQ + src, state_rows, active, W, 0, gate_rows(j, H, 3, BLOCK_H), 3 * H, H, H,
                                        True, BLOCK_K, DOT_F32, PRECISION, w_all, K_RES)
            p_r, p_z, p_n, _ = split_gates(product, BLOCK_B, BLOCK_H)
            h_new = _gru_cell(p_r, p_z, p_n, x_r, x_z, x_n, BHH, cols, Y, G, GHN, gates, row_t * H + cols[None, :], H,
                              h_prev, am, Z, ZS, STORE, ZONE)
            tl.store(HS + slot - src + state, h_new, mask=am)
            h_in = recurrent_operand(h_new, D, state, am, DROP)
            tl.store(HQ + slot - src + state, h_in.to(HQ.dtype.element_ty), mask=am)
            tl.store(HN + state, h_new, mask=am & last)
        step_barrier(COUNT + tl.program_id(0), (s + 1) * tl.num_programs(1), GRID_SYNC)


@triton.jit
def _gru_bwd_tiled_kernel(G, GHN, Y, H0, DY, W, LEN, DG, DGH, DQ, DHS, COUNT, D, DHQ, Z, T, B, H, ZS: tl.constexpr,
                          REVERSE: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr,
                          BLOCK_K: tl.constexpr, DOT_F32: tl.constexpr, PRECISION: tl.constexpr,
                          GRID_SYNC: tl.constexpr, K_RES: tl.constexpr, DROP: tl.constexpr, ZONE: tl.constexpr):
    # DHS (B, H) fp32: dh entering each step, from dh_n in to dh_0 out. DQ (2, B, 3H): a step's hidden-side
    # gate gradients for the product (exchange_rows); DGH (T, B, 3H) keeps them all. K_RES > 0: this
    # program holds its column tile of W_hh for the whole sequence (resident regime). With DROP the product's
    # part of dh goes to DHQ (B, H) fp32 and the next step adds it through the mask D (the host adds the last
    # one): multiplied in the product's layout it spilled the resident kernel at H = 256 (fit.py, sm_90).
    rows, length = batch_rows(LEN, B, BLOCK_B)
    w_r = resident_slice(W, 0, H, H, H, False, BLOCK_H, K_RES, DOT_F32)  # (K_RES, BH), or W when K_RES == 0
    w_z = resident_slice(W, H, H, H, H, False, BLOCK_H, K_RES, DOT_F32)
    w_n = resident_slice(W, 2 * H, H, H, H, False, BLOCK_H, K_RES, DOT_F32)
    state_rows = rows[:, None] * H
    for step in range(0, T):
        s = T - 1 - step
        active, row_t = step_rows(s, length, rows, B, REVERSE)  # (BB, 1) each
        q_rows = exchange_rows(step, rows, B, 3 * H)
        for j in range(tl.program_id(1), tl.cdiv(H, BLOCK_H), tl.num_programs(1)):
            cols, am = column_tile(j, active, H, BLOCK_H)
            out = row_t * H + cols[None, :]
            state = state_rows + cols[None, :]
            dh_t = tl.load(DHS + state, mask=am, other=0.0)
            if DROP:
                dh_t += tl.load(DHQ + state, mask=am, other=0.0) * dropout_tile(D, state, am, dh_t.dtype)
            dh_t += tl.load(DY + out, mask=am, other=0.0).to(dh_t.dtype)
            h_prev = load_previous(Y, H0, out, state, s, B, H, am, DG.dtype.element_ty, REVERSE)
            if ZONE:  # see _gru_bwd_kernel
                d_cell, zoned = zone_split(Z, out, cols, ZS, am, dh_t)
            else:
                d_cell = dh_t
            d_r, d_z, d_hn, dh_direct = _gru_cell_grads(G, GHN, DG, DGH, row_t * (3 * H) + cols[None, :], out, H,
                                                        h_prev, d_cell, am)
            if ZONE:
                dh_direct += zoned
            tl.store(DHS + state, dh_direct, mask=am)  # the products with W_hh are added below
            q = DQ + q_rows + cols[None, :]
            tl.store(q, d_r.to(DQ.dtype.element_ty), mask=am)
            tl.store(q + H, d_z.to(DQ.dtype.element_ty), mask=am)
            tl.store(q + 2 * H, d_hn.to(DQ.dtype.element_ty), mask=am)
        step_barrier(COUNT + tl.program_id(0), (step + 1) * tl.num_programs(1), GRID_SYNC)
        for j in range(tl.program_id(1), tl.cdiv(H, BLOCK_H), tl.num_programs(1)):
            cols, am = column_tile(j, active, H, BLOCK_H)
            state = state_rows + cols[None, :]
            if DROP:  # the product's gradient reaches h through the mask: added next step
                dh = tl.zeros((BLOCK_B, BLOCK_H), dtype=DHS.dtype.element_ty)
            else:
                dh = tl.load(DHS + state, mask=am, other=0.0)
            if K_RES:  # a product a gate (one over all three, K = 3H padded to 4 K_RES, spilled 280-352 bytes
                # at H = 128 where these fit; fit.py, sm_80 and sm_90)
                dh += resident_product(DQ, q_rows, active, w_r, H, K_RES, PRECISION)
                dh += resident_product(DQ + H, q_rows, active, w_z, H, K_RES, PRECISION)
                dh += resident_product(DQ + 2 * H, q_rows, active, w_n, H, K_RES, PRECISION)
            else:  # one product over every gate's hidden-side gradient (K = 3H: DQ's rows and W's are gate-major)
                dh += recurrent_product(DQ, q_rows, active, W, 0, cols, H, 3 * H, H, False, BLOCK_K, DOT_F32,
                                        PRECISION, W, 0)
            if DROP:
                tl.store(DHQ + state, dh, mask=am)
            else:
                tl.store(DHS + state, dh, mask=am)
        tl.debug_barrier()  # this program reads its dh tiles back next step, in another thread layout


@autocast_off
def _gru_forward(x: Tensor, h0: Tensor, w_ih: Tensor | None, w_hh: Tensor, b_ih: Tensor | None,
                 b_hh: Tensor | None, batch_sizes: list[int] | None, reverse: bool, store: bool,
                 drop: Tensor | None = None, zone: Tensor | None = None, norm: Tensor | None = None
                 ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The fused forward (the custom op ``rnnlab::gru_fused``, and called directly in plain inference): Y (T, B, H),
    h_n (B, H), and for the backward the gates' pre-activations G (T, B, 3H) and h W_hn^T + b_hn (T, B, H), both
    in the stored type (empty unless ``store``). ``drop`` and ``zone``: recurrent dropout's mask and zoneout's
    weights (rnnlab.recurrence.variants.Masks), or None. ``norm``: layer norm's recurrent gains (3H,); x then
    holds the normalised input projections (T, B, 3H) (``w_ih`` None), and for the backward the normalised
    recurrent products RH (T, B, 3H, stored type) and their 1 / std NS (T, B, 1) come last (else empty)."""
    T, B, _ = x.shape
    H = w_hh.shape[1]
    plain = not store and all(t is None for t in (drop, zone, norm))
    launch = plan("gru", x, H, B, norm=norm is not None, inference=plain)
    acc, keep = accumulator(x.dtype), stored(x.dtype)
    gx = input_projection(x, w_ih, b_ih).contiguous()  # (T, B, 3H)
    b = b_hh.contiguous() if b_hh is not None else torch.zeros(3 * H, dtype=x.dtype, device=x.device)
    lengths = lengths_from(batch_sizes, T, B, x.device)
    Y = torch.zeros(T, B, H, dtype=x.dtype, device=x.device)
    G = torch.zeros(T if store else 0, B, 3 * H, dtype=keep, device=x.device)
    ghn = torch.zeros(T if store else 0, B, H, dtype=keep, device=x.device)
    hn = torch.empty(B, H, dtype=acc, device=x.device)
    normed = T if store and norm is not None else 0
    RH = torch.zeros(normed, B, 3 * H, dtype=keep, device=x.device)
    NS = torch.zeros(normed, B, 1, dtype=acc, device=x.device)
    w = w_hh.contiguous()
    masks = variant_args(drop, zone)
    if launch.regime == "held":
        from .held import _gru_fwd_held_kernel, _gru_fwd_held_split_kernel, launch_split  # Gluon's (Triton >= 3.6)

        if launch.meta.get("GRID_SYNC"):  # split over programs, which exchange h
            launch_split(_gru_fwd_held_split_kernel, launch, gx, w, b, h0.contiguous(), lengths, Y, hn,
                         *vector_buffers(launch, h0, keep), B, H, REVERSE=reverse)
        else:
            _gru_fwd_held_kernel[launch.grid](gx, w, b, h0.contiguous(), lengths, Y, hn, B, H, REVERSE=reverse,
                                              **launch.meta)
    elif launch.regime == "vector":
        _gru_fwd_vector_kernel[launch.grid](gx, w, b, h0.contiguous(), lengths, Y, hn,
                                            *vector_buffers(launch, h0, keep), B=B, H=H, REVERSE=reverse,
                                            **launch.meta)
    elif launch.tiled:
        hq = ping_pong(h0 if drop is None else h0.to(acc) * drop, keep)  # what W_hh multiplies
        _gru_fwd_tiled_kernel[launch.grid](gx, w, b, ping_pong(h0, acc), hq, lengths, Y, G, ghn, hn,
                                           launch.counters(x.device), T=T, B=B, H=H, REVERSE=reverse, STORE=store,
                                           **launch.meta, **masks)
    else:
        _gru_fwd_kernel[launch.grid](gx, w, b, h0.contiguous(), lengths, Y, G, ghn, hn, RH=RH, NS=NS, T=T, B=B, H=H,
                                     REVERSE=reverse, STORE=store, **launch.meta, **masks, **norm_args(norm))
    return Y, hn.to(x.dtype), G, ghn, RH, NS


gru_fused = torch.library.custom_op("rnnlab::gru_fused", mutates_args=())(_gru_forward)


@gru_fused.register_fake
def _(x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse, store, drop=None, zone=None, norm=None):
    T, B, _ = x.shape
    H = w_hh.shape[1]
    kept, keep = T if store else 0, stored(x.dtype)
    normed = kept if norm is not None else 0
    return (x.new_empty(T, B, H), x.new_empty(B, H), x.new_empty(kept, B, 3 * H, dtype=keep),
            x.new_empty(kept, B, H, dtype=keep), x.new_empty(normed, B, 3 * H, dtype=keep),
            x.new_empty(normed, B, 1, dtype=accumulator(x.dtype)))


@torch.library.custom_op("rnnlab::gru_fused_backward", mutates_args=())
@autocast_off
def gru_fused_backward(dY: Tensor, dh_n: Tensor, x: Tensor, h0: Tensor, w_ih: Tensor | None, w_hh: Tensor,
                       G: Tensor, ghn: Tensor, Y: Tensor, RH: Tensor, NS: Tensor, batch_sizes: list[int] | None,
                       reverse: bool, need: list[bool], drop: Tensor | None = None, zone: Tensor | None = None,
                       norm: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Gradients of x, h0, w_ih, w_hh, b_ih, b_hh and the layer-norm gains ``norm`` (each empty where ``need``
    says it is not wanted)."""
    T, B, _ = x.shape
    H = w_hh.shape[1]
    launch = plan("gru", x, H, B, backward=True, norm=norm is not None)
    acc = accumulator(x.dtype)
    lengths = lengths_from(batch_sizes, T, B, x.device)
    dG = torch.zeros(T, B, 3 * H, dtype=acc, device=x.device)  # input-side pre-activations
    dGH = torch.zeros(T, B, 3 * H, dtype=acc, device=x.device)  # hidden-side pre-activations
    dR = torch.zeros_like(dGH) if norm is not None else dGH  # the recurrent product's gradients
    w = w_hh.contiguous()
    masks = variant_args(drop, zone)
    if launch.tiled:
        dh0 = row_major_copy(dh_n, acc)  # (B, H), updated in place
        dq = torch.empty(2, B, 3 * H, dtype=stored(x.dtype), device=x.device)  # a step's dGH for the product
        dhq = torch.zeros_like(dh0) if drop is not None else None  # the product's part of dh, with dropout
        _gru_bwd_tiled_kernel[launch.grid](G, ghn, Y, h0.contiguous(), dY.contiguous(), w, lengths, dG, dGH, dq, dh0,
                                           launch.counters(x.device), DHQ=dhq, T=T, B=B, H=H, REVERSE=reverse,
                                           **launch.meta, **masks)
        if drop is not None:
            dh0 += dhq * drop
    else:
        dh0 = torch.empty(B, H, dtype=acc, device=x.device)
        _gru_bwd_kernel[launch.grid](G, ghn, Y, h0.contiguous(), dY.contiguous(), dh_n.contiguous(), w, lengths,
                                     dG, dGH, dh0, RH=RH, NS=NS, DR=dR, T=T, B=B, H=H, REVERSE=reverse,
                                     **launch.meta, **masks, **norm_args(norm))
    dx, dw_ih, dw_hh = projection_grads(dG, dR, x, h0, Y, w_ih, w_hh, batch_sizes, reverse, *need[:1], *need[2:4],
                                        drop)
    db_ih, db_hh = bias_grad(dG, need[4]), bias_grad(dGH, need[5])
    d_norm = norm_grads(dGH, RH) if need[6] else None
    return cast_grads((dx, dh0, dw_ih, dw_hh, db_ih, db_hh, d_norm),
                      (x, h0, w_hh, w_hh, w_hh, w_hh, w_hh if norm is None else norm), need)


@gru_fused_backward.register_fake
def _(dY, dh_n, x, h0, w_ih, w_hh, G, ghn, Y, RH, NS, batch_sizes, reverse, need, drop=None, zone=None, norm=None):
    bias = w_hh.new_empty(w_hh.shape[0])
    return fake_grads((x, h0, w_hh if w_ih is None else w_ih, w_hh, bias, bias, bias if norm is None else norm),
                      need)


def _gru_setup(ctx, inputs, output):
    x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse, _, drop, zone, norm = inputs
    Y, _, G, ghn, RH, NS = output
    ctx.save_for_backward(x, h0, w_ih, w_hh, G, ghn, Y, RH, NS, drop, zone, norm, b_ih, b_hh)
    ctx.batch_sizes, ctx.reverse, ctx.has_bias = batch_sizes, reverse, b_ih is not None
    ctx.mark_non_differentiable(G, ghn, RH, NS)


def _gru_backward(ctx, dY, dh_n, _dG, _dghn, _dRH, _dNS):
    given, needs = input_needs(ctx, 12)
    *saved, drop, zone, norm, b_ih, b_hh = ctx.saved_tensors
    if torch.is_grad_enabled():  # create_graph=True: gradients with a graph, by the step-by-step recurrence
        x, h0, w_ih, w_hh = saved[:4]
        got = recomputed_grads("GRU", [x, h0, w_ih, w_hh, b_ih, b_hh, None, norm],
                               [*needs[:6], False, needs[11]],
                               [dY, dh_n], ctx.batch_sizes, ctx.reverse, Masks(drop, zone),
                               dtype=accumulator(x.dtype))
        return (*got[:6], None, None, None, None, None, got[7])[:given]
    need = [*needs[:4], *(ctx.has_bias and n for n in needs[4:6]), needs[11]]
    grads = gru_fused_backward(dY, dh_n, *saved, ctx.batch_sizes, ctx.reverse, need, drop, zone, norm)
    every = (*wanted(grads[:6], need[:6]), None, None, None, None, None, *wanted(grads[6:], need[6:]))
    return every[:given]


gru_fused.register_autograd(_gru_backward, setup_context=_gru_setup)


def gru_scan_triton(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, batch_sizes=None, reverse=False, masks=None,
                    norms=None):
    """Fused GRU over a sequence; arguments and outputs as :func:`rnnlab.recurrence.gru_scan`, ``masks``
    (rnnlab.recurrence.variants.Masks) for recurrent dropout and zoneout and ``norms`` (variant_scan's) for
    layer norm."""
    x, w_ih, norm = fused_norm(x, w_ih, norms, ("hh",))
    tensors = (x, h0, w_ih, w_hh, b_ih, b_hh)
    store = needs_backward(*tensors, norm)
    forward = _gru_forward if plain_inference(*tensors, norm, store=store) else gru_fused
    drop, zone = (None, None) if masks is None else (masks.dropout, masks.zoneout)
    return forward(*tensors, batch_sizes, reverse, store, drop, zone, norm)[:2]
