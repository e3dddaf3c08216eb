"""Double backward (create_graph=True: gradient penalties, Hessian-vector products, MAML) through rnnlab's
hand-written recurrences and the fused kernels, whose own backwards are not differentiable: under
create_graph they recompute the step-by-step recurrence through autograd (recurrence.common.recomputed_grads)."""

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import rnnlab
from parity import second_order_grads

LENGTHS = [4, 3, 1]  # packed, one sequence a single step
CELLS = [("LSTM", {}), ("LSTM", {"proj_size": 2}), ("GRU", {}), ("RNN", {"nonlinearity": "relu"})]
OPTIONS = {"layer_norm": True, "zoneout": 0.3, "recurrent_dropout": 0.2}


def _layer(name, backend, **options):
    torch.manual_seed(0)
    return getattr(rnnlab, name)(2, 3, backend=backend, bidirectional=True, **options).double()


def _close(got, want, tol=1e-10):
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=tol, atol=tol)


@pytest.mark.parametrize(("name", "options"), CELLS)
def test_hand_written_recurrences_match_torch_nn(name, options):
    """backend="torch" (what "auto" runs for CPU training of the GRU, RNN and packed LSTM) against torch.nn's
    own double backward, packed and bidirectional, in float64."""
    mine = _layer(name, "torch", **options)
    ref = getattr(torch.nn, name)(2, 3, bidirectional=True, **options).double()
    ref.load_state_dict(mine.state_dict())
    x = torch.randn(4, 3, 2, dtype=torch.float64, requires_grad=True)
    got, want = second_order_grads(mine, x, LENGTHS), second_order_grads(ref, x, LENGTHS)
    _close(got[0], want[0])
    _close(got[1], want[1])


@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN"])
def test_gradgradcheck_through_the_cell_options(name):
    """The hand-written recurrences with layer norm, zoneout and recurrent dropout (fixed draws), packed."""
    layer = _layer(name, "auto", **OPTIONS)
    names = [n for n, _ in layer.named_parameters()]

    def f(x, *params):
        torch.manual_seed(1)
        packed = pack_padded_sequence(x, LENGTHS)
        return torch.func.functional_call(layer, dict(zip(names, params, strict=True)), (packed,))[0].data

    x = torch.randn(4, 3, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(f, (x, *layer.parameters()), fast_mode=True)


@pytest.mark.parametrize(("name", "options"), [*CELLS, ("LSTM", OPTIONS), ("GRU", OPTIONS), ("RNN", OPTIONS)])
def test_fused_kernels_match_the_hand_written_recurrences(name, options):
    """backend="triton" (under the interpreter) gives the first-order gradients of its own backward and the
    second-order ones of the recurrences it is tested against, from the same draws."""
    fused = _layer(name, "triton", **options)
    hand_written = _layer(name, "auto" if "layer_norm" in options else "torch", **options)
    x = torch.randn(4, 3, 2, dtype=torch.float64, requires_grad=True)
    got, want = second_order_grads(fused, x, LENGTHS), second_order_grads(hand_written, x, LENGTHS)
    _close(got[0], want[0])
    _close(got[1], want[1])
    torch.manual_seed(1)
    plain_first = torch.autograd.grad(fused(pack_padded_sequence(x, LENGTHS))[0].data.pow(2).sum(),
                                      [x, *fused.parameters()])
    _close(got[0], plain_first)


@pytest.mark.parametrize(("name", "options"), [("GRU", {}), ("LSTM", {"zoneout": 0.3, "recurrent_dropout": 0.2})],
                         ids=["gru", "lstm-masks"])
def test_fused_half_precision_recomputes_in_fp32(name, options):
    """In bf16 the recomputation runs in fp32 (the kernels' state; the draws converted too) and the gradients come
    back in the inputs' dtypes, within about twice the largest error measured (1.0e-2 of each tensor's largest
    value, 3 seeds), against float64 from the same draws."""
    fused = _layer(name, "triton", **options).to(torch.bfloat16)
    ref = _layer(name, "auto" if options else "torch", **options)
    ref.load_state_dict({k: v.double() for k, v in fused.state_dict().items()})  # the same rounded weights
    x = torch.randn(4, 3, 2, dtype=torch.bfloat16, requires_grad=True)
    first, second = second_order_grads(fused, x, LENGTHS)
    want_first, want_second = second_order_grads(ref, x.detach().double().requires_grad_(), LENGTHS)
    for got, want in zip([*first, *second], [*want_first, *want_second], strict=True):
        assert got.dtype == torch.bfloat16
        assert (got.double() - want).abs().max() <= 2e-2 * want.abs().max()
