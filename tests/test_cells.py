"""rnnlab cells (backend="torch") against torch.nn cells, and gradcheck of every recurrence in float64."""

import pytest
import torch

import rnnlab
from parity import CELLS, make_pair

CELL_CLASSES = {
    "rnn_tanh": (rnnlab.RNNCell, torch.nn.RNNCell, {"nonlinearity": "tanh"}),
    "rnn_relu": (rnnlab.RNNCell, torch.nn.RNNCell, {"nonlinearity": "relu"}),
    "lstm": (rnnlab.LSTMCell, torch.nn.LSTMCell, {}),
    "gru": (rnnlab.GRUCell, torch.nn.GRUCell, {}),
}


def _cell_pair(name, bias, dtype):
    mine_cls, ref_cls, kw = CELL_CLASSES[name]
    ref = ref_cls(5, 6, bias=bias, dtype=dtype, **kw)
    mine = rnnlab.from_torch(ref, backend="torch")
    assert type(mine) is mine_cls
    return ref, mine


def _states(name, batch_shape, dtype):
    n = 2 if name == "lstm" else 1
    states = [torch.randn(*batch_shape, 6, dtype=dtype, requires_grad=True) for _ in range(n)]
    return states, (tuple(states) if n == 2 else states[0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("batch_shape", [(3,), (), (0,)], ids=["batched", "unbatched", "empty_batch"])
@pytest.mark.parametrize("with_state", [False, True], ids=["no_hx", "hx"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("name", list(CELL_CLASSES))
def test_cell_matches_torch_nn(name, bias, with_state, batch_shape, dtype):
    torch.manual_seed(0)
    ref, mine = _cell_pair(name, bias, dtype)
    x = torch.randn(*batch_shape, 5, dtype=dtype, requires_grad=True)
    leaves, hx = _states(name, batch_shape, dtype) if with_state else ([], None)
    results = []
    for module in (mine, ref):
        for t in [x, *leaves, *module.parameters()]:
            t.grad = None
        out = module(x, hx)
        outs = list(out) if isinstance(out, tuple) else [out]
        sum((o * (k + 1.5)).sum() for k, o in enumerate(outs)).backward()
        results.append([o.detach() for o in outs] + [t.grad for t in [x, *leaves, *module.parameters()]])
    tol = 1e-5 if dtype == torch.float32 else 1e-9
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, atol=tol, rtol=tol)


@pytest.mark.parametrize("name", list(CELL_CLASSES))
def test_cell_gradcheck(name):
    _, mine = _cell_pair(name, True, torch.float64)
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    leaves, _ = _states(name, (3,), torch.float64)
    params = list(mine.parameters())

    def f(x, *args):
        states, weights = args[: len(leaves)], args[len(leaves):]
        hx = tuple(states) if len(states) == 2 else states[0]
        out = torch.func.functional_call(mine, dict(zip([n for n, _ in mine.named_parameters()], weights,
                                                        strict=True)), (x, hx))
        return out

    assert torch.autograd.gradcheck(f, (x, *leaves, *params))


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
def test_layer_gradcheck(cell, packed):
    """gradcheck of a 2-layer bidirectional layer in float64, through input, initial state and weights."""
    _, mine = make_pair(cell, 3, 4, torch.float64, num_layers=2, bidirectional=True)
    names = [n for n, _ in mine.named_parameters()]
    lengths = [4, 2, 1]
    xs = [torch.randn(n, 3, dtype=torch.float64, requires_grad=True) for n in lengths]
    states = [torch.randn(4, 3, mine.proj_size or 4, dtype=torch.float64, requires_grad=True)]
    if mine.mode == "LSTM":  # c_0 too
        states.append(torch.randn(4, 3, 4, dtype=torch.float64, requires_grad=True))

    def f(*args):
        seqs, hx, weights = args[:3], args[3 : 3 + len(states)], args[3 + len(states) :]
        if packed:
            x = torch.nn.utils.rnn.pack_sequence(list(seqs), enforce_sorted=False)
        else:
            x = torch.nn.utils.rnn.pad_sequence(list(seqs))
        hx = tuple(hx) if mine.mode == "LSTM" else hx[0]
        y, hn = torch.func.functional_call(mine, dict(zip(names, weights, strict=True)), (x, hx))
        y = y.data if packed else y
        return (y, *hn) if isinstance(hn, tuple) else (y, hn)

    assert torch.autograd.gradcheck(f, (*xs, *states, *mine.parameters()))


@pytest.mark.parametrize("layer_norm", [False, True], ids=["plain", "layer_norm"])
def test_rnn_cell_nonlinearity_is_read_at_each_call(layer_norm):
    """torch.nn.RNNCell's forward reads ``nonlinearity`` at each call; so do both of rnnlab's paths (plain, and
    step by step with an option)."""
    torch.manual_seed(0)
    cell = rnnlab.RNNCell(5, 6, backend="torch", layer_norm=layer_norm, dtype=torch.float64)
    x = torch.randn(3, 5, dtype=torch.float64)
    cell.nonlinearity = "relu"
    relu = cell(x)
    cell.nonlinearity = "tanh"
    tanh = cell(x)
    assert (tanh < 0).any()  # the same pre-activation through each nonlinearity
    torch.testing.assert_close(relu, torch.atanh(tanh).clamp_min(0), rtol=1e-10, atol=1e-12)
