"""The cell variants torch.nn lacks (layer norm, zoneout, recurrent dropout) on the layers.

Each is checked against an independent statement of its math: a loop over torch.nn's own cells (or, for
layer norm, over F.layer_norm) with the variant applied by hand, the same random draws included.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_sequence, pad_packed_sequence

import rnnlab
from rnnlab.recurrence.variants import EPS

MODES = ("lstm", "gru", "rnn_tanh", "rnn_relu")
LAYERS = {"lstm": rnnlab.LSTM, "gru": rnnlab.GRU, "rnn_tanh": rnnlab.RNN, "rnn_relu": rnnlab.RNN}


def make_layer(mode: str, input_size: int = 5, hidden_size: int = 6, dtype=torch.float64, **kwargs):
    if mode.startswith("rnn"):
        kwargs["nonlinearity"] = mode.split("_")[1]
    torch.manual_seed(0)
    return LAYERS[mode](input_size, hidden_size, dtype=dtype, **kwargs)


def hand_step(mode: str, layer, x_t, h, c, h_in, layer_norm: bool):
    """One step written out from the papers' equations with torch.nn's weights: (h', c')."""
    w_ih, w_hh, b_ih, b_hh = layer.weight_ih_l0, layer.weight_hh_l0, layer.bias_ih_l0, layer.bias_hh_l0
    xs, hs = x_t @ w_ih.T, h_in @ w_hh.T
    if layer_norm:
        xs = F.layer_norm(xs, xs.shape[-1:], layer.ln_weight_ih_l0, eps=EPS)
        hs = F.layer_norm(hs, hs.shape[-1:], layer.ln_weight_hh_l0, eps=EPS)
    xs, hs = xs + b_ih, hs + b_hh
    if mode == "lstm":
        i, f, g, o = (xs + hs).chunk(4, 1)
        c = f.sigmoid() * c + i.sigmoid() * g.tanh()
        shown = F.layer_norm(c, c.shape[-1:], layer.ln_weight_c_l0, layer.ln_bias_c_l0, eps=EPS) if layer_norm else c
        return o.sigmoid() * shown.tanh(), c
    if mode == "gru":
        (x_r, x_z, x_n), (h_r, h_z, h_n) = xs.chunk(3, 1), hs.chunk(3, 1)
        r, z = (x_r + h_r).sigmoid(), (x_z + h_z).sigmoid()
        n = (x_n + r * h_n).tanh()
        return (1 - z) * n + z * h, None
    a = xs + hs
    return (a.tanh() if mode == "rnn_tanh" else a.relu()), None


def hand_layer(mode: str, layer, x, h0, c0, *, training: bool, seed: int = 0):
    """The whole sequence (T, B, I) by hand, drawing the random masks in the order the layer does:
    the recurrent dropout mask once, then zoneout's uniforms, at each step h's draw and c's draw."""
    v = layer.variant
    torch.manual_seed(seed)
    mask = None
    if training and v.recurrent_dropout:
        keep = 1 - v.recurrent_dropout
        mask = torch.empty(h0.shape, dtype=torch.float32).bernoulli_(keep).to(h0.dtype) / keep
    rates = {"h": v.zoneout, "c": v.zoneout_cell if c0 is not None else 0.0}
    uniform = {}
    if training:
        for _ in range(len(x)):
            for name in ("h", "c"):
                if rates[name]:
                    uniform.setdefault(name, []).append(torch.rand(h0.shape))  # in fp32, as the layers draw
    h, c, ys = h0, c0, []
    for t, x_t in enumerate(x):
        h_new, c_new = hand_step(mode, layer, x_t, h, c, h if mask is None else h * mask, v.layer_norm)
        for name, p in rates.items():
            prev, new = (h, h_new) if name == "h" else (c, c_new)
            if p:
                d = (uniform[name][t] < p).to(new.dtype) if training else torch.full_like(new, p)
                new = d * prev + (1 - d) * new
            h_new, c_new = (new, c_new) if name == "h" else (h_new, new)
        h, c = h_new, c_new
        ys.append(h)
    return torch.stack(ys), h, c


def run_layer(layer, x, h0, c0, seed: int = 0):
    torch.manual_seed(seed)
    hx = (h0.unsqueeze(0), c0.unsqueeze(0)) if layer.mode == "LSTM" else h0.unsqueeze(0)
    y, state = layer(x, hx)
    h, c = (state[0][0], state[1][0]) if layer.mode == "LSTM" else (state[0], None)
    return y, h, c


OPTIONS = [
    {"layer_norm": True},
    {"zoneout": 0.3},
    {"recurrent_dropout": 0.4},
    {"layer_norm": True, "zoneout": 0.2, "recurrent_dropout": 0.25},
]


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "+".join(o))
@pytest.mark.parametrize("mode", MODES)
def test_matches_the_equations(mode, options, training):
    """Outputs, final states and the input gradient equal a hand-written loop over the equations."""
    layer = make_layer(mode, backend="torch", **options, **({"zoneout_cell": 0.4} if mode == "lstm" else {}))
    if options.get("layer_norm"):  # gains and biases off their initial values, so a wrong one shows
        with torch.no_grad():
            for name, p in layer.named_parameters():
                if name.startswith("ln_"):
                    p.uniform_(0.5, 1.5)
    layer.train(training)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(7, 3, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    h0, c0 = torch.randn(2, 3, 6, dtype=torch.float64, generator=gen)
    got, want = run_layer(layer, x, h0, c0), hand_layer(mode, layer, x, h0, c0, training=training)
    for g, w in zip(got, want, strict=True):
        if w is not None:
            torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)
    dx_got, = torch.autograd.grad(got[0].square().sum(), x)
    dx_want, = torch.autograd.grad(want[0].square().sum(), x)
    torch.testing.assert_close(dx_got, dx_want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", MODES)
def test_layer_norm_is_invariant_to_weight_scale(mode):
    """Layer norm makes a layer's output independent of the scale of W_ih and W_hh (up to its epsilon, so
    scaled up)."""
    layer = make_layer(mode, layer_norm=True, bias=False)
    x = torch.randn(6, 2, 5, dtype=torch.float64)
    y = layer(x)[0]
    with torch.no_grad():
        layer.weight_ih_l0.mul_(7.0)
        layer.weight_hh_l0.mul_(3.0)
    torch.testing.assert_close(layer(x)[0], y, rtol=1e-3, atol=1e-3)


def test_zoneout_of_one_keeps_the_initial_state():
    layer = make_layer("lstm", zoneout=1.0, zoneout_cell=1.0).train()
    x, h0, c0 = torch.randn(5, 2, 5, dtype=torch.float64), torch.randn(1, 2, 6, dtype=torch.float64), \
        torch.randn(1, 2, 6, dtype=torch.float64)
    y, (h, c) = layer(x, (h0, c0))
    torch.testing.assert_close(y, h0.expand(5, 2, 6))
    torch.testing.assert_close((h, c), (h0, c0))


def test_zoneout_keeps_the_fraction_asked_for():
    """In training, about p of the units keep their previous value at each step."""
    layer = make_layer("gru", input_size=8, hidden_size=64, dtype=torch.float32, zoneout=0.3).train()
    y = layer(torch.randn(50, 40, 8))[0]  # (T, B, H)
    kept = (y[1:] == y[:-1]).double().mean().item()
    assert abs(kept - 0.3) < 0.02, kept


def test_recurrent_dropout_drops_the_fraction_asked_for():
    """With zero input weights and no biases, the units of h0 that the mask drops never reach the output."""
    layer = make_layer("rnn_relu", hidden_size=256, recurrent_dropout=0.4, bias=False).train()
    with torch.no_grad():
        layer.weight_ih_l0.zero_()
    h0 = torch.rand(1, 8, 256, dtype=torch.float64, requires_grad=True)
    y = layer(torch.zeros(6, 8, 5, dtype=torch.float64), h0)[0]
    dh0, = torch.autograd.grad(y.sum(), h0)
    assert abs((dh0 == 0).double().mean().item() - 0.4) < 0.03


def test_evaluation_is_deterministic_and_dropout_free():
    layer = make_layer("lstm", layer_norm=True, zoneout=0.2, recurrent_dropout=0.5).eval()
    x = torch.randn(6, 3, 5, dtype=torch.float64)
    torch.testing.assert_close(layer(x)[0], layer(x)[0], rtol=0, atol=0)


@pytest.mark.parametrize("mode", [*MODES, "lstm_proj"])
def test_packed_sequences_run_each_sequence_alone(mode):
    """Packed (unsorted, unequal lengths), bidirectional, two layers: each sequence's outputs and final
    states are what the layer gives it alone."""
    kwargs = {"proj_size": 3} if mode == "lstm_proj" else {}
    layer = make_layer(mode.removesuffix("_proj"), num_layers=2, bidirectional=True, layer_norm=True,
                       zoneout=0.2, **kwargs).eval()
    seqs = [torch.randn(n, 5, dtype=torch.float64) for n in (4, 7, 1, 5)]
    y, state = layer(pack_sequence(seqs, enforce_sorted=False))
    padded, _ = pad_packed_sequence(y)
    for k, s in enumerate(seqs):
        y_k, state_k = layer(s.unsqueeze(1))
        torch.testing.assert_close(padded[: len(s), k], y_k[:, 0], rtol=1e-12, atol=1e-12)
        for a, b in zip(state if isinstance(state, tuple) else [state],
                        state_k if isinstance(state_k, tuple) else [state_k], strict=True):
            torch.testing.assert_close(a[:, k], b[:, 0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("mode", MODES)
def test_gradcheck(mode, training):
    """gradcheck in float64 through the input, the initial state and every parameter (layer-norm gains
    included); in training each call redraws the same masks."""
    layer = make_layer(mode, input_size=3, hidden_size=4, layer_norm=True, zoneout=0.3,
                       recurrent_dropout=0.2, bidirectional=True).train(training)
    names = [n for n, _ in layer.named_parameters()]
    x = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(2, 2, 4, dtype=torch.float64, requires_grad=True)

    def f(x, h0, *params):
        torch.manual_seed(0)
        hx = (h0, h0.flip(0)) if mode == "lstm" else h0
        y, _ = torch.func.functional_call(layer, dict(zip(names, params, strict=True)), (x, hx))
        return y

    params = [p.detach().requires_grad_() for p in layer.parameters()]
    assert torch.autograd.gradcheck(f, (x, h0, *params))


def test_double_backward():
    """The step-by-step path (backend="torch") takes double backward, and "auto" (the hand-written recurrences,
    which recompute it under create_graph: tests/test_double_backward.py) gives the same second-order terms."""
    x = torch.randn(5, 2, 5, dtype=torch.float64, requires_grad=True)

    def second_order(backend):
        layer = make_layer("gru", layer_norm=True, zoneout=0.1, backend=backend)
        torch.manual_seed(3)
        dx, = torch.autograd.grad(layer(x)[0].sum(), x, create_graph=True)
        return torch.autograd.grad(dx.square().sum(), layer.weight_hh_l0)[0]

    dw = second_order("torch")
    assert dw.abs().sum() > 0
    torch.testing.assert_close(second_order("auto"), dw, rtol=1e-10, atol=1e-12)


def test_autocast_runs_in_the_autocast_dtype():
    layer = make_layer("lstm", dtype=torch.float32, layer_norm=True, zoneout=0.1).eval()
    x = torch.randn(6, 3, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, (h, c) = layer(x)
    assert y.dtype == h.dtype == c.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), layer(x)[0], rtol=0, atol=0.05)


def test_state_dict_has_the_layer_norm_parameters():
    layer = make_layer("lstm", num_layers=2, bidirectional=True, layer_norm=True)
    ln = sorted(k for k in layer.state_dict() if k.startswith("ln_"))
    assert len(ln) == 16 and "ln_bias_c_l1_reverse" in ln and "ln_weight_hh_l0" in ln
    assert layer.ln_weight_ih_l0.shape == (24,) and layer.ln_weight_c_l0.shape == (6,)
    with torch.no_grad():
        layer.ln_weight_ih_l0.fill_(3.0)
        layer.ln_bias_c_l0.fill_(2.0)
    layer.reset_parameters()
    assert layer.ln_weight_ih_l0.eq(1).all() and layer.ln_bias_c_l0.eq(0).all()
    plain = torch.nn.LSTM(5, 6, num_layers=2, bidirectional=True, dtype=torch.float64)
    with pytest.raises(RuntimeError, match=r"Missing key.*ln_weight_ih_l0"):
        layer.load_state_dict(plain.state_dict())
    layer.load_state_dict(plain.state_dict(), strict=False)  # the plain weights, gains kept
    torch.testing.assert_close(layer.weight_hh_l1, plain.weight_hh_l1)


def test_off_is_the_plain_layer():
    """With every option off a layer is exactly torch.nn's (no extra parameters, plain backends)."""
    layer = make_layer("gru", layer_norm=False, zoneout=0.0, recurrent_dropout=0.0, backend="native")
    assert not layer.variant.describe() and not any(k.startswith("ln_") for k in layer.state_dict())
    assert "zoneout" not in repr(layer)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"layer_norm": "yes"}, TypeError, "layer_norm must be True or False; got str 'yes'"),
    ({"zoneout": 1.5}, ValueError, r"zoneout must be a number in \[0, 1\]; got 1.5"),
    ({"zoneout": -0.1}, ValueError, r"zoneout must be a number in \[0, 1\]; got -0.1"),
    ({"recurrent_dropout": 1.0}, ValueError, r"recurrent_dropout must be a number in \[0, 1\); got 1.0"),
    ({"zoneout": 0.1, "backend": "native"}, NotImplementedError, "zoneout=0.1 runs on rnnlab's pure-PyTorch path"),
])
def test_bad_options(kwargs, error, match):
    with pytest.raises(error, match=match):
        rnnlab.GRU(3, 4, **kwargs)


def test_backend_changed_later_is_refused_at_forward():
    layer = rnnlab.LSTM(3, 4, layer_norm=True)
    layer.backend = "native"
    with pytest.raises(NotImplementedError, match="layer_norm=True runs on rnnlab's pure-PyTorch path"):
        layer(torch.randn(2, 1, 3))


def test_to_torch_refuses_a_variant():
    with pytest.raises(ValueError, match=r"LSTM with zoneout_cell=0\.5 has no torch\.nn equivalent"):
        rnnlab.to_torch(rnnlab.LSTM(3, 4, zoneout_cell=0.5))


CELLS = {"lstm": rnnlab.LSTMCell, "gru": rnnlab.GRUCell, "rnn_tanh": rnnlab.RNNCell, "rnn_relu": rnnlab.RNNCell}


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("mode", MODES)
def test_a_cell_stepped_in_a_loop_is_the_layer(mode, training):
    """A cell with layer norm and zoneout, called step by step on the layer's weights, gives the layer's
    outputs and gradients (in training with the same zoneout draws: the cell draws h's, then c's)."""
    zoneouts = {"zoneout": 0.3} | ({"zoneout_cell": 0.4} if mode == "lstm" else {})
    layer = make_layer(mode, layer_norm=True, **zoneouts).train(training)
    kwargs = {"nonlinearity": mode.split("_")[1]} if mode.startswith("rnn") else {}
    cell = CELLS[mode](5, 6, dtype=torch.float64, layer_norm=True, **zoneouts, **kwargs).train(training)
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if name.startswith("ln_"):
                p.uniform_(0.5, 1.5)
            cell.get_parameter(name.removesuffix("_l0")).copy_(p)  # weight_ih_l0 -> weight_ih, ...
    x = torch.randn(6, 3, 5, dtype=torch.float64, requires_grad=True)
    torch.manual_seed(2)
    y_layer = layer(x)[0]
    torch.manual_seed(2)
    state, ys = None, []
    for x_t in x:
        state = cell(x_t, state)
        ys.append(state[0] if mode == "lstm" else state)
    y_cell = torch.stack(ys)
    torch.testing.assert_close(y_cell, y_layer, rtol=1e-12, atol=1e-12)
    grads = [torch.autograd.grad(y.square().sum(), [x, *m.parameters()]) for y, m in ((y_cell, cell), (y_layer, layer))]
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_cell_options_errors():
    with pytest.raises(NotImplementedError, match="layer_norm=True runs on rnnlab's pure-PyTorch path"):
        rnnlab.LSTMCell(3, 4, layer_norm=True, backend="native")
    with pytest.raises(ValueError, match=r"GRUCell: zoneout must be a number in \[0, 1\]; got 2"):
        rnnlab.GRUCell(3, 4, zoneout=2)
    with pytest.raises(ValueError, match=r"RNNCell with zoneout=0\.5 has no torch\.nn equivalent"):
        rnnlab.to_torch(rnnlab.RNNCell(3, 4, zoneout=0.5))
    cell = rnnlab.GRUCell(3, 4, layer_norm=True)
    assert sorted(k for k in cell.state_dict() if k.startswith("ln_")) == ["ln_weight_hh", "ln_weight_ih"]
    assert "layer_norm=True" in repr(cell)


def test_from_torch_adds_options():
    """from_torch(module, **options): torch.nn's weights, the options on, new gains at one; an rnnlab
    module keeps its options and gains."""
    model = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.LSTM(5, 6), torch.nn.GRUCell(6, 6))
    rnnlab.from_torch(model, layer_norm=True, zoneout=0.1)
    lstm, cell = model[1], model[2]
    assert lstm.variant.describe() == cell.variant.describe() == "layer_norm=True, zoneout=0.1"
    assert lstm.ln_weight_hh_l0.eq(1).all() and cell.ln_weight_ih.eq(1).all()
    with torch.no_grad():
        lstm.ln_weight_c_l0.fill_(2.0)
    again = rnnlab.from_torch(lstm, backend="torch", zoneout_cell=0.3)
    assert again.variant.describe() == "layer_norm=True, zoneout=0.1, zoneout_cell=0.3"
    assert again.ln_weight_c_l0.eq(2).all() and torch.equal(again.weight_hh_l0, lstm.weight_hh_l0)
    with pytest.raises(ValueError, match=r"layer_norm=False would drop LSTM's trained layer-norm parameters"):
        rnnlab.from_torch(lstm, layer_norm=False)
    with pytest.raises(ValueError, match=r"GRU takes no zoneout_cell \(its options: "):
        rnnlab.from_torch(torch.nn.GRU(3, 4), zoneout_cell=0.1)


def _with_dropped_weight(layer, p: float, seed: int):
    """torch.nn's layer of the same weights with W_hh replaced by the DropConnect draw the layer makes
    first in its forward after ``torch.manual_seed(seed)``."""
    torch.manual_seed(seed)
    dropped = F.dropout(layer.weight_hh_l0, p, training=True)
    ref = {"LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU}[layer.mode](layer.input_size, layer.hidden_size,
                                                                   dtype=layer.weight_hh_l0.dtype)
    ref.load_state_dict(layer.state_dict())
    with torch.no_grad():
        ref.weight_hh_l0.copy_(dropped)
    return ref


@pytest.mark.parametrize("backend", ["auto", "torch", "triton"])
@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_weight_dropout_is_one_dropconnect_mask_per_call(mode, backend):
    """In training the layer computes torch.nn's cell with one dropped W_hh for the whole sequence, on
    the hand-written path and the fused kernels alike ("auto" leaves torch.nn's kernel for them); the
    gradient of a dropped entry is zero. In evaluation it is torch.nn's layer."""
    if backend == "triton":
        pytest.importorskip("triton")
        if not torch.cuda.is_available() and __import__("os").environ.get("TRITON_INTERPRET") != "1":
            pytest.skip("the fused kernels need CUDA or TRITON_INTERPRET=1")
    dtype = torch.float32 if backend == "triton" else torch.float64
    layer = make_layer(mode, dtype=dtype, backend=backend, weight_dropout=0.5).train()
    ref = _with_dropped_weight(layer, 0.5, seed=4)
    x = torch.randn(5, 3, 5, dtype=dtype)
    torch.manual_seed(4)
    y = layer(x)[0]
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(y, ref(x)[0], rtol=tol, atol=tol)
    dw, = torch.autograd.grad(y.square().sum(), layer.weight_hh_l0)
    assert torch.equal(dw == 0, ref.weight_hh_l0 == 0)
    layer.eval()
    torch.testing.assert_close(layer(x)[0], rnnlab.to_torch(make_layer(mode, dtype=dtype))(x)[0], rtol=tol, atol=tol)


def test_weight_dropout_errors():
    with pytest.raises(NotImplementedError, match=r"weight_dropout=0\.2 needs backend 'torch', 'triton' or 'auto'"):
        rnnlab.LSTM(3, 4, weight_dropout=0.2, backend="native")
    with pytest.raises(ValueError, match=r"weight_dropout must be a number in \[0, 1\); got 1"):
        rnnlab.GRU(3, 4, weight_dropout=1)
    with pytest.raises(TypeError, match="weight_dropout"):
        rnnlab.GRUCell(3, 4, weight_dropout=0.2)  # one mask per sequence: a layer option
    with pytest.raises(ValueError, match=r"RNN with weight_dropout=0\.3 has no torch\.nn equivalent"):
        rnnlab.to_torch(rnnlab.RNN(3, 4, weight_dropout=0.3))


@pytest.mark.parametrize("cls", [rnnlab.LSTM, rnnlab.LSTMCell])
def test_forget_bias(cls):
    """forget_bias=v: b_ih's forget slice v and b_hh's zero, everything else torch.nn's draw (the same
    random numbers: forget_bias=0 is torch.nn's initialisation exactly); reset_parameters keeps it."""
    torch.manual_seed(5)
    plain = cls(3, 4)
    torch.manual_seed(5)
    biased = cls(3, 4, forget_bias=1.5)
    suffix = "_l0" if cls is rnnlab.LSTM else ""
    torch.manual_seed(5)
    ref = (torch.nn.LSTM if cls is rnnlab.LSTM else torch.nn.LSTMCell)(3, 4)
    for (name, p), q, r in zip(plain.named_parameters(), biased.parameters(), ref.parameters(), strict=True):
        assert torch.equal(p, r)
        if name.startswith("bias_"):
            assert q[4:8].eq(1.5 if name.startswith("bias_ih") else 0.0).all()
            assert torch.equal(torch.cat((q[:4], q[8:])), torch.cat((p[:4], p[8:])))
        else:
            assert torch.equal(p, q)
    biased.reset_parameters()
    assert getattr(biased, f"bias_ih{suffix}")[4:8].eq(1.5).all() and "forget_bias=1.5" in repr(biased)
    with torch.no_grad():  # weights drawn another way, then the forget gates' biases set again
        for p in biased.parameters():
            p.uniform_(-0.1, 0.1)
    biased.apply_forget_bias()
    b_ih, b_hh = getattr(biased, f"bias_ih{suffix}"), getattr(biased, f"bias_hh{suffix}")
    assert b_ih[4:8].eq(1.5).all() and b_hh[4:8].eq(0).all() and b_ih[:4].abs().le(0.1).all()
    plain.apply_forget_bias()  # without forget_bias: nothing
    assert all(torch.equal(p, r) for p, r in zip(plain.parameters(), ref.parameters(), strict=True))
    with pytest.raises(ValueError, match=r"forget_bias=1\.0 needs bias=True; got bias=False"):
        cls(3, 4, bias=False, forget_bias=1.0)
    with pytest.raises(ValueError, match="forget_bias must be a finite number; got nan"):
        cls(3, 4, forget_bias=float("nan"))
    with pytest.raises(ValueError, match="forget_bias is an initialisation"):
        rnnlab.from_torch(ref, forget_bias=1.0)
