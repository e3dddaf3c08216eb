"""Helpers that run an rnnlab module and its torch.nn twin on the same leaf tensors and compare
outputs, final states and every gradient."""

from __future__ import annotations

import importlib.util
import math
import os

import pytest
import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pack_sequence

import rnnlab
from rnnlab.recurrence.variants import Variant, draw_masks

TORCH_CLASSES = {"rnn_tanh": torch.nn.RNN, "rnn_relu": torch.nn.RNN, "lstm": torch.nn.LSTM,
                 "lstm_proj": torch.nn.LSTM, "gru": torch.nn.GRU}
CELLS = tuple(TORCH_CLASSES)
# triton is optional where it has no wheel; tests of the fused kernels skip there
needs_triton = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
# the fused kernels run on a GPU, or on the CPU under the Triton interpreter (set in conftest.py)
needs_fused_device = pytest.mark.skipif(
    not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1",
    reason="needs a GPU or TRITON_INTERPRET=1",
)
FUSED_DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-9}


def make_pair(cell: str, input_size: int, hidden_size: int, dtype: torch.dtype, backend: str = "torch",
              **kwargs) -> tuple[torch.nn.Module, torch.nn.Module]:
    """A torch.nn layer and the rnnlab layer built from it (same weights)."""
    if cell.startswith("rnn"):
        kwargs["nonlinearity"] = cell.split("_")[1]
    if cell == "lstm_proj":
        kwargs["proj_size"] = max(1, hidden_size // 2)
    ref = TORCH_CLASSES[cell](input_size, hidden_size, dtype=dtype, **kwargs)
    return ref, rnnlab.from_torch(ref, backend=backend)


def state_shapes(module: torch.nn.Module, batch: int | None) -> list[tuple[int, ...]]:
    layers = module.num_layers * (2 if module.bidirectional else 1)
    out = module.proj_size or module.hidden_size
    shapes = [(layers, out)] + ([(layers, module.hidden_size)] if module.mode == "LSTM" else [])
    return [(s[0], batch, s[1]) if batch is not None else s for s in shapes]


def make_inputs(module, form: str, T: int, B: int, dtype, with_state: bool, seed: int, device="cpu",
                rounded_to: torch.dtype | None = None):
    """Leaf tensors for a call: (make_input, hx, leaves). ``form``: "batched", "unbatched" or "packed".

    Values are drawn in float64 from ``seed`` and then cast, so every dtype and device gets the same
    numbers (``rounded_to``: first rounded to that dtype, for a float64 reference of a half-precision run).
    ``make_input()`` builds the input from the leaves (packing records a graph, so once per call).
    """
    gen = torch.Generator().manual_seed(seed)

    def leaf(*shape):
        values = torch.randn(*shape, dtype=torch.float64, generator=gen)
        return (values if rounded_to is None else values.to(rounded_to)).to(device, dtype).requires_grad_()

    I = module.input_size
    if form == "packed":
        lengths = [max(1, T - 2), T, 1, T - 1][:B] + [T] * max(0, B - 4)  # unsorted, with a length-1 row
        seqs = [leaf(n, I) for n in lengths]
        leaves = list(seqs)

        def x():
            return pack_sequence(seqs, enforce_sorted=False)
    elif form == "unbatched":
        leaves = [leaf(T, I)]
    else:
        leaves = [leaf(B, T, I) if module.batch_first else leaf(T, B, I)]
    if form != "packed":
        def x():
            return leaves[0]
    hx = None
    if with_state:
        states = [leaf(*shape) for shape in state_shapes(module, None if form == "unbatched" else B)]
        leaves += states
        hx = tuple(states) if module.mode == "LSTM" else states[0]
    return x, hx, leaves


def run(module, make_input, hx, leaves, generator_seed: int = 1):
    """Forward on ``make_input()``, a scalar loss touching the output and every final state, backward.

    Returns [output, *final states, *grads of leaves, *grads of parameters].
    """
    for t in leaves:
        t.grad = None
    module.zero_grad(set_to_none=True)
    outputs = _outputs(*module(make_input(), hx))
    g = torch.Generator().manual_seed(generator_seed)
    # loss weights drawn in float64 so every dtype gets the same ones
    loss = sum((t * torch.randn(t.shape, dtype=torch.float64, generator=g).to(t.device, t.dtype)).sum()
               for t in outputs)
    loss.backward()
    grads = [t.grad for t in leaves] + [p.grad for _, p in sorted(module.named_parameters())]
    return [t.detach() for t in outputs] + grads


def infer(module, make_input, hx) -> list[torch.Tensor]:
    """Forward on ``make_input()`` without gradients (inference): [output, *final states]."""
    with torch.no_grad():
        return _outputs(*module(make_input(), hx))


def _outputs(y, h) -> list[torch.Tensor]:
    """A layer's output ``y`` (a packed one's data) and final states ``h`` (a tuple for the LSTM) as one list."""
    data = y.data if isinstance(y, PackedSequence) else y
    return [data, *(h if isinstance(h, tuple) else (h,))]


def relative_errors(got: list[torch.Tensor], want: list[torch.Tensor]) -> list[float]:
    """Each item's largest error relative to that item's largest value in ``want`` (``got`` is compared
    in ``want``'s dtype and device); a NaN anywhere in an item is an infinite error, which ``max(errors)`` cannot
    skip as it skips a NaN after the first item."""
    errors = [((a.to(b.device, b.dtype) - b).abs().max() / b.abs().max()).item()
              for a, b in zip(got, want, strict=True)]
    return [math.inf if math.isnan(e) else e for e in errors]


def small_activation_errors(module, twin, device="cpu") -> list[float]:
    """relative_errors of fp32 ``module`` against its torch.nn ``twin`` in float64, both without biases, on inputs
    and initial states of about 1e-5 (the same fp32 numbers): every pre-activation near 0, where a tanh computed
    as 2 sigmoid(2x) - 1 (or 1 - e^-2|x|) keeps an absolute error of about 1e-7 only, 1e-2 of tanh(x) there.
    Zeroes both modules' biases and turns ``twin`` to float64 on ``device``."""
    with torch.no_grad():
        for m in (module, twin):
            for name, p in m.named_parameters():
                if name.startswith("bias"):
                    p.zero_()
    single, double = (make_inputs(twin, "packed", T=7, B=5, dtype=dtype, with_state=True, seed=8, device=device)
                      for dtype in (torch.float32, torch.float64))
    with torch.no_grad():
        for a, b in zip(single[2], double[2], strict=True):  # the leaves
            b.copy_(a.mul_(1e-5))
    want = run(twin.to(device, torch.float64), *double)
    assert want[0].abs().max() < 1e-4
    return relative_errors(run(module, *single), want)


def assert_same(got: list[torch.Tensor], want: list[torch.Tensor], tol: float, scaled: bool = False) -> None:
    """Each item of ``got`` within ``tol`` of ``want``, elementwise (absolute and relative). ``scaled``: the
    absolute tolerance is ``tol`` times the item's largest value in ``want``, for comparisons whose sums
    run in another order (cuDNN and cuBLAS on a GPU), where a gradient element that cancels to near zero
    keeps the rounding of its large terms: on an H200, 1e-4 off at a weight gradient of 8e-4 whose
    tensor reaches 26."""
    assert len(got) == len(want)
    for k, (a, b) in enumerate(zip(got, want, strict=True)):
        assert a is not None and b is not None, f"item {k}: missing gradient"
        atol = tol * b.abs().max().item() if scaled else tol
        torch.testing.assert_close(a, b, atol=atol, rtol=tol, msg=lambda m, k=k: f"item {k}: {m}")


def variant_options(cell: str, zoneout: float = 0.3, dropout: float = 0.25) -> dict[str, float]:
    """Every option the hand-written recurrences and the fused kernels take for ``cell`` (the LSTM's
    cell-state zoneout at another rate)."""
    cell_state = {"zoneout_cell": zoneout + 0.1} if cell.startswith("lstm") else {}
    return {"zoneout": zoneout, "recurrent_dropout": dropout, **cell_state}


# (cell, option): each of variant_options' options by itself, for each code path it takes
SINGLE_OPTIONS = [("lstm", "zoneout"), ("lstm", "zoneout_cell"), ("lstm", "recurrent_dropout"), ("gru", "zoneout"),
                  ("gru", "recurrent_dropout"), ("rnn_tanh", "zoneout"), ("rnn_tanh", "recurrent_dropout")]


def randomise_norms(module: torch.nn.Module, seed: int = 11) -> None:
    """Draw ``module``'s layer-norm gains around one and biases around zero (a test at their initial ones and
    zeros would miss a gain applied twice or not at all)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.startswith("ln_"):
                noise = 0.3 * torch.randn(p.shape, generator=generator, dtype=torch.float64).to(p.dtype)
                p.copy_(noise if name.startswith("ln_bias") else 1 + noise)


def run_seeded(module, make_input, hx, leaves, seed: int = 3):
    """:func:`run` after seeding the random generators: two modules with the same options draw the same
    zoneout and dropout masks (they draw in the same order)."""
    torch.manual_seed(seed)
    return run(module, make_input, hx, leaves)


def gradcheck_masked_scan(impl, cell: str, training: bool, options: dict[str, float], sizes: list[int], I: int,
                          H: int, proj: int = 0, device="cpu", norm: bool = False, fast_mode: bool = False) -> bool:
    """torch.autograd.gradcheck in float64 through every input of one reversed direction of ``impl``'s scan
    (rnnlab.recurrence or rnnlab.kernels) of ``cell`` ("lstm", "gru", "rnn_tanh"; the LSTM with a projection
    of ``proj`` units if given) over packed input of ``sizes``, with the cell ``options``' draws fixed; with
    ``norm``, layer norm and its gains and biases among the inputs; ``fast_mode`` as gradcheck's (one random
    projection of the Jacobian instead of every column)."""
    T, B = len(sizes), sizes[0]
    P = proj or H
    G = {"lstm": 4, "gru": 3}.get(cell, 1) * H
    gen = torch.Generator().manual_seed(7)

    def leaf(*shape, mean=0.0):
        return (mean + 0.5 * torch.randn(*shape, dtype=torch.float64, generator=gen)).to(device).requires_grad_()

    x, h0 = leaf(T, B, I), leaf(B, P)
    states = (h0, leaf(B, H)) if cell == "lstm" else (h0,)
    weights = (leaf(G, I), leaf(G, P), leaf(G), leaf(G))
    sizes_of = {"ih": G, "hh": G, "c": H, "c_bias": H}
    keys = [k for k in sizes_of if norm and (cell == "lstm" or not k.startswith("c"))]
    norms = tuple(leaf(sizes_of[k], mean=0.0 if k == "c_bias" else 1.0) for k in keys)
    torch.manual_seed(8)
    masks = draw_masks(Variant(**options), x, states, training)

    def scan(*a):
        split = len(a) - len(keys)
        args, extra = a[:split], {"norms": dict(zip(keys, a[split:], strict=True))} if keys else {}
        if cell == "lstm":
            return impl.lstm_scan(*args, sizes, True, masks=masks, **extra)
        if cell == "gru":
            return impl.gru_scan(*args, sizes, True, masks=masks, **extra)
        return impl.rnn_scan(*args, sizes, True, "tanh", masks=masks, **extra)

    proj_weight = (leaf(P, H) if proj else None,) if cell == "lstm" else ()
    return torch.autograd.gradcheck(scan, (x, *states, *weights, *proj_weight, *norms), fast_mode=fast_mode)


def second_order_grads(layer: torch.nn.Module, x: torch.Tensor, lengths: list[int]
                       ) -> tuple[list[torch.Tensor], tuple[torch.Tensor, ...]]:
    """Double backward through ``layer`` on ``x`` (T, B, I) packed to ``lengths``: the first-order gradients of
    L = sum(y^2) with respect to x and every parameter, taken with create_graph=True, and the gradients of their
    product with a fixed random v (a Hessian-vector product), with the masks' draws from one seed."""
    inputs = [x, *layer.parameters()]
    torch.manual_seed(1)
    y = layer(pack_padded_sequence(x, lengths))[0].data
    first = torch.autograd.grad(y.pow(2).sum(), inputs, create_graph=True)
    torch.manual_seed(2)
    product = sum((g * torch.randn(g.shape, dtype=torch.float64).to(g.device, g.dtype)).sum() for g in first)
    return [g.detach() for g in first], torch.autograd.grad(product, inputs)
