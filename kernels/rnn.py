"""Fused Elman RNN recurrence (tanh or relu), forward and backward through time, persistent regime
(see lstm.py for the layout). The activation's derivative comes from the stored outputs."""

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
    step_time,
    tanh,
)


@triton.jit
def _rnn_fwd_kernel(GX, W, H0, LEN, Y, HN, T, B, H,
                    RELU: tl.constexpr, REVERSE: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr,
                    DOT_F32: tl.constexpr, PRECISION: tl.constexpr):
    rows, cols, m2, state, length = batch_tile(LEN, B, H, BLOCK_B, BLOCK_H)
    w = gate_block(W, 0, H, BLOCK_H, True, DOT_F32)
    h = tl.load(H0 + state, mask=m2, other=0.0).to(tl.float32)
    for s in range(0, T):
        active = s < length
        am = m2 & active[:, None]
        out = (step_time(s, length, REVERSE) * B + rows)[:, None] * H + cols[None, :]
        pre = tl.load(GX + out, mask=am, other=0.0).to(tl.float32) + tl.dot(h.to(w.dtype), w, input_precision=PRECISION)
        if RELU:
            h_new = tl.maximum(pre, 0.0)
        else:
            h_new = tanh(pre)
        tl.store(Y + out, h_new.to(Y.dtype.element_ty), mask=am)
        h = tl.where(active[:, None], h_new, h)
    tl.store(HN + state, h, mask=m2)


@triton.jit
def _rnn_bwd_kernel(Y, DY, DHN, W, LEN, DG, DH0, T, B, H,
                    RELU: tl.constexpr, REVERSE: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr,
                    DOT_F32: tl.constexpr, PRECISION: tl.constexpr):
    rows, cols, m2, state, length = batch_tile(LEN, B, H, BLOCK_B, BLOCK_H)
    w = gate_block(W, 0, H, BLOCK_H, False, DOT_F32)
    dh = tl.load(DHN + state, mask=m2, other=0.0).to(tl.float32)
    for step in range(0, T):
        s = T - 1 - step
        active = s < length
        am = m2 & active[:, None]
        out = (step_time(s, length, REVERSE) * B + rows)[:, None] * H + cols[None, :]
        y = tl.load(Y + out, mask=am, other=0.0).to(tl.float32)
        dh_t = dh + tl.load(DY + out, mask=am, other=0.0).to(tl.float32)
        if RELU:
            d_pre = tl.where(y > 0.0, dh_t, 0.0)
        else:
            d_pre = dh_t * (1.0 - y * y)
        tl.store(DG + out, d_pre, mask=am)
        dh = tl.where(active[:, None], tl.dot(d_pre.to(w.dtype), w, input_precision=PRECISION), dh)
    tl.store(DH0 + state, dh, mask=m2)


class RNNTritonScan(torch.autograd.Function):
    """The fused counterpart of :class:`rnnlab.recurrence.rnn.RNNScan` (same arguments and outputs)."""

    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse, nonlinearity):
        T, B, _ = x.shape
        H = w_hh.shape[1]
        check_persistent("rnn", H, x.dtype)
        gx = input_projection(x, w_ih, None if b_ih is None else b_ih + b_hh).contiguous()  # (T, B, H)
        lengths = lengths_from(batch_sizes, T, B, x.device)
        Y = torch.zeros(T, B, H, dtype=x.dtype, device=x.device)
        hn = torch.empty(B, H, dtype=torch.float32, device=x.device)
        relu = nonlinearity == "relu"
        _rnn_fwd_kernel[(triton.cdiv(B, BLOCK_B),)](gx, w_hh.contiguous(), h0.contiguous(), lengths, Y, hn, T, B, H,
                                                   RELU=relu, REVERSE=reverse, **launch_args(x, H))
        ctx.save_for_backward(x, h0, w_ih, w_hh, lengths, Y)
        ctx.batch_sizes, ctx.reverse, ctx.relu, ctx.has_bias = batch_sizes, reverse, relu, b_ih is not None
        return Y, hn.to(x.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, dY, dh_n):
        x, h0, w_ih, w_hh, lengths, Y = ctx.saved_tensors
        T, B, _ = x.shape
        H = w_hh.shape[1]
        dG = torch.zeros(T, B, H, dtype=torch.float32, device=x.device)
        dh0 = torch.empty(B, H, dtype=torch.float32, device=x.device)
        _rnn_bwd_kernel[(triton.cdiv(B, BLOCK_B),)](Y, dY.contiguous(), dh_n.contiguous(), w_hh.contiguous(), lengths,
                                                   dG, dh0, T, B, H, RELU=ctx.relu, REVERSE=ctx.reverse,
                                                   **launch_args(x, H))
        need = ctx.needs_input_grad
        dx, dw_ih, dw_hh = projection_grads(ctx, dG, dG, x, h0, Y, w_ih, w_hh, need[0], need[2], need[3])
        db = bias_grad(dG, ctx.has_bias and (need[4] or need[5]))
        grads = cast_grads((dx, dh0, dw_ih, dw_hh, db, clone_or_none(db)), (x, h0, w_ih, w_hh, w_ih, w_ih))
        return (*grads, None, None, None)


def rnn_scan_triton(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, batch_sizes=None, reverse=False, nonlinearity="tanh"):
    """Fused Elman RNN over a sequence; arguments and outputs as :func:`rnnlab.recurrence.rnn_scan`."""
    return RNNTritonScan.apply(x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse, nonlinearity)
