"""Zoneout and recurrent dropout on the hand-written recurrences (rnnlab.recurrence with ``masks``, what
backend="auto" runs on the CPU) against the step-by-step recurrence that specifies them (backend="torch"),
with the same random draws: outputs, final states and every gradient in float64, packed, two bidirectional
layers, LSTM with proj_size; gradcheck; what they refuse (double backward) and what then runs (torch.func).
"""

import pytest
import torch

import rnnlab
from parity import assert_same, make_inputs, make_pair, run
from rnnlab import recurrence
from rnnlab.recurrence.variants import Variant, draw_masks

CELLS = ["lstm", "lstm_proj", "gru", "rnn_tanh", "rnn_relu"]


def options(cell: str) -> dict[str, float]:
    cell_state = {"zoneout_cell": 0.4} if cell.startswith("lstm") else {}
    return {"zoneout": 0.3, "recurrent_dropout": 0.25, **cell_state}


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("cell", CELLS)
def test_auto_matches_the_step_by_step_recurrence(cell, training):
    ref, _ = make_pair(cell, 5, 6, torch.float64, num_layers=2, bidirectional=True, dropout=0.2)
    step = rnnlab.from_torch(ref, backend="torch", **options(cell)).train(training)
    fast = rnnlab.from_torch(ref, **options(cell)).train(training)
    assert not fast._stepwise() and step._stepwise()
    x, hx, leaves = make_inputs(ref, "packed", T=7, B=5, dtype=torch.float64, with_state=True, seed=4)
    results = []
    for layer in (fast, step):
        torch.manual_seed(3)  # the same draws: both draw in the same order
        results.append(run(layer, x, hx, leaves))
    assert_same(*results, 1e-12)


ALONE = [("lstm", "zoneout"), ("lstm", "zoneout_cell"), ("lstm", "recurrent_dropout"), ("gru", "zoneout"),
         ("gru", "recurrent_dropout"), ("rnn_tanh", "zoneout"), ("rnn_tanh", "recurrent_dropout")]


@pytest.mark.parametrize(("cell", "option"), ALONE, ids=[f"{c}-{o}" for c, o in ALONE])
def test_each_option_alone(cell, option):
    ref, _ = make_pair(cell, 5, 6, torch.float64)
    step = rnnlab.from_torch(ref, backend="torch", **{option: 0.3})
    fast = rnnlab.from_torch(ref, **{option: 0.3})
    x, hx, leaves = make_inputs(ref, "packed", T=7, B=5, dtype=torch.float64, with_state=True, seed=4)
    results = []
    for layer in (fast, step):
        torch.manual_seed(3)
        results.append(run(layer, x, hx, leaves))
    assert_same(*results, 1e-12)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("cell", ["lstm", "lstm_proj", "gru", "rnn_tanh"])
def test_gradcheck(cell, training):
    """torch.autograd.gradcheck through every input of one direction with fixed draws, packed and reversed."""
    T, B, I, H = 4, 3, 3, 4
    P = 3 if cell == "lstm_proj" else H
    G = {"gru": 3, "rnn_tanh": 1}.get(cell, 4) * H
    gen = torch.Generator().manual_seed(7)

    def leaf(*shape):
        return (0.5 * torch.randn(*shape, dtype=torch.float64, generator=gen)).requires_grad_()

    x, h0 = leaf(T, B, I), leaf(B, P)
    weights = (leaf(G, I), leaf(G, P), leaf(G), leaf(G))
    lstm = cell.startswith("lstm")
    states = (h0, leaf(B, H)) if lstm else (h0,)
    torch.manual_seed(8)
    masks = draw_masks(Variant(**options(cell)), x, states, training)
    sizes = [3, 3, 2, 1]
    if lstm:
        inputs = (x, *states, *weights, leaf(P, H) if cell == "lstm_proj" else None)
        scan = lambda *a: recurrence.lstm_scan(*a, sizes, True, masks=masks)  # noqa: E731
    elif cell == "gru":
        inputs = (x, h0, *weights)
        scan = lambda *a: recurrence.gru_scan(*a, sizes, True, masks=masks)  # noqa: E731
    else:
        inputs = (x, h0, *weights)
        scan = lambda *a: recurrence.rnn_scan(*a, sizes, True, "tanh", masks=masks)  # noqa: E731
    assert torch.autograd.gradcheck(scan, inputs)


def test_double_backward_names_the_step_by_step_path():
    x = torch.randn(5, 2, 3, requires_grad=True)
    fast = rnnlab.GRU(3, 4, zoneout=0.1)
    with pytest.raises(RuntimeError, match=r"backend='auto' .* create_graph=True .* use backend='torch', which runs"):
        torch.autograd.grad(fast(x)[0].sum(), x, create_graph=True)
    step = rnnlab.GRU(3, 4, zoneout=0.1, backend="torch")
    step.load_state_dict(fast.state_dict())
    dx, = torch.autograd.grad(step(x)[0].sum(), x, create_graph=True)
    assert torch.autograd.grad(dx.square().sum(), step.weight_hh_l0)[0].abs().sum() > 0


def test_torch_func_transforms_run_the_step_by_step_path():
    layer = rnnlab.LSTM(3, 4, zoneout=0.2, recurrent_dropout=0.3, dtype=torch.float64).eval()
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    params = dict(layer.named_parameters())
    grads = torch.func.grad(lambda p: torch.func.functional_call(layer, p, (x,))[0].sum())(params)
    expected = torch.autograd.grad(layer(x)[0].sum(), list(params.values()))
    for got, want in zip(grads.values(), expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
