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
from torch import Tensor

from .common import (
    autocast_off,
    bias_grad,
    input_grads,
    input_projection,
    linear_grads,
    norm_stats,
    normalise_grad,
    normalise_rows,
    recomputed_grads,
    set_rows,
    tanh_grad,
    zoneout_grads,
)
from .custom_ops import cast_grads, fake_grads, input_needs, run_forward, wanted
from .gemm import StepWeight
from .schedule import Schedule
from .variants import Masks

NONLINEARITIES = ("tanh", "relu")


@autocast_off
def _rnn_forward(x: Tensor, h0: Tensor, w_ih: Tensor | None, w_hh: Tensor, b_ih: Tensor | None, b_hh: Tensor | None,
                 batch_sizes: list[int] | None, reverse: bool, nonlinearity: str, dropout: Tensor | None = None,
                 zoneout: Tensor | None = None, ln_hh: Tensor | None = None
                 ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The forward (the custom op ``rnnlab::rnn_scan``, and called directly in plain inference): y (T, B, H) and
    h_n (B, H), and for the backward the activations before zoneout A (T, B, H; empty without zoneout, where
    they are y) and with layer norm the products R (T, B, H) and the rows' mean and 1 / std S (2, T, B, 1),
    else empty. ``dropout``, ``zoneout``: the draws (rnnlab.recurrence.variants.Masks)."""
    T, B, _ = x.shape
    sched = Schedule(T, B, batch_sizes, reverse)
    norm = ln_hh is not None
    masks = Masks(dropout, zoneout)
    zoned = masks.zoneout is not None
    G = input_projection(x, w_ih, None if b_ih is None else b_ih + b_hh)  # (T, B, H)
    Y = sched.new_buffer(h0.shape[-1], like=x)  # (T, B, H)
    A = sched.new_buffer(h0.shape[-1], like=x) if zoned else Y  # (T, B, H) the activations
    if norm:
        R = x.new_zeros(T, B, h0.shape[-1])  # the products h W_hh^T (taken in place)
        S = norm_stats(1, T, B, like=x)  # each step's rows' mean and 1 / std of them
    recurrent = StepWeight(w_hh, B, T)
    for step in sched.steps:
        t, b = step.t, step.b
        h = sched.incoming(Y, h0, step)  # (b, H)
        if norm:
            normed, (S[0, t, :b], S[1, t, :b]) = normalise_rows(recurrent.addmm_(R[t, :b], masks.dropped(h)), ln_hh)
            pre = G[t, :b].add_(normed)
        else:
            pre = recurrent.addmm_(G[t, :b], masks.dropped(h))  # (b, H)
        if nonlinearity == "tanh":
            torch.tanh(pre, out=A[t, :b])
        else:
            torch.clamp_min(pre, 0, out=A[t, :b])
        if zoned:
            torch.lerp(A[t, :b], h, masks.zoneout_at(t, b)[0], out=Y[t, :b])
    if not norm:  # outputs of a custom op are distinct tensors, the empty ones too
        R, S = x.new_empty(0), x.new_empty(0)
    return Y, sched.final(Y), A if zoned else x.new_empty(0), R, S


rnn_scan_op = torch.library.custom_op("rnnlab::rnn_scan", mutates_args=())(_rnn_forward)


@rnn_scan_op.register_fake
def _(x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse, nonlinearity, dropout=None, zoneout=None, ln_hh=None):
    T, B, _ = x.shape
    H = h0.shape[-1]
    norm = ln_hh is not None
    return (x.new_empty(T, B, H), x.new_empty(B, H), x.new_empty((T, B, H) if zoneout is not None else (0,)),
            x.new_empty((T, B, H) if norm else (0,)), norm_stats(1, T, B, like=x) if norm else x.new_empty(0))


@torch.library.custom_op("rnnlab::rnn_scan_backward", mutates_args=())
@autocast_off
def rnn_scan_backward(dY: Tensor, dh_n: Tensor, x: Tensor, h0: Tensor, w_ih: Tensor | None, w_hh: Tensor, Y: Tensor,
                      A: Tensor, R: Tensor, S: Tensor, batch_sizes: list[int] | None, reverse: bool, nonlinearity: str,
                      need: list[bool], dropout: Tensor | None = None, zoneout: Tensor | None = None,
                      ln_hh: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The backward through time: gradients of x, h0, w_ih, w_hh, the bias and ln_hh (each empty where ``need``
    says it is not wanted) from those of y and h_n and what _rnn_forward stored."""

    T, B, _ = x.shape
    sched = Schedule(T, B, batch_sizes, reverse)
    masks = Masks(dropout, zoneout)
    norm = ln_hh is not None
    A = A if A.numel() else Y  # the activations, which are the outputs without zoneout
    dG = sched.new_buffer(Y.shape[-1], like=x)  # (T, B, H)
    if norm:
        dR = sched.new_buffer(Y.shape[-1], like=x)  # (T, B, H) gradients of h W_hh^T before normalisation
        d_norm = torch.zeros_like(ln_hh)  # summed over steps
    carry = dh_n.clone()  # (B, H)
    recurrent = StepWeight(w_hh.t(), B, T)
    for step in reversed(sched.steps):
        t, b = step.t, step.b
        dh = carry[:b]
        dh.add_(dY[t, :b])
        dh, direct = zoneout_grads(dh, masks.zoneout_at(t, b)[0])
        if nonlinearity == "tanh":
            tanh_grad(dh, A[t, :b], out=dG[t, :b])
        else:
            torch.ops.aten.threshold_backward.grad_input(dh, A[t, :b], 0, grad_input=dG[t, :b])
        d_product = dG[t, :b]
        if norm:
            d_product, d_gain, _ = normalise_grad(d_product, R[t, :b], (S[0, t, :b], S[1, t, :b]), ln_hh)
            dR[t, :b] = d_product
            d_norm.add_(d_gain)
        back = masks.dropped(recurrent(d_product))  # (b, H)
        carry = set_rows(carry, back if direct is None else back + direct)
    dx, dw_ih = input_grads(dG, x, w_ih, need[0], need[2])
    _, dw_hh = linear_grads(dR if norm else dG, masks.dropped(sched.all_incoming(Y, h0)), w_hh, False, need[3])
    db = bias_grad(dG, need[4])
    likes = (x, h0, w_hh, w_hh, w_hh, w_hh if ln_hh is None else ln_hh)
    return cast_grads((dx, carry, dw_ih, dw_hh, db, d_norm if norm else None), likes, need)


@rnn_scan_backward.register_fake
def _(dY, dh_n, x, h0, w_ih, w_hh, Y, A, R, S, batch_sizes, reverse, nonlinearity, need, dropout=None, zoneout=None,
      ln_hh=None):
    return fake_grads((x, h0, w_hh if w_ih is None else w_ih, w_hh, w_hh.new_empty(w_hh.shape[0]),
                       w_hh if ln_hh is None else ln_hh), need)


def _rnn_setup(ctx, inputs, output):
    x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse, nonlinearity, *drawn_and_norm = inputs
    Y, _, *stored = output
    ctx.save_for_backward(x, h0, w_ih, w_hh, Y, *stored, *drawn_and_norm, b_ih, b_hh)
    ctx.batch_sizes, ctx.reverse, ctx.nonlinearity = batch_sizes, reverse, nonlinearity
    ctx.has_bias = b_ih is not None
    ctx.mark_non_differentiable(*stored)


def _rnn_backward(ctx, dY, dh_n, *_):
    given, need = input_needs(ctx, 12)
    *saved, dropout, zoneout, ln_hh, b_ih, b_hh = ctx.saved_tensors
    if torch.is_grad_enabled():  # create_graph=True: gradients with a graph, by the step-by-step recurrence
        x, h0, w_ih, w_hh = saved[:4]
        got = recomputed_grads(f"RNN_{ctx.nonlinearity.upper()}", [x, h0, w_ih, w_hh, b_ih, b_hh, None, ln_hh],
                               [*need[:6], False, need[11]], [dY, dh_n], ctx.batch_sizes, ctx.reverse,
                               Masks(dropout, zoneout))
        return (*got[:6], None, None, None, None, None, got[7])[:given]
    bias = ctx.has_bias and (need[4] or need[5])
    dx, dh0, dw_ih, dw_hh, db, d_norm = rnn_scan_backward(
        dY, dh_n, *saved, ctx.batch_sizes, ctx.reverse, ctx.nonlinearity, [*need[:4], bias, need[11]], dropout,
        zoneout, ln_hh)
    # each bias gets its own tensor: autograd may keep a returned gradient as .grad without copying
    return (*wanted((dx, dh0, dw_ih, dw_hh), need[:4]), *wanted((db, db.clone()), (bias, bias)),
            None, None, None, None, None, *wanted((d_norm,), need[11:]))[:given]


rnn_scan_op.register_autograd(_rnn_backward, setup_context=_rnn_setup)


def rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse, nonlinearity, masks, norms):
    """The RNN's forward through its custom op, or (plain inference) its implementation directly: y and h_n.
    Arguments as :func:`rnnlab.recurrence.rnn_scan`'s, ``norms`` (ln_hh,) or ()."""
    tensors = (x, h0, w_ih, w_hh, b_ih, b_hh)
    norms = norms or (None,)
    drawn = (None, None) if masks is None else (masks.dropout, masks.zoneout)
    return run_forward(_rnn_forward, rnn_scan_op, tensors, (batch_sizes, reverse, nonlinearity), drawn, norms)[:2]
