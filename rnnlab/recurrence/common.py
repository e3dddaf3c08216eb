"""Pieces shared by every recurrence: the input projection before the time loop, the weight gradients
after it (each one matrix product over all timesteps), and small helpers of the loops."""

from __future__ import annotations

import functools
import inspect

import torch
import torch.nn.functional as F

from .gemm import linear
from .variants import EPS, Masks, variant_scan


def has_autocast(device_type: str) -> bool:
    """Whether torch.autocast knows ``device_type`` ("meta" it does not). Under torch.compile and export, taken as
    known without asking: Dynamo before torch 2.13 cannot trace torch.amp.is_autocast_available (a torch 2.11 compile
    of a layer failed on it), and what Dynamo traces runs on a device autocast knows."""
    return torch.compiler.is_compiling() or torch.amp.is_autocast_available(device_type)


def autocast_off(fn):
    """``fn`` run with torch.autocast off for the device of its first tensor argument: the recurrences and
    kernels compute in the dtypes they are given (the layers convert them first under autocast), also in a
    backward that autograd runs inside an autocast region."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        device = next(a.device for a in args if isinstance(a, torch.Tensor))
        if not has_autocast(device.type):  # "meta": no autocast to turn off
            return fn(*args, **kwargs)
        with torch.autocast(device.type, enabled=False):
            return fn(*args, **kwargs)

    # the annotations evaluated where fn was written (torch.library.custom_op reads them to infer a schema)
    run.__signature__ = inspect.signature(fn, eval_str=True)
    return run


# variants.variant_scan as the layers and cells call it (wrapped once: the wrapping evaluates annotations, which
# torch.compile and strict torch.export cannot trace)
stepwise_scan = autocast_off(variant_scan)


def traced_by_transform() -> bool:
    """Whether a ``torch.func`` transform (grad, vmap, jacrev, ...) or forward-mode AD
    (``torch.autograd.forward_ad``) traces the current call. rnnlab's hand-written backwards (the custom ops'
    registered autograd, which has no jvp and no batching rule) are written for neither. ``torch.export``
    traces the custom ops as ops (not asked here: torch 2.11's ``torch.compiler.is_exporting()`` is true
    under torch.compile too, which sent "auto" to torch.nn and "torch" step by step there)."""
    return torch._C._are_functorch_transforms_active() or _forward_ad_level() >= 0


def stepwise_under_transform(backend: str) -> bool:
    """Whether a layer or cell configured with ``backend`` runs the step-by-step recurrence through autograd
    (rnnlab.recurrence.variants) because a transform traces the call (:func:`traced_by_transform`): "torch"
    under any of them, and "auto" under ``vmap`` (per-sample gradients, ensembles) and forward-mode AD, which
    torch.nn's fused recurrences (aten::lstm, lstm_cell, oneDNN's LSTM, ...) do not all take; under the other
    transforms "auto" runs those."""
    if not traced_by_transform():
        return False
    return backend == "torch" or (backend == "auto" and (_forward_ad_level() >= 0 or _under_vmap()))


def _under_vmap() -> bool:
    return torch._C._functorch.TransformType.Vmap in _transforms()


def differentiating_transform() -> bool:
    """Whether a ``torch.func`` transform that differentiates (grad, vjp, jacrev, jvp, ...) is active: PyTorch's
    autograd of custom ops (the fused kernels') is not written for those."""
    kinds, active = torch._C._functorch.TransformType, _transforms()
    return kinds.Grad in active or kinds.Jvp in active


def _transforms() -> tuple:
    """The kinds of the torch.func transforms active now. The interpreter stack is read only when
    a transform is active: torch.compile cannot trace that read, and under it (without a transform) the answer is
    empty. A tuple, not a set: Dynamo before torch 2.13 cannot hash the kinds (a torch 2.11 compile failed so)."""
    if not torch._C._are_functorch_transforms_active():
        return ()
    return tuple(level.key() for level in torch._C._functorch.get_interpreter_stack() or [])


def _forward_ad_level() -> int:
    """The innermost ``forward_ad.dual_level`` open, -1 outside them."""
    return getattr(torch.autograd.forward_ad, "_current_level", -1)


def input_projection(x: torch.Tensor, w_ih: torch.Tensor | None, bias: torch.Tensor | None) -> torch.Tensor:
    """``x @ w_ih.T + bias`` for all timesteps at once: (T, B, I) -> (T, B, G), a fresh tensor. Without
    ``w_ih``, x holds the projections (T, B, G) already (the fused kernels' layer norm): x + bias."""
    if w_ih is None:
        return x.clone() if bias is None else x + bias
    T, B, I = x.shape
    return linear(x.reshape(T * B, I), w_ih, bias).view(T, B, w_ih.shape[0])  # B may be 0


def linear_grads(
    d_out: torch.Tensor, inputs: torch.Tensor, weight: torch.Tensor, need_input: bool, need_weight: bool
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Gradients of ``out = inputs @ weight.T`` summed over all timesteps.

    d_out: (T, B, G); inputs: (T, B, K); weight: (G, K). Returns (d_inputs (T, B, K), d_weight (G, K)).
    """
    G, K = weight.shape
    d2 = d_out.reshape(-1, G)  # (T * B, G)
    d_inputs = linear(d2, weight.t()).view(inputs.shape) if need_input else None
    # (K, T * B) @ (T * B, G), transposed: the layout oneDNN multiplies fastest
    d_weight = linear(inputs.reshape(-1, K).t(), d2.t()).t() if need_weight else None
    return d_inputs, d_weight


def input_grads(d_gates: torch.Tensor, x: torch.Tensor, w_ih: torch.Tensor | None, need_x: bool, need_w_ih: bool,
                grads=linear_grads) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The gradients of input_projection's ``x`` and ``w_ih`` from the gate gradients ``d_gates`` (T, B, G), by
    ``grads`` (linear_grads, or the kernels' split_linear_grads for half-precision operands); without
    ``w_ih`` x held the projections themselves, so dx is d_gates."""
    if w_ih is None:
        return d_gates if need_x else None, None
    return grads(d_gates, x, w_ih, need_x, need_w_ih)


def bias_grad(d_out: torch.Tensor, need: bool) -> torch.Tensor | None:
    """Gradient of a bias added at every timestep: d_out (T, B, G) summed to (G,)."""
    return d_out.reshape(-1, d_out.shape[-1]).sum(0) if need else None


def recomputed_grads(mode: str, inputs: list[torch.Tensor | None], needs: list[bool], grads: list[torch.Tensor],
                     batch_sizes: list[int] | None, reverse: bool, masks: Masks, gain_sizes: list[int] | None = None,
                     dtype: torch.dtype | None = None) -> list[torch.Tensor | None]:
    """A recurrence's input gradients under ``create_graph=True`` (double backward: a gradient penalty, a
    Hessian-vector product, MAML), where a hand-written or fused backward's would carry no graph: the
    step-by-step recurrence through autograd (variants.variant_scan, the specification) runs again from the same
    inputs and draws and is differentiated with a graph, at the cost of a second forward.

    inputs: [x, h0, (c0 for LSTM), w_ih, w_hh, b_ih, b_hh, w_hr, then layer norm's gains in variant_scan's order,
    or with ``gain_sizes`` one tensor of them concatenated (the fused kernels')] (None where absent; with layer
    norm x holds the normalised input projections and w_ih is None); needs: which gradients are wanted; grads:
    the outputs' gradients, y's then the final states'; ``dtype``: the one the recurrence runs in, inputs and
    draws converted to it (None: the inputs'; the fused kernels pass fp32 for fp16/bf16, their state's dtype).
    Returns one gradient per input, None where not wanted."""
    states = 2 if mode == "LSTM" else 1
    if dtype is not None:
        masks = Masks(*(m if m is None else m.to(dtype) for m in (masks.dropout, masks.zoneout, masks.zoneout_cell)))
    with torch.enable_grad():
        cast = [t if t is None or dtype is None else t.to(dtype) for t in inputs]
        x, init, weights = cast[0], cast[1 : 1 + states], cast[1 + states : 6 + states]
        gains = [g for g in cast[6 + states :] if g is not None]
        if gain_sizes is not None and gains:
            gains = gains[0].split(gain_sizes)
        norms = dict(zip(("hh", "c", "c_bias"), gains, strict=False)) if gains else None
        y, finals = variant_scan(mode, x, init, weights, norms, None, batch_sizes, reverse, False, masks=masks)
    wanted = [t for t, need in zip(inputs, needs, strict=True) if need and t is not None]
    got = iter(torch.autograd.grad([y, *finals], wanted, [g.to(y.dtype) for g in grads], create_graph=True,
                                   allow_unused=True, materialize_grads=True))
    return [next(got) if need and t is not None else None for t, need in zip(inputs, needs, strict=True)]


def zoneout_grads(grad: torch.Tensor, weight: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Zoneout's backward (state = lerp(new, previous, weight), rnnlab.recurrence.variants.Masks): the parts of
    ``grad`` reaching the new state, (1 - weight) grad, and the previous one, weight grad (None without
    zoneout, when ``weight`` is None and the new state takes all of ``grad``)."""
    if weight is None:
        return grad, None
    return grad * (1 - weight), grad * weight


def set_rows(state: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """``state`` (B, F) with its first ``len(value)`` rows replaced by ``value``; no copy when all are."""
    if value.shape[0] == state.shape[0]:
        return value
    state[: value.shape[0]] = value
    return state


def sigmoid_grad(grad: torch.Tensor, y: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``grad * y * (1 - y)``: the gradient through ``y = sigmoid(a)``, one fused kernel."""
    if out is None:
        return torch.ops.aten.sigmoid_backward(grad, y)
    return torch.ops.aten.sigmoid_backward.grad_input(grad, y, grad_input=out)


def tanh_grad(grad: torch.Tensor, y: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``grad * (1 - y * y)``: the gradient through ``y = tanh(a)``, one fused kernel."""
    if out is None:
        return torch.ops.aten.tanh_backward(grad, y)
    return torch.ops.aten.tanh_backward.grad_input(grad, y, grad_input=out)


def normalised_inputs(x: torch.Tensor, w_ih: torch.Tensor, norms: dict[str, torch.Tensor] | None,
                      keys: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor | None, tuple[torch.Tensor, ...]]:
    """What a scan with layer norm takes (``norms``: variant_scan's gains and biases): the input projections
    x W_ih^T (T, B, G), normalised with the gain norms["ih"] through autograd, in place of x and no w_ih, and
    the parameters ``keys`` the recurrence applies itself; without layer norm x, w_ih and ()."""
    if norms is None:
        return x, w_ih, ()
    xs = F.layer_norm(x @ w_ih.T, (w_ih.shape[0],), norms["ih"], eps=EPS)
    return xs, None, tuple(norms[k] for k in keys)


def normalise_rows(x: torch.Tensor, gain: torch.Tensor | None = None, bias: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """Layer norm of each row of ``x`` (b, F) with ``gain`` and ``bias`` (F,) if given, torch's fused kernel: the
    result (a new tensor) and each row's mean and 1 / sqrt(var + eps), (b, 1) each, for normalise_grad."""
    out, mean, rstd = torch.native_layer_norm(x, x.shape[-1:], gain, bias, EPS)
    return out, (mean, rstd)


def norm_stats(count: int, T: int, B: int, like: torch.Tensor) -> torch.Tensor:
    """A (2 * count, T, B, 1) buffer for ``count`` layer norms' row statistics at every step, normalise_rows'
    mean then 1 / std for each, in the dtype torch's layer norm gives them for rows like ``like`` (like's on the
    CPU; its backward takes no other)."""
    dtype = torch.native_layer_norm(like.new_zeros(1, 1), (1,), None, None, EPS)[1].dtype
    return torch.zeros(2 * count, T, B, 1, dtype=dtype, device=like.device)


def normalise_grad(d_out: torch.Tensor, x: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor],
                   gain: torch.Tensor, bias: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """normalise_rows' backward, torch's fused kernel: from ``d_out`` (b, F), the gradient reaching its result
    for the rows ``x`` and their ``stats``, the gradients of x, of ``gain`` and (if given) of ``bias``, summed
    over the rows."""
    return torch.ops.aten.native_layer_norm_backward(d_out, x, x.shape[-1:], *stats, gain, bias,
                                                     [True, True, bias is not None])
