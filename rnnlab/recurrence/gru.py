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

from .common import (
    autocast_off,
    bias_grad,
    input_grads,
    input_projection,
    linear_grads,
    normalise_grad,
    normalise_rows,
    recomputed_grads,
    set_rows,
    sigmoid_grad,
    tanh_,
    tanh_grad,
    zoneout_grads,
)
from .gemm import StepWeight
from .schedule import Schedule
from .variants import Masks


class GRUScan(torch.autograd.Function):
    """One direction of one GRU layer. See :func:`rnnlab.recurrence.gru_scan`."""

    @staticmethod
    @autocast_off
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse, masks=None, ln_hh=None):
        T, B, _ = x.shape
        H = h0.shape[-1]
        sched = Schedule(T, B, batch_sizes, reverse)
        norm = ln_hh is not None
        masks = Masks() if masks is None else masks
        G = input_projection(x, w_ih, b_ih)  # (T, B, 3H), activated in place below
        GHn = sched.new_buffer(H, like=x)  # (T, B, H): h W_hn^T + b_hn
        Y = sched.new_buffer(H, like=x)  # (T, B, H)
        if norm:
            R = x.new_zeros(T, B, 3 * H)  # the products h W_hh^T (taken in place)
            stats = [None] * T  # each step's rows' mean and 1 / std of them
        recurrent = StepWeight(w_hh, B, T, bias=None if norm else b_hh)
        for step in sched.steps:
            t, b = step.t, step.b
            h = sched.incoming(Y, h0, step)  # (b, H)
            if norm:
                gh, stats[t] = normalise_rows(recurrent.addmm_(R[t, :b], masks.dropped(h)), ln_hh, b_hh)
            else:
                gh = recurrent(masks.dropped(h))  # (b, 3H)
            g = G[t, :b]  # (b, 3H)
            rz = g[:, : 2 * H]
            rz.add_(gh[:, : 2 * H]).sigmoid_()
            GHn[t, :b] = gh[:, 2 * H :]
            n = g[:, 2 * H :]
            tanh_(n.addcmul_(rz[:, :H], gh[:, 2 * H :]))
            y = Y[t, :b]
            torch.sub(h, n, out=y)
            torch.addcmul(n, rz[:, H:], y, out=y)
            if masks.zoneout is not None:
                torch.lerp(y, h, masks.zoneout_at(t, b)[0], out=y)
        ctx.save_for_backward(x, h0, w_ih, w_hh, b_ih, b_hh, G, GHn, Y, *((R, ln_hh) if norm else ()))
        ctx.sched, ctx.masks, ctx.norm, ctx.stats = sched, masks, norm, stats if norm else None
        ctx.has_bias = b_ih is not None
        return Y, sched.final(Y)

    @staticmethod
    @autocast_off
    def backward(ctx, dY, dh_n):
        masks: Masks = ctx.masks
        x, h0, w_ih, w_hh, b_ih, b_hh, G, GHn, Y, *normed = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: gradients with a graph, by the step-by-step recurrence
            need = ctx.needs_input_grad
            got = recomputed_grads("GRU", [x, h0, w_ih, w_hh, b_ih, b_hh, None, *normed[1:]],
                                   [*need[:6], False, *need[9:]], [dY, dh_n], ctx.sched.batch_sizes, ctx.sched.reverse,
                                   masks)
            return *got[:6], None, None, None, *got[7:]
        sched: Schedule = ctx.sched
        T, B, _ = x.shape
        H = Y.shape[-1]
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
        if ctx.norm:
            R, ln_hh = normed
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
            if ctx.norm:
                d_product, d_gain, _ = normalise_grad(d_product, R[t, :b], ctx.stats[t], ln_hh)
                dR[t, :b] = d_product
                d_norm.add_(d_gain)
            if not masks.any:  # in place in carry
                recurrent.addmm_(dh.mul_(z[t, :b]), d_product)
                continue
            back = masks.dropped(recurrent(d_product))  # (b, H)
            back.addcmul_(dh, z[t, :b])
            carry = set_rows(carry, back if direct is None else back.add_(direct))
        need = ctx.needs_input_grad
        dx, dw_ih = input_grads(dG, x, w_ih, need[0], need[2])
        _, dw_hh = linear_grads(dR if ctx.norm else dGH, masks.dropped(h_prev), w_hh, False, need[3])
        db_ih = bias_grad(dG, ctx.has_bias and need[4])
        db_hh = bias_grad(dGH, ctx.has_bias and need[5])
        return dx, carry, dw_ih, dw_hh, db_ih, db_hh, None, None, None, d_norm if ctx.norm else None
