"""LSTM recurrence over a whole sequence with a hand-written backward through time.

Math (torch.nn.LSTM, gate order i, f, g, o):
    gates = x W_ih^T + b_ih + h W_hh^T + b_hh;  i, f, o = sigmoid(.), g = tanh(.)
    c' = f * c + i * g;  h' = o * tanh(c')  (then h' = h' W_hr^T when proj_size > 0)

The forward stores the activated gates (T, B, 4H), the cell states and their tanh (T, B, H each) and
the outputs (T, B, P);
the backward precomputes every factor that does not depend on the incoming gradient without a time loop,
so the reverse loop does only a handful of operations per step, and computes all weight gradients as
single GEMMs over all timesteps after the loop.

With ``masks`` (rnnlab.recurrence.variants.Masks) W_hh multiplies h times recurrent dropout's mask and
zoneout moves h' (after any projection) and c' towards h and c: the stored cell states are then the zoned
ones, and the tanh is stored of c' (what h' was computed from). With layer norm (variants.py's math; x then
holds the normalised input projections, and ``w_ih`` is None) each step's recurrent product is normalised
(stored normalised, with each row's 1 / std) before its gain, and c' before the tanh (stored likewise); the
backward keeps the gradients of the product before the normalisation for dW_hh.
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
    sigmoid_grad,
    tanh_grad,
    zoneout_grads,
)
from .custom_ops import cast_grads, fake_grads, input_needs, run_forward, wanted
from .gemm import StepWeight
from .schedule import Schedule
from .variants import Masks


@autocast_off
def _lstm_forward(x: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor | None, w_hh: Tensor, b_ih: Tensor | None,
                  b_hh: Tensor | None, w_hr: Tensor | None, batch_sizes: list[int] | None, reverse: bool,
                  dropout: Tensor | None = None, zoneout: Tensor | None = None, zoneout_cell: Tensor | None = None,
                  ln_hh: Tensor | None = None, ln_c: Tensor | None = None, ln_c_bias: Tensor | None = None
                  ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The forward (the custom op ``rnnlab::lstm_scan``, and called directly in plain inference): y (T, B, P),
    h_n (B, P), c_n (B, H), and for the backward the activated gates G (T, B, 4H), the cell states C and their
    tanh TC (T, B, H each), and with layer norm the recurrent products R (T, B, 4H), the cell states before
    zoneout CL (T, B, H; empty when they are C) and the rows' statistics S (4, T, B, 1: R's mean and 1 / std,
    then c's); empty where absent. ``dropout``, ``zoneout``, ``zoneout_cell``: the draws
    (rnnlab.recurrence.variants.Masks)."""
    T, B, _ = x.shape
    H = w_hh.shape[0] // 4
    sched = Schedule(T, B, batch_sizes, reverse)
    norm = ln_hh is not None
    masks = Masks(dropout, zoneout, zoneout_cell)
    bias = None if b_ih is None else b_ih + b_hh
    if norm:  # x: the normalised input projections (T, B, 4H), times the gain
        G = input_projection(x, None, bias)
        R = x.new_zeros(T, B, 4 * H)  # the recurrent products (taken in place)
        S = norm_stats(2, T, B, like=x)  # each step's rows' mean and 1 / std: R's, then the cell state's
    else:
        G = input_projection(x, w_ih, bias)  # (T, B, 4H)
    C = sched.new_buffer(H, like=x)  # (T, B, H) cell states
    # layer norm's input: the cell states before zoneout
    CL = sched.new_buffer(H, like=x) if norm and masks.zoneout_cell is not None else C
    TC = sched.new_buffer(H, like=x)  # (T, B, H) tanh of the cell states (layer norm: of the normalised)
    Y = sched.new_buffer(h0.shape[-1], like=x)  # (T, B, P) outputs
    recurrent = StepWeight(w_hh, B, T)
    project = StepWeight(w_hr, B, T) if w_hr is not None else None
    for step in sched.steps:
        t, b = step.t, step.b
        g = G[t, :b]  # (b, 4H) activated gates, stored for the backward
        h = sched.incoming(Y, h0, step)  # (b, P)
        if norm:
            normed, (S[0, t, :b], S[1, t, :b]) = normalise_rows(recurrent.addmm_(R[t, :b], masks.dropped(h)), ln_hh)
            g.add_(normed)
        else:
            recurrent.addmm_(g, masks.dropped(h))
        i, f, gg, o = g.chunk(4, 1)
        g[:, : 2 * H].sigmoid_()
        o.sigmoid_()
        gg.tanh_()
        c = C[t, :b]
        c_prev = sched.incoming(C, c0, step)  # (b, H)
        torch.mul(f, c_prev, out=c)
        c.addcmul_(i, gg)
        if norm:
            if CL is not C:
                CL[t, :b] = c
            shown, (S[2, t, :b], S[3, t, :b]) = normalise_rows(c, ln_c, ln_c_bias)
            tc = torch.tanh(shown, out=TC[t, :b])
        else:
            tc = torch.tanh(c, out=TC[t, :b])
        if w_hr is None:
            torch.mul(tc, o, out=Y[t, :b])
        else:
            Y[t, :b] = project(tc * o)
        zone_h, zone_c = masks.zoneout_at(t, b)
        if zone_h is not None:
            torch.lerp(Y[t, :b], h, zone_h, out=Y[t, :b])
        if zone_c is not None:
            c.lerp_(c_prev, zone_c)
    if not norm:  # outputs of a custom op are distinct tensors, the empty ones too
        R, S = x.new_empty(0), x.new_empty(0)
    return Y, sched.final(Y), sched.final(C), G, C, TC, R, CL if CL is not C else x.new_empty(0), S


lstm_scan_op = torch.library.custom_op("rnnlab::lstm_scan", mutates_args=())(_lstm_forward)


@lstm_scan_op.register_fake
def _(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, reverse, dropout=None, zoneout=None, zoneout_cell=None,
      ln_hh=None, ln_c=None, ln_c_bias=None):
    T, B, _ = x.shape
    H, P = w_hh.shape[0] // 4, h0.shape[-1]
    norm = ln_hh is not None
    return (x.new_empty(T, B, P), x.new_empty(B, P), x.new_empty(B, H), x.new_empty(T, B, 4 * H),
            x.new_empty(T, B, H), x.new_empty(T, B, H), x.new_empty((T, B, 4 * H) if norm else (0,)),
            x.new_empty((T, B, H) if norm and zoneout_cell is not None else (0,)),
            norm_stats(2, T, B, like=x) if norm else x.new_empty(0))


@torch.library.custom_op("rnnlab::lstm_scan_backward", mutates_args=())
@autocast_off
def lstm_scan_backward(dY: Tensor, dh_n: Tensor, dc_n: Tensor, x: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor | None,
                       w_hh: Tensor, w_hr: Tensor | None, G: Tensor, C: Tensor, TC: Tensor, Y: Tensor, R: Tensor,
                       CL: Tensor, S: Tensor, batch_sizes: list[int] | None, reverse: bool, need: list[bool],
                       dropout: Tensor | None = None, zoneout: Tensor | None = None, zoneout_cell: Tensor | None = None,
                       ln_hh: Tensor | None = None, ln_c: Tensor | None = None, ln_c_bias: Tensor | None = None
                       ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The backward through time: gradients of x, h0, c0, w_ih, w_hh, the bias, w_hr, ln_hh, ln_c and ln_c_bias
    (each empty where ``need`` says it is not wanted) from those of y, h_n and c_n and what _lstm_forward
    stored."""
    T, B, _ = x.shape
    H = C.shape[-1]
    sched = Schedule(T, B, batch_sizes, reverse)
    masks = Masks(dropout, zoneout, zoneout_cell)
    norm = ln_hh is not None
    if norm:
        CL = CL if CL.numel() else C
        dR = sched.new_buffer(4 * H, like=x)  # (T, B, 4H) gradients of the products before normalisation
        d_norms = [torch.zeros_like(p) for p in (ln_hh, ln_c, ln_c_bias)]  # summed over steps
    i, f, g, o = G.chunk(4, 2)  # each (T, B, H)
    # Factors independent of the incoming gradient:
    #   dc += dh * A;  d(o pre) = dh * Bo;  d([i, f, g] pre) = dc * K
    A = tanh_grad(o, TC)  # (T, B, H): o * (1 - tanh(c)^2)
    Bo = sigmoid_grad(TC, o)  # (T, B, H): tanh(c) * o * (1 - o)
    K = torch.empty(T, B, 3, H, dtype=x.dtype, device=x.device)
    sigmoid_grad(g, i, out=K[:, :, 0])  # g * i * (1 - i)
    sigmoid_grad(sched.all_incoming(C, c0), f, out=K[:, :, 1])  # c_prev * f * (1 - f)
    tanh_grad(i, g, out=K[:, :, 2])  # i * (1 - g^2)
    dG = sched.new_buffer(4 * H, like=x)  # (T, B, 4H) gradients of the gate pre-activations
    dG4 = dG.view(T, B, 4, H)
    carry_h = dh_n.clone()  # (B, P) gradient flowing into each row's incoming h
    carry_c = dc_n.clone()  # (B, H)
    if w_hr is not None:
        dY_total = sched.new_buffer(Y.shape[-1], like=x)  # (T, B, P) for the W_hr gradient
    recurrent = StepWeight(w_hh.t(), B, T)
    unproject = StepWeight(w_hr.t(), B, T) if w_hr is not None else None
    for step in reversed(sched.steps):
        t, b = step.t, step.b
        dh = carry_h[:b]
        dh.add_(dY[t, :b])
        dc = carry_c[:b]
        zone_h, zone_c = masks.zoneout_at(t, b)
        dh, direct_h = zoneout_grads(dh, zone_h)
        dc, direct_c = zoneout_grads(dc, zone_c)
        if w_hr is not None:
            dY_total[t, :b] = dh
            dh = unproject(dh)  # (b, H)
        if norm:
            d_c, d_gain, d_bias = normalise_grad(dh * A[t, :b], CL[t, :b], (S[2, t, :b], S[3, t, :b]), ln_c, ln_c_bias)
            dc.add_(d_c)
            d_norms[1].add_(d_gain)
            d_norms[2].add_(d_bias)
        else:
            dc.addcmul_(dh, A[t, :b])
        torch.mul(dh, Bo[t, :b], out=dG4[t, :b, 3])
        torch.mul(dc.unsqueeze(1), K[t, :b], out=dG4[t, :b, :3])
        dc.mul_(f[t, :b])
        if direct_c is not None:
            carry_c = set_rows(carry_c, dc.add_(direct_c))
        d_product = dG[t, :b]
        if norm:
            d_product, d_gain, _ = normalise_grad(d_product, R[t, :b], (S[0, t, :b], S[1, t, :b]), ln_hh)
            dR[t, :b] = d_product
            d_norms[0].add_(d_gain)
        back = masks.dropped(recurrent(d_product))  # (b, P)
        carry_h = set_rows(carry_h, back if direct_h is None else back.add_(direct_h))
    dx, dw_ih = input_grads(dG, x, w_ih, need[0], need[3])
    _, dw_hh = linear_grads(dR if norm else dG, masks.dropped(sched.all_incoming(Y, h0)), w_hh, False, need[4])
    db = bias_grad(dG, need[5])
    dw_hr = None
    if w_hr is not None and need[6]:
        _, dw_hr = linear_grads(dY_total, o * TC, w_hr, False, True)
    d_norms = d_norms if norm else (None, None, None)
    likes = (x, h0, c0, w_hh, w_hh, w_hh, w_hh, *(w_hh if n is None else n for n in (ln_hh, ln_c, ln_c_bias)))
    return cast_grads((dx, carry_h, carry_c, dw_ih, dw_hh, db, dw_hr, *d_norms), likes, need)


@lstm_scan_backward.register_fake
def _(dY, dh_n, dc_n, x, h0, c0, w_ih, w_hh, w_hr, G, C, TC, Y, R, CL, S, batch_sizes, reverse, need, dropout=None,
      zoneout=None, zoneout_cell=None, ln_hh=None, ln_c=None, ln_c_bias=None):
    bias = w_hh.new_empty(w_hh.shape[0])
    likes = (x, h0, c0, w_hh if w_ih is None else w_ih, w_hh, bias, w_hh if w_hr is None else w_hr,
             *(w_hh if n is None else n for n in (ln_hh, ln_c, ln_c_bias)))
    return fake_grads(likes, need)


def _lstm_setup(ctx, inputs, output):
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, reverse, *drawn_and_norms = inputs
    Y, _, _, *stored = output
    ctx.save_for_backward(x, h0, c0, w_ih, w_hh, w_hr, *stored[:3], Y, *stored[3:], *drawn_and_norms, b_ih, b_hh)
    ctx.batch_sizes, ctx.reverse, ctx.has_bias = batch_sizes, reverse, b_ih is not None
    ctx.mark_non_differentiable(*stored)


def _lstm_backward(ctx, dY, dh_n, dc_n, *_):
    given, need = input_needs(ctx, 16)
    *saved, dropout, zoneout, zoneout_cell, ln_hh, ln_c, ln_c_bias, b_ih, b_hh = ctx.saved_tensors
    norms = (ln_hh, ln_c, ln_c_bias)
    if torch.is_grad_enabled():  # create_graph=True: gradients with a graph, by the step-by-step recurrence
        x, h0, c0, w_ih, w_hh, w_hr = saved[:6]
        got = recomputed_grads("LSTM", [x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, *norms], [*need[:8], *need[13:]],
                               [dY, dh_n, dc_n], ctx.batch_sizes, ctx.reverse, Masks(dropout, zoneout, zoneout_cell))
        return (*got[:8], None, None, None, None, None, *got[8:])[:given]
    bias = ctx.has_bias and (need[5] or need[6])
    dx, dh0, dc0, dw_ih, dw_hh, db, dw_hr, *d_norms = lstm_scan_backward(
        dY, dh_n, dc_n, *saved, ctx.batch_sizes, ctx.reverse, [*need[:5], bias, need[7], *need[13:]], dropout,
        zoneout, zoneout_cell, *norms)
    # each bias gets its own tensor: autograd may keep a returned gradient as .grad without copying
    return (*wanted((dx, dh0, dc0, dw_ih, dw_hh), need[:5]), *wanted((db, db.clone()), (bias, bias)),
            *wanted((dw_hr,), need[7:8]), None, None, None, None, None, *wanted(d_norms, need[13:]))[:given]


lstm_scan_op.register_autograd(_lstm_backward, setup_context=_lstm_setup)


def lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, reverse, masks, norms):
    """The LSTM's forward through its custom op, or (plain inference) its implementation directly: y, h_n and
    c_n. Arguments as :func:`rnnlab.recurrence.lstm_scan`'s, ``norms`` (ln_hh, ln_c, ln_c_bias) or ()."""
    tensors = (x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr)
    norms = norms or (None, None, None)
    drawn = (None, None, None) if masks is None else (masks.dropout, masks.zoneout, masks.zoneout_cell)
    return run_forward(_lstm_forward, lstm_scan_op, tensors, (batch_sizes, reverse), drawn, norms)[:3]
