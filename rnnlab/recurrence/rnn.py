"""Elman RNN recurrence (tanh or relu) over a whole sequence with a hand-written backward.

Math (torch.nn.RNN): h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh). The forward stores only the outputs
(T, B, H): the activation's derivative is a function of its output for both tanh and relu. With ``masks``
(rnnlab.recurrence.variants.Masks) W_hh multiplies h times recurrent dropout's mask and zoneout moves h'
towards h; the activations before zoneout are then stored too. With layer norm (x then holds the normalised
input projections, ``w_ih`` None) h W_hh^T is normalised, times its gain, stored normalised with each row's
1 / std.
"""

from __future__ import annotations

import torch

from .common import (
    autocast_off,
    bias_grad,
    clone_or_none,
    input_grads,
    input_projection,
    linear_grads,
    normalise_grad,
    normalise_rows,
    recomputed_grads,
    set_rows,
    tanh_,
    tanh_grad,
    zoneout_grads,
)
from .gemm import StepWeight
from .schedule import Schedule
from .variants import Masks

NONLINEARITIES = ("tanh", "relu")


class RNNScan(torch.autograd.Function):
    """One direction of one RNN layer. See :func:`rnnlab.recurrence.rnn_scan`."""

    @staticmethod
    @autocast_off
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse, nonlinearity, masks=None, ln_hh=None):
        T, B, _ = x.shape
        sched = Schedule(T, B, batch_sizes, reverse)
        norm = ln_hh is not None
        masks = Masks() if masks is None else masks
        zoned = masks.zoneout is not None
        G = input_projection(x, w_ih, None if b_ih is None else b_ih + b_hh)  # (T, B, H)
        Y = sched.new_buffer(h0.shape[-1], like=x)  # (T, B, H)
        A = sched.new_buffer(h0.shape[-1], like=x) if zoned else Y  # (T, B, H) the activations
        if norm:
            R = x.new_zeros(T, B, h0.shape[-1])  # the products h W_hh^T (taken in place)
            stats = [None] * T  # each step's rows' mean and 1 / std of them
        recurrent = StepWeight(w_hh, B, T)
        for step in sched.steps:
            t, b = step.t, step.b
            h = sched.incoming(Y, h0, step)  # (b, H)
            if norm:
                normed, stats[t] = normalise_rows(recurrent.addmm_(R[t, :b], masks.dropped(h)), ln_hh)
                pre = G[t, :b].add_(normed)
            else:
                pre = recurrent.addmm_(G[t, :b], masks.dropped(h))  # (b, H)
            if nonlinearity == "tanh":
                tanh_(pre, out=A[t, :b])
            else:
                torch.clamp_min(pre, 0, out=A[t, :b])
            if zoned:
                torch.lerp(A[t, :b], h, masks.zoneout_at(t, b)[0], out=Y[t, :b])
        ctx.save_for_backward(x, h0, w_ih, w_hh, b_ih, b_hh, Y, A, *((R, ln_hh) if norm else ()))
        ctx.sched, ctx.nonlinearity, ctx.has_bias, ctx.masks = sched, nonlinearity, b_ih is not None, masks
        ctx.norm, ctx.stats = norm, stats if norm else None
        return Y, sched.final(Y)

    @staticmethod
    @autocast_off
    def backward(ctx, dY, dh_n):
        masks: Masks = ctx.masks
        x, h0, w_ih, w_hh, b_ih, b_hh, Y, A, *normed = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: gradients with a graph, by the step-by-step recurrence
            need = ctx.needs_input_grad
            got = recomputed_grads(f"RNN_{ctx.nonlinearity.upper()}",
                                   [x, h0, w_ih, w_hh, b_ih, b_hh, None, *normed[1:]], [*need[:6], False, *need[10:]],
                                   [dY, dh_n], ctx.sched.batch_sizes, ctx.sched.reverse, masks)
            return *got[:6], None, None, None, None, *got[7:]
        sched: Schedule = ctx.sched
        dG = sched.new_buffer(Y.shape[-1], like=x)  # (T, B, H)
        if ctx.norm:
            R, ln_hh = normed
            dR = sched.new_buffer(Y.shape[-1], like=x)  # (T, B, H) gradients of h W_hh^T before normalisation
            d_norm = torch.zeros_like(ln_hh)  # summed over steps
        T, B, _ = x.shape
        carry = dh_n.clone()  # (B, H)
        recurrent = StepWeight(w_hh.t(), B, T)
        for step in reversed(sched.steps):
            t, b = step.t, step.b
            dh = carry[:b]
            dh.add_(dY[t, :b])
            dh, direct = zoneout_grads(dh, masks.zoneout_at(t, b)[0])
            if ctx.nonlinearity == "tanh":
                tanh_grad(dh, A[t, :b], out=dG[t, :b])
            else:
                torch.ops.aten.threshold_backward.grad_input(dh, A[t, :b], 0, grad_input=dG[t, :b])
            d_product = dG[t, :b]
            if ctx.norm:
                d_product, d_gain, _ = normalise_grad(d_product, R[t, :b], ctx.stats[t], ln_hh)
                dR[t, :b] = d_product
                d_norm.add_(d_gain)
            back = masks.dropped(recurrent(d_product))  # (b, H)
            carry = set_rows(carry, back if direct is None else back + direct)
        need = ctx.needs_input_grad
        dx, dw_ih = input_grads(dG, x, w_ih, need[0], need[2])
        _, dw_hh = linear_grads(dR if ctx.norm else dG, masks.dropped(sched.all_incoming(Y, h0)), w_hh, False, need[3])
        db = bias_grad(dG, ctx.has_bias and (need[4] or need[5]))
        # each bias gets its own tensor: autograd may keep a returned gradient as .grad without copying
        return dx, carry, dw_ih, dw_hh, db, clone_or_none(db), None, None, None, None, d_norm if ctx.norm else None
