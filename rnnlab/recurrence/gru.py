"""GRU recurrence over a whole sequence with a hand-written backward through time.

Math (torch.nn.GRU, gate order r, z, n):
    r = sigmoid(x W_ir^T + b_ir + h W_hr^T + b_hr);  z likewise
    n = tanh(x W_in^T + b_in + r * (h W_hn^T + b_hn));  h' = n + z * (h - n)

The forward stores the activated gates (T, B, 3H), h W_hn^T + b_hn (T, B, H) and the outputs (T, B, H).
With ``masks`` (rnnlab.recurrence.variants.Masks) W_hh multiplies h times recurrent dropout's mask (the
z h term takes h as it is) and zoneout moves h' towards h. With layer norm (x then holds the normalised input
projections, ``w_ih`` None) h W_hh^T is normalised, times its gain, before b_hh is added; the normalised
products are stored with each row's 1 / std.
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
def _gru_forward(x: Tensor, h0: Tensor, w_ih: Tensor | None, w_hh: Tensor, b_ih: Tensor | None, b_hh: Tensor | None,
                 batch_sizes: list[int] | None, reverse: bool, dropout: Tensor | None = None,
                 zoneout: Tensor | None = None, ln_hh: Tensor | None = None
                 ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The forward (the custom op ``rnnlab::gru_scan``, and called directly in plain inference): y (T, B, H) and
    h_n (B, H), and for the backward the activated gates G (T, B, 3H), h W_hn^T + b_hn GHn (T, B, H), and with
    layer norm the products R (T, B, 3H) and the rows' mean and 1 / std S (2, T, B, 1), else empty.
    ``dropout``, ``zoneout``: the draws (rnnlab.recurrence.variants.Masks)."""
    T, B, _ = x.shape
    H = h0.shape[-1]
    sched = Schedule(T, B, batch_sizes, reverse)
    norm = ln_hh is not None
    masks = Masks(dropout, zoneout)
    G = input_projection(x, w_ih, b_ih)  # (T, B, 3H), activated in place below
    GHn = sched.new_buffer(H, like=x)  # (T, B, H): h W_hn^T + b_hn
    Y = sched.new_buffer(H, like=x)  # (T, B, H)
    if norm:
        R = x.new_zeros(T, B, 3 * H)  # the products h W_hh^T (taken in place)
        S = norm_stats(1, T, B, like=x)  # each step's rows' mean and 1 / std of them
    recurrent = StepWeight(w_hh, B, T, bias=None if norm else b_hh)
    for step in sched.steps:
        t, b = step.t, step.b
        h = sched.incoming(Y, h0, step)  # (b, H)
        if norm:
            gh, (S[0, t, :b], S[1, t, :b]) = normalise_rows(recurrent.addmm_(R[t, :b], masks.dropped(h)), ln_hh, b_hh)
        else:
            gh = recurrent(masks.dropped(h))  # (b, 3H)
        g = G[t, :b]  # (b, 3H)
        rz = g[:, : 2 * H]
        rz.add_(gh[:, : 2 * H]).sigmoid_()
        GHn[t, :b] = gh[:, 2 * H :]
        n = g[:, 2 * H :]
        n.addcmul_(rz[:, :H], gh[:, 2 * H :]).tanh_()
        y = Y[t, :b]
        torch.sub(h, n, out=y)
        torch.addcmul(n, rz[:, H:], y, out=y)
        if masks.zoneout is not None:
            torch.lerp(y, h, masks.zoneout_at(t, b)[0], out=y)
    if not norm:  # outputs of a custom op are distinct tensors, the empty ones too
        R, S = x.new_empty(0), x.new_empty(0)
    return Y, sched.final(Y), G, GHn, R, S


gru_scan_op = torch.library.custom_op("rnnlab::gru_scan", mutates_args=())(_gru_forward)


@gru_scan_op.register_fake
def _(x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse, dropout=None, zoneout=None, ln_hh=None):
    T, B, _ = x.shape
    H = h0.shape[-1]
    norm = ln_hh is not None
    return (x.new_empty(T, B, H), x.new_empty(B, H), x.new_empty(T, B, 3 * H), x.new_empty(T, B, H),
            x.new_empty((T, B, 3 * H) if norm else (0,)), norm_stats(1, T, B, like=x) if norm else x.new_empty(0))


@torch.library.custom_op("rnnlab::gru_scan_backward", mutates_args=())
@autocast_off
def gru_scan_backward(dY: Tensor, dh_n: Tensor, x: Tensor, h0: Tensor, w_ih: Tensor | None, w_hh: Tensor, G: Tensor,
                      GHn: Tensor, Y: Tensor, R: Tensor, S: Tensor, batch_sizes: list[int] | None, reverse: bool,
                      need: list[bool], dropout: Tensor | None = None, zoneout: Tensor | None = None,
                      ln_hh: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The backward through time: gradients of x, h0, w_ih, w_hh, b_ih, b_hh and ln_hh (each empty where
    ``need`` says it is not wanted) from those of y and h_n and what _gru_forward stored."""

    T, B, _ = x.shape
    H = Y.shape[-1]
    sched = Schedule(T, B, batch_sizes, reverse)
    masks = Masks(dropout, zoneout)
    norm = ln_hh is not None
    r, z, n = G.chunk(3, 2)  # each (T, B, H)
    h_prev = sched.all_incoming(Y, h0)  # (T, B, H)
    # Factors independent of the incoming gradient:
    #   d([z, n] pre) = dh * KZN;  d(r pre) = d(n pre) * Ar;  d(h W_hn^T + b_hn) = d(n pre) * r
    KZN = torch.empty(T, B, 2, H, dtype=x.dtype, device=x.device)
    sigmoid_grad(h_prev - n, z, out=KZN[:, :, 0])  # (h - n) * z * (1 - z)
    tanh_grad(1 - z, n, out=KZN[:, :, 1])  # (1 - z) * (1 - n^2)
    Ar = sigmoid_grad(GHn, r)  # (T, B, H): ghn * r * (1 - r)
    dG = sched.new_buffer(3 * H, like=x)  # (T, B, 3H) gradients of the input-side pre-activations
    dGH = sched.new_buffer(3 * H, like=x)  # (T, B, 3H) ... and of the hidden-side ones
    dG3 = dG.view(T, B, 3, H)
    if norm:
        dR = sched.new_buffer(3 * H, like=x)  # (T, B, 3H) gradients of h W_hh^T before normalisation
        d_norm = torch.zeros_like(ln_hh)  # summed over steps
    recurrent = StepWeight(w_hh.t(), B, T)
    carry = dh_n.clone()  # (B, H)
    for step in reversed(sched.steps):
        t, b = step.t, step.b
        dh = carry[:b]
        dh.add_(dY[t, :b])
        dh, direct = zoneout_grads(dh, masks.zoneout_at(t, b)[0])
        torch.mul(dh.unsqueeze(1), KZN[t, :b], out=dG3[t, :b, 1:])
        dn = dG3[t, :b, 2]
        torch.mul(dn, Ar[t, :b], out=dG3[t, :b, 0])
        dGH[t, :b, : 2 * H] = dG[t, :b, : 2 * H]
        torch.mul(dn, r[t, :b], out=dGH[t, :b, 2 * H :])
        d_product = dGH[t, :b]
        if norm:
            d_product, d_gain, _ = normalise_grad(d_product, R[t, :b], (S[0, t, :b], S[1, t, :b]), ln_hh)
            dR[t, :b] = d_product
            d_norm.add_(d_gain)
        if not masks.any:  # in place in carry
            recurrent.addmm_(dh.mul_(z[t, :b]), d_product)
            continue
        back = masks.dropped(recurrent(d_product))  # (b, H)
        back.addcmul_(dh, z[t, :b])
        carry = set_rows(carry, back if direct is None else back.add_(direct))
    dx, dw_ih = input_grads(dG, x, w_ih, need[0], need[2])
    _, dw_hh = linear_grads(dR if norm else dGH, masks.dropped(h_prev), w_hh, False, need[3])
    db_ih = bias_grad(dG, need[4])
    db_hh = bias_grad(dGH, need[5])
    likes = (x, h0, w_hh, w_hh, w_hh, w_hh, w_hh if ln_hh is None else ln_hh)
    return cast_grads((dx, carry, dw_ih, dw_hh, db_ih, db_hh, d_norm if norm else None), likes, need)


@gru_scan_backward.register_fake
def _(dY, dh_n, x, h0, w_ih, w_hh, G, GHn, Y, R, S, batch_sizes, reverse, need, dropout=None, zoneout=None,
      ln_hh=None):
    bias = w_hh.new_empty(w_hh.shape[0])
    return fake_grads((x, h0, w_hh if w_ih is None else w_ih, w_hh, bias, bias, w_hh if ln_hh is None else ln_hh),
                      need)


def _gru_setup(ctx, inputs, output):
    x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse, *drawn_and_norm = inputs
    Y, _, *stored = output
    ctx.save_for_backward(x, h0, w_ih, w_hh, *stored[:2], Y, *stored[2:], *drawn_and_norm, b_ih, b_hh)
    ctx.batch_sizes, ctx.reverse, ctx.has_bias = batch_sizes, reverse, b_ih is not None
    ctx.mark_non_differentiable(*stored)


def _gru_backward(ctx, dY, dh_n, *_):
    given, need = input_needs(ctx, 11)
    *saved, dropout, zoneout, ln_hh, b_ih, b_hh = ctx.saved_tensors
    if torch.is_grad_enabled():  # create_graph=True: gradients with a graph, by the step-by-step recurrence
        x, h0, w_ih, w_hh = saved[:4]
        got = recomputed_grads("GRU", [x, h0, w_ih, w_hh, b_ih, b_hh, None, ln_hh], [*need[:6], False, need[10]],
                               [dY, dh_n], ctx.batch_sizes, ctx.reverse, Masks(dropout, zoneout))
        return (*got[:6], None, None, None, None, got[7])[:given]
    biases = [ctx.has_bias and n for n in need[4:6]]
    grads = gru_scan_backward(dY, dh_n, *saved, ctx.batch_sizes, ctx.reverse, [*need[:4], *biases, need[10]], dropout,
                              zoneout, ln_hh)
    return (*wanted(grads[:6], [*need[:4], *biases]), None, None, None, None, *wanted(grads[6:], need[10:]))[:given]


gru_scan_op.register_autograd(_gru_backward, setup_context=_gru_setup)


def gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse, masks, norms):
    """The GRU's forward through its custom op, or (plain inference) its implementation directly: y and h_n.
    Arguments as :func:`rnnlab.recurrence.gru_scan`'s, ``norms`` (ln_hh,) or ()."""
    tensors = (x, h0, w_ih, w_hh, b_ih, b_hh)
    norms = norms or (None,)
    drawn = (None, None) if masks is None else (masks.dropout, masks.zoneout)
    return run_forward(_gru_forward, gru_scan_op, tensors, (batch_sizes, reverse), drawn, norms)[:2]
