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
    sigmoid_grad,
    tanh_,
    tanh_by_sigmoid,
    tanh_grad,
    zoneout_grads,
)
from .gemm import StepWeight
from .schedule import Schedule
from .variants import Masks


class LSTMScan(torch.autograd.Function):
    """One direction of one LSTM layer. See :func:`rnnlab.recurrence.lstm_scan`."""

    @staticmethod
    @autocast_off
    def forward(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, reverse, masks=None, ln_hh=None,
                ln_c=None, ln_c_bias=None):
        T, B, _ = x.shape
        H = w_hh.shape[0] // 4
        sched = Schedule(T, B, batch_sizes, reverse)
        norm = ln_hh is not None
        masks = Masks() if masks is None else masks
        # In fp32/fp64 the g gate's rows are doubled so one sigmoid activates all four gates: tanh(a) =
        # 2 sigmoid(2a) - 1 (doubling is exact in floating point); half precision takes tanh itself.
        one_sigmoid = tanh_by_sigmoid(x.dtype)
        scale = torch.ones(4 * H, 1, dtype=x.dtype, device=x.device)
        scale[2 * H : 3 * H] = 2 if one_sigmoid else 1
        bias = None if b_ih is None else (b_ih + b_hh) * scale[:, 0]
        if norm:  # x: the normalised input projections (T, B, 4H), times the gain
            G = input_projection(x * scale[:, 0], None, bias)
            R = x.new_zeros(T, B, 4 * H)  # the recurrent products (taken in place)
            stats = [None] * T  # each step's rows' mean and 1 / std: R's, then the cell state's
            gain = ln_hh * scale[:, 0]
        else:
            G = input_projection(x, w_ih * scale, bias)  # (T, B, 4H)
        C = sched.new_buffer(H, like=x)  # (T, B, H) cell states
        # layer norm's input: the cell states before zoneout
        CL = sched.new_buffer(H, like=x) if norm and masks.zoneout_cell is not None else C
        TC = sched.new_buffer(H, like=x)  # (T, B, H) tanh of the cell states (layer norm: of the normalised)
        Y = sched.new_buffer(h0.shape[-1], like=x)  # (T, B, P) outputs
        recurrent = StepWeight(w_hh if norm else w_hh * scale, B, T)
        project = StepWeight(w_hr, B, T) if w_hr is not None else None
        for step in sched.steps:
            t, b = step.t, step.b
            g = G[t, :b]  # (b, 4H) activated gates, stored for the backward
            h = sched.incoming(Y, h0, step)  # (b, P)
            if norm:
                normed, r_stats = normalise_rows(recurrent.addmm_(R[t, :b], masks.dropped(h)), gain)
                g.add_(normed)
            else:
                recurrent.addmm_(g, masks.dropped(h))
            i, f, gg, o = g.chunk(4, 1)
            if one_sigmoid:
                g.sigmoid_()
                gg.mul_(2).sub_(1)
            else:
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
                shown, c_stats = normalise_rows(c, ln_c, ln_c_bias)
                tc = tanh_(shown, out=TC[t, :b])
                stats[t] = (r_stats, c_stats)
            else:
                tc = tanh_(c, out=TC[t, :b])
            if w_hr is None:
                torch.mul(tc, o, out=Y[t, :b])
            else:
                Y[t, :b] = project(tc * o)
            zone_h, zone_c = masks.zoneout_at(t, b)
            if zone_h is not None:
                torch.lerp(Y[t, :b], h, zone_h, out=Y[t, :b])
            if zone_c is not None:
                c.lerp_(c_prev, zone_c)
        normed = (R, CL, ln_hh, ln_c, ln_c_bias) if norm else ()
        ctx.save_for_backward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, G, C, TC, Y, *normed)
        ctx.sched, ctx.masks, ctx.norm, ctx.stats = sched, masks, norm, stats if norm else None
        ctx.has_bias = b_ih is not None
        return Y, sched.final(Y), sched.final(C)

    @staticmethod
    @autocast_off
    def backward(ctx, dY, dh_n, dc_n):
        masks: Masks = ctx.masks
        x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, G, C, TC, Y, *normed = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: gradients with a graph, by the step-by-step recurrence
            need = ctx.needs_input_grad
            got = recomputed_grads("LSTM", [x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, *normed[2:]],
                                   [*need[:8], *need[11:]], [dY, dh_n, dc_n], ctx.sched.batch_sizes,
                                   ctx.sched.reverse, masks)
            return *got[:8], None, None, None, *got[8:]
        sched: Schedule = ctx.sched
        T, B, _ = x.shape
        H = C.shape[-1]
        if ctx.norm:
            R, CL, ln_hh, ln_c, ln_c_bias = normed
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
            if ctx.norm:
                d_c, d_gain, d_bias = normalise_grad(dh * A[t, :b], CL[t, :b], ctx.stats[t][1], ln_c, ln_c_bias)
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
            if ctx.norm:
                d_product, d_gain, _ = normalise_grad(d_product, R[t, :b], ctx.stats[t][0], ln_hh)
                dR[t, :b] = d_product
                d_norms[0].add_(d_gain)
            back = masks.dropped(recurrent(d_product))  # (b, P)
            carry_h = set_rows(carry_h, back if direct_h is None else back.add_(direct_h))
        need = ctx.needs_input_grad
        dx, dw_ih = input_grads(dG, x, w_ih, need[0], need[3])
        _, dw_hh = linear_grads(dR if ctx.norm else dG, masks.dropped(sched.all_incoming(Y, h0)), w_hh, False,
                                need[4])
        db = bias_grad(dG, ctx.has_bias and (need[5] or need[6]))
        dw_hr = None
        if w_hr is not None and need[7]:
            _, dw_hr = linear_grads(dY_total, o * TC, w_hr, False, True)
        norm_grads = d_norms if ctx.norm else (None, None, None)
        # each bias gets its own tensor: autograd may keep a returned gradient as .grad without copying
        return dx, carry_h, carry_c, dw_ih, dw_hh, db, clone_or_none(db), dw_hr, None, None, None, *norm_grads
