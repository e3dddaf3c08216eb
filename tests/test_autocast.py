"""Layers and cells inside torch.autocast: "auto" behaves exactly as torch.nn (its kernel and dtypes);
"torch" and "triton" run in the autocast dtype, as the same module converted to that dtype would, with
the gradients reaching the fp32 parameters."""

import pytest
import torch

import rnnlab
from parity import CELLS, assert_same, make_pair, needs_triton, run, state_shapes

AMP = torch.bfloat16


def _states(module, batch, dtype):
    states = [torch.randn(shape, dtype=dtype) for shape in state_shapes(module, batch)]
    return tuple(states) if module.mode == "LSTM" else states[0]


@pytest.mark.parametrize("cell", CELLS)
def test_auto_under_autocast_is_torch_nn(cell):
    torch.manual_seed(0)
    ref, mine = make_pair(cell, 3, 8, torch.float32, backend="auto")
    x = torch.randn(5, 2, 3, requires_grad=True)
    with torch.autocast("cpu", dtype=AMP):
        assert_same(run(mine, lambda: x, None, [x]), run(ref, lambda: x, None, [x]), 0.0)


@pytest.mark.parametrize("backend", ["torch", pytest.param("triton", marks=needs_triton)])
@pytest.mark.parametrize("cell", CELLS)
def test_explicit_backends_run_in_the_autocast_dtype(cell, backend):
    torch.manual_seed(0)
    ref, mixed = make_pair(cell, 3, 20, torch.float32, backend=backend, bidirectional=True)
    converted = rnnlab.from_torch(ref, backend=backend).to(AMP)
    x = torch.randn(5, 2, 3, requires_grad=True)  # fp32 input and states: autocast takes any float dtype
    hx = _states(ref, 2, torch.float32)
    with torch.autocast("cpu", dtype=AMP):
        got = run(mixed, lambda: x, hx, [x])
    x_half = x.detach().to(AMP).requires_grad_()
    hx_half = tuple(h.to(AMP) for h in hx) if isinstance(hx, tuple) else hx.to(AMP)
    want = run(converted, lambda: x_half, hx_half, [x_half])
    assert got[0].dtype == AMP
    assert all(p.grad.dtype == torch.float32 for p in mixed.parameters())
    assert_same([t.float() for t in got], [t.float() for t in want], 0.0)


@pytest.mark.parametrize("cls", [rnnlab.RNNCell, rnnlab.LSTMCell, rnnlab.GRUCell])
def test_cells_under_autocast(cls):
    torch.manual_seed(0)
    mixed = cls(3, 8, backend="torch")
    converted = cls(3, 8, backend="torch")
    converted.load_state_dict(mixed.state_dict())
    converted.to(AMP)
    x = torch.randn(2, 3)
    with torch.autocast("cpu", dtype=AMP):
        got = mixed(x)
    want = converted(x.to(AMP))
    for a, b in zip(got if isinstance(got, tuple) else [got], want if isinstance(want, tuple) else [want],
                    strict=True):
        assert a.dtype == AMP
        torch.testing.assert_close(a, b, atol=0, rtol=0)


@pytest.mark.parametrize("backend", ["auto", "torch", pytest.param("triton", marks=needs_triton)])
def test_float64_under_autocast_as_torch_nn(backend):
    """Autocast leaves float64 tensors alone, as torch.nn's modules show: a float64 module runs in float64, and a
    float64 input or state of a float32 module is refused by name (torch.nn's kernels fail on mixed dtypes)."""
    torch.manual_seed(0)
    ref, mine = make_pair("gru", 3, 8, torch.float64, backend=backend)
    x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    with torch.autocast("cpu", dtype=AMP):
        assert_same(run(mine, lambda: x, None, [x]), run(ref, lambda: x, None, [x]), 1e-12)
        cell = rnnlab.GRUCell(3, 8, backend="torch" if backend == "triton" else backend).double()
        assert cell(x[0]).dtype == torch.float64
        mine.float()
        with pytest.raises(TypeError, match=r"GRU: hx is float64, which torch.autocast does not convert, and the "
                                            r"parameters are torch.float32; convert the tensor with .to\(torch.fl"):
            mine(x.float(), torch.zeros(1, 2, 8, dtype=torch.float64))
        with pytest.raises(TypeError, match=r"GRUCell: input is float64, which torch.autocast does not convert"):
            cell.float()(x[0])
