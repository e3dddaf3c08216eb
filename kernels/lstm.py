"""Fused LSTM recurrence, forward and backward through time, persistent regime.

One program owns BLOCK_B batch rows of one layer direction for the whole sequence: it loads the four
(H, H) gate blocks of W_hh once, keeps h and c in fp32 registers, and per step adds h @ W_g^T to the
precomputed input projection, applies the gates and stores h, c and the activated gates (what the
backward needs: no recomputation of the products). Rows finish at their own length (packed input); in
the reverse direction each row starts at its own last step. The backward walks time in reverse with
the same weight blocks (untransposed) and stores the gradients of the gate pre-activations; dx and the
weight gradients are GEMMs over all timesteps outside the kernel, as in rnnlab.recurrence.lstm.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch.autograd.function import once_differentiable

from ..recurrence.common import bias_grad, clone_or_none, input_projection
from .common import (
    BLOCK_B,
    batch_tile,
    cast_grads,
    check_persistent,
    gate_block,
    launch_args,
    lengths_from,
    projection_grads,
    sigmoid,
    step_time,
    tanh,
)


@triton.jit
def _lstm_fwd_kernel(GX, W, H0, C0, LEN, Y, C, G, HN, CN, T, B, H,
                     REVERSE: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, DOT_F32: tl.constexpr,
                     PRECISION: tl.constexpr):
    rows, cols, m2, state, length = batch_tile(LEN, B, H, BLOCK_B, BLOCK_H)
    w_i = gate_block(W, 0, H, BLOCK_H, True, DOT_F32)  # (BH, BH): row = input unit, column = output unit
    w_f = gate_block(W, 1, H, BLOCK_H, True, DOT_F32)
    w_g = gate_block(W, 2, H, BLOCK_H, True, DOT_F32)
    w_o = gate_block(W, 3, H, BLOCK_H, True, DOT_F32)
    h = tl.load(H0 + state, mask=m2, other=0.0).to(tl.float32)
    c = tl.load(C0 + state, mask=m2, other=0.0).to(tl.float32)
    for s in range(0, T):
        active = s < length
        am = m2 & active[:, None]
        t = step_time(s, length, REVERSE)
        row_t = (t * B + rows)[:, None]  # (BB, 1) int64
        gates = row_t * (4 * H) + cols[None, :]
        hd = h.to(w_i.dtype)
        gi = tl.load(GX + gates, mask=am, other=0.0).to(tl.float32) + tl.dot(hd, w_i, input_precision=PRECISION)
        gf = tl.load(GX + gates + H, mask=am, other=0.0).to(tl.float32) + tl.dot(hd, w_f, input_precision=PRECISION)
        gg = tl.load(GX + gates + 2 * H, mask=am, other=0.0).to(tl.float32) + tl.dot(hd, w_g, input_precision=PRECISION)
        go = tl.load(GX + gates + 3 * H, mask=am, other=0.0).to(tl.float32) + tl.dot(hd, w_o, input_precision=PRECISION)
        i = sigmoid(gi)
        f = sigmoid(gf)
        g = tanh(gg)
        o = sigmoid(go)
        c_new = f * c + i * g
        h_new = o * tanh(c_new)
        out = row_t * H + cols[None, :]
        tl.store(Y + out, h_new.to(Y.dtype.element_ty), mask=am)
        tl.store(C + out, c_new, mask=am)
        tl.store(G + gates, i, mask=am)
        tl.store(G + gates + H, f, mask=am)
        tl.store(G + gates + 2 * H, g, mask=am)
        tl.store(G + gates + 3 * H, o, mask=am)
        h = tl.where(active[:, None], h_new, h)
        c = tl.where(active[:, None], c_new, c)
    tl.store(HN + state, h, mask=m2)
    tl.store(CN + state, c, mask=m2)


@triton.jit
def _lstm_bwd_kernel(G, C, C0, DY, DHN, DCN, W, LEN, DG, DH0, DC0, T, B, H,
                     REVERSE: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, DOT_F32: tl.constexpr,
                     PRECISION: tl.constexpr):
    rows, cols, m2, state, length = batch_tile(LEN, B, H, BLOCK_B, BLOCK_H)
    w_i = gate_block(W, 0, H, BLOCK_H, False, DOT_F32)  # (BH, BH): row = gate unit, column = hidden unit
    w_f = gate_block(W, 1, H, BLOCK_H, False, DOT_F32)
    w_g = gate_block(W, 2, H, BLOCK_H, False, DOT_F32)
    w_o = gate_block(W, 3, H, BLOCK_H, False, DOT_F32)
    dh = tl.load(DHN + state, mask=m2, other=0.0).to(tl.float32)
    dc = tl.load(DCN + state, mask=m2, other=0.0).to(tl.float32)
    c0 = tl.load(C0 + state, mask=m2, other=0.0).to(tl.float32)
    for step in range(0, T):
        s = T - 1 - step
        active = s < length
        am = m2 & active[:, None]
        t = step_time(s, length, REVERSE)
        row_t = (t * B + rows)[:, None]
        gates = row_t * (4 * H) + cols[None, :]
        out = row_t * H + cols[None, :]
        i = tl.load(G + gates, mask=am, other=0.0)
        f = tl.load(G + gates + H, mask=am, other=0.0)
        g = tl.load(G + gates + 2 * H, mask=am, other=0.0)
        o = tl.load(G + gates + 3 * H, mask=am, other=0.0)
        c_t = tl.load(C + out, mask=am, other=0.0)
        if REVERSE:
            prev = out + B * H
        else:
            prev = out - B * H
        has_prev = ((tl.zeros_like(length) + s) > 0)[:, None]  # (BB, 1): step 0 starts from c0
        c_prev = tl.load(C + prev, mask=am & has_prev, other=0.0)
        c_prev = tl.where(has_prev, c_prev, c0)
        dh_t = dh + tl.load(DY + out, mask=am, other=0.0).to(tl.float32)
        tc = tanh(c_t)
        d_o = dh_t * tc * o * (1.0 - o)
        dc_t = dc + dh_t * o * (1.0 - tc * tc)
        d_i = dc_t * g * i * (1.0 - i)
        d_f = dc_t * c_prev * f * (1.0 - f)
        d_g = dc_t * i * (1.0 - g * g)
        tl.store(DG + gates, d_i, mask=am)
        tl.store(DG + gates + H, d_f, mask=am)
        tl.store(DG + gates + 2 * H, d_g, mask=am)
        tl.store(DG + gates + 3 * H, d_o, mask=am)
        dh_new = tl.dot(d_i.to(w_i.dtype), w_i, input_precision=PRECISION)
        dh_new += tl.dot(d_f.to(w_f.dtype), w_f, input_precision=PRECISION)
        dh_new += tl.dot(d_g.to(w_g.dtype), w_g, input_precision=PRECISION)
        dh_new += tl.dot(d_o.to(w_o.dtype), w_o, input_precision=PRECISION)
        dh = tl.where(active[:, None], dh_new, dh)
        dc = tl.where(active[:, None], dc_t * f, dc)
    tl.store(DH0 + state, dh, mask=m2)
    tl.store(DC0 + state, dc, mask=m2)


class LSTMTritonScan(torch.autograd.Function):
    """The fused counterpart of :class:`rnnlab.recurrence.lstm.LSTMScan` (same arguments and outputs)."""

    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, reverse):
        if w_hr is not None:
            raise NotImplementedError("backend='triton' has no LSTM proj_size yet; use backend='torch'")
        T, B, _ = x.shape
        H = w_hh.shape[1]
        check_persistent("lstm", H, x.dtype)
        gx = input_projection(x, w_ih, None if b_ih is None else b_ih + b_hh).contiguous()  # (T, B, 4H)
        lengths = lengths_from(batch_sizes, T, B, x.device)
        Y = torch.zeros(T, B, H, dtype=x.dtype, device=x.device)
        C = torch.zeros(T, B, H, dtype=torch.float32, device=x.device)
        G = torch.zeros(T, B, 4 * H, dtype=torch.float32, device=x.device)
        hn = torch.empty(B, H, dtype=torch.float32, device=x.device)
        cn = torch.empty(B, H, dtype=torch.float32, device=x.device)
        grid = (triton.cdiv(B, BLOCK_B),)
        _lstm_fwd_kernel[grid](gx, w_hh.contiguous(), h0.contiguous(), c0.contiguous(), lengths, Y, C, G, hn, cn,
                               T, B, H, REVERSE=reverse, **launch_args(x, H))
        ctx.save_for_backward(x, h0, c0, w_ih, w_hh, lengths, G, C, Y)
        ctx.batch_sizes, ctx.reverse, ctx.has_bias = batch_sizes, reverse, b_ih is not None
        return Y, hn.to(x.dtype), cn.to(c0.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, dY, dh_n, dc_n):
        x, h0, c0, w_ih, w_hh, lengths, G, C, Y = ctx.saved_tensors
        T, B, _ = x.shape
        H = w_hh.shape[1]
        dG = torch.zeros(T, B, 4 * H, dtype=torch.float32, device=x.device)
        dh0 = torch.empty(B, H, dtype=torch.float32, device=x.device)
        dc0 = torch.empty(B, H, dtype=torch.float32, device=x.device)
        grid = (triton.cdiv(B, BLOCK_B),)
        _lstm_bwd_kernel[grid](G, C, c0.contiguous(), dY.contiguous(), dh_n.contiguous(), dc_n.contiguous(),
                               w_hh.contiguous(), lengths, dG, dh0, dc0, T, B, H, REVERSE=ctx.reverse,
                               **launch_args(x, H))
        need = ctx.needs_input_grad
        # weight gradients accumulate in fp32 whatever the input dtype
        dx, dw_ih, dw_hh = projection_grads(ctx, dG, dG, x, h0, Y, w_ih, w_hh, need[0], need[3], need[4])
        db = bias_grad(dG, ctx.has_bias and (need[5] or need[6]))

        grads = cast_grads((dx, dh0, dc0, dw_ih, dw_hh, db, clone_or_none(db)), (x, h0, c0, w_ih, w_hh, w_ih, w_ih))
        return (*grads, None, None, None)


def lstm_scan_triton(x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None, w_hr=None, batch_sizes=None, reverse=False):
    """Fused LSTM over a sequence; arguments and outputs as :func:`rnnlab.recurrence.lstm_scan`."""
    return LSTMTritonScan.apply(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, reverse)
