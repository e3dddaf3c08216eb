"""Fused GRU recurrence, forward and backward through time, persistent regime (see lstm.py for the
layout). Gate order r, z, n as torch.nn; b_hn stays inside r * (h W_hn^T + b_hn), so the kernel adds
the hidden bias itself and stores h W_hn^T + b_hn for the backward.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch.autograd.function import once_differentiable

from ..recurrence.common import bias_grad, input_projection
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
def _gru_fwd_kernel(GX, W, BHH, H0, LEN, Y, G, GHN, HN, T, B, H,
                    REVERSE: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, DOT_F32: tl.constexpr,
                    PRECISION: tl.constexpr):
    rows, cols, m2, state, length = batch_tile(LEN, B, H, BLOCK_B, BLOCK_H)
    cmask = cols < H
    w_r = gate_block(W, 0, H, BLOCK_H, True, DOT_F32)
    w_z = gate_block(W, 1, H, BLOCK_H, True, DOT_F32)
    w_n = gate_block(W, 2, H, BLOCK_H, True, DOT_F32)
    b_r = tl.load(BHH + cols, mask=cmask, other=0.0).to(tl.float32)[None, :]
    b_z = tl.load(BHH + H + cols, mask=cmask, other=0.0).to(tl.float32)[None, :]
    b_n = tl.load(BHH + 2 * H + cols, mask=cmask, other=0.0).to(tl.float32)[None, :]
    h = tl.load(H0 + state, mask=m2, other=0.0).to(tl.float32)
    for s in range(0, T):
        active = s < length
        am = m2 & active[:, None]
        row_t = (step_time(s, length, REVERSE) * B + rows)[:, None]
        gates = row_t * (3 * H) + cols[None, :]
        hd = h.to(w_r.dtype)
        r = sigmoid(tl.load(GX + gates, mask=am, other=0.0).to(tl.float32)
                    + tl.dot(hd, w_r, input_precision=PRECISION) + b_r)
        z = sigmoid(tl.load(GX + gates + H, mask=am, other=0.0).to(tl.float32)
                    + tl.dot(hd, w_z, input_precision=PRECISION) + b_z)
        ghn = tl.dot(hd, w_n, input_precision=PRECISION) + b_n
        n = tanh(tl.load(GX + gates + 2 * H, mask=am, other=0.0).to(tl.float32) + r * ghn)
        h_new = n + z * (h - n)
        out = row_t * H + cols[None, :]
        tl.store(Y + out, h_new.to(Y.dtype.element_ty), mask=am)
        tl.store(G + gates, r, mask=am)
        tl.store(G + gates + H, z, mask=am)
        tl.store(G + gates + 2 * H, n, mask=am)
        tl.store(GHN + out, ghn, mask=am)
        h = tl.where(active[:, None], h_new, h)
    tl.store(HN + state, h, mask=m2)


@triton.jit
def _gru_bwd_kernel(G, GHN, Y, H0, DY, DHN, W, LEN, DG, DGH, DH0, T, B, H,
                    REVERSE: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, DOT_F32: tl.constexpr,
                    PRECISION: tl.constexpr):
    rows, cols, m2, state, length = batch_tile(LEN, B, H, BLOCK_B, BLOCK_H)
    w_r = gate_block(W, 0, H, BLOCK_H, False, DOT_F32)
    w_z = gate_block(W, 1, H, BLOCK_H, False, DOT_F32)
    w_n = gate_block(W, 2, H, BLOCK_H, False, DOT_F32)
    dh = tl.load(DHN + state, mask=m2, other=0.0).to(tl.float32)
    h0 = tl.load(H0 + state, mask=m2, other=0.0).to(tl.float32)
    for step in range(0, T):
        s = T - 1 - step
        active = s < length
        am = m2 & active[:, None]
        row_t = (step_time(s, length, REVERSE) * B + rows)[:, None]
        gates = row_t * (3 * H) + cols[None, :]
        out = row_t * H + cols[None, :]
        r = tl.load(G + gates, mask=am, other=0.0)
        z = tl.load(G + gates + H, mask=am, other=0.0)
        n = tl.load(G + gates + 2 * H, mask=am, other=0.0)
        ghn = tl.load(GHN + out, mask=am, other=0.0)
        if REVERSE:
            prev = out + B * H
        else:
            prev = out - B * H
        has_prev = ((tl.zeros_like(length) + s) > 0)[:, None]  # (BB, 1): step 0 starts from h0
        h_prev = tl.load(Y + prev, mask=am & has_prev, other=0.0).to(tl.float32)
        h_prev = tl.where(has_prev, h_prev, h0)
        dh_t = dh + tl.load(DY + out, mask=am, other=0.0).to(tl.float32)
        d_z = dh_t * (h_prev - n) * z * (1.0 - z)
        d_n = dh_t * (1.0 - z) * (1.0 - n * n)
        d_r = d_n * ghn * r * (1.0 - r)
        d_ghn = d_n * r
        tl.store(DG + gates, d_r, mask=am)
        tl.store(DG + gates + H, d_z, mask=am)
        tl.store(DG + gates + 2 * H, d_n, mask=am)
        tl.store(DGH + gates, d_r, mask=am)
        tl.store(DGH + gates + H, d_z, mask=am)
        tl.store(DGH + gates + 2 * H, d_ghn, mask=am)
        dh_new = dh_t * z + tl.dot(d_r.to(w_r.dtype), w_r, input_precision=PRECISION)
        dh_new += tl.dot(d_z.to(w_z.dtype), w_z, input_precision=PRECISION)
        dh_new += tl.dot(d_ghn.to(w_n.dtype), w_n, input_precision=PRECISION)
        dh = tl.where(active[:, None], dh_new, dh)
    tl.store(DH0 + state, dh, mask=m2)


class GRUTritonScan(torch.autograd.Function):
    """The fused counterpart of :class:`rnnlab.recurrence.gru.GRUScan` (same arguments and outputs)."""

    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse):
        T, B, _ = x.shape
        H = w_hh.shape[1]
        check_persistent("gru", H, x.dtype)
        gx = input_projection(x, w_ih, b_ih).contiguous()  # (T, B, 3H)
        b = b_hh if b_hh is not None else torch.zeros(3 * H, dtype=x.dtype, device=x.device)
        lengths = lengths_from(batch_sizes, T, B, x.device)
        Y = torch.zeros(T, B, H, dtype=x.dtype, device=x.device)
        G = torch.zeros(T, B, 3 * H, dtype=torch.float32, device=x.device)
        ghn = torch.zeros(T, B, H, dtype=torch.float32, device=x.device)
        hn = torch.empty(B, H, dtype=torch.float32, device=x.device)
        _gru_fwd_kernel[(triton.cdiv(B, BLOCK_B),)](gx, w_hh.contiguous(), b.contiguous(), h0.contiguous(), lengths,
                                                   Y, G, ghn, hn, T, B, H, REVERSE=reverse, **launch_args(x, H))
        ctx.save_for_backward(x, h0, w_ih, w_hh, lengths, G, ghn, Y)
        ctx.batch_sizes, ctx.reverse, ctx.has_bias = batch_sizes, reverse, b_ih is not None
        return Y, hn.to(x.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, dY, dh_n):
        x, h0, w_ih, w_hh, lengths, G, ghn, Y = ctx.saved_tensors
        T, B, _ = x.shape
        H = w_hh.shape[1]
        dG = torch.zeros(T, B, 3 * H, dtype=torch.float32, device=x.device)  # input-side pre-activations
        dGH = torch.zeros(T, B, 3 * H, dtype=torch.float32, device=x.device)  # hidden-side pre-activations
        dh0 = torch.empty(B, H, dtype=torch.float32, device=x.device)
        _gru_bwd_kernel[(triton.cdiv(B, BLOCK_B),)](G, ghn, Y, h0.contiguous(), dY.contiguous(), dh_n.contiguous(),
                                                   w_hh.contiguous(), lengths, dG, dGH, dh0, T, B, H,
                                                   REVERSE=ctx.reverse, **launch_args(x, H))
        need = ctx.needs_input_grad
        dx, dw_ih, dw_hh = projection_grads(ctx, dG, dGH, x, h0, Y, w_ih, w_hh, need[0], need[2], need[3])
        db_ih = bias_grad(dG, ctx.has_bias and need[4])
        db_hh = bias_grad(dGH, ctx.has_bias and need[5])
        grads = cast_grads((dx, dh0, dw_ih, dw_hh, db_ih, db_hh), (x, h0, w_ih, w_hh, w_ih, w_ih))
        return (*grads, None, None)


def gru_scan_triton(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, batch_sizes=None, reverse=False):
    """Fused GRU over a sequence; arguments and outputs as :func:`rnnlab.recurrence.gru_scan`."""
    return GRUTritonScan.apply(x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse)
