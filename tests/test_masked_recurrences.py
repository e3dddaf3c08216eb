"""Zoneout, recurrent dropout and layer norm on the hand-written recurrences (rnnlab.recurrence with ``masks``
and ``norms``, what backend="auto" runs on the CPU) against the step-by-step recurrence that specifies them
(backend="torch"), with the same random draws and layer-norm parameters: outputs, final states and every
gradient in float64, packed, two bidirectional layers, LSTM with proj_size; gradcheck; what runs under
torch.func transforms. Double backward: tests/test_double_backward.py.
"""

import pytest
import torch

import rnnlab
from parity import (
    SINGLE_OPTIONS,
    assert_same,
    gradcheck_masked_scan,
    make_inputs,
    make_pair,
    randomise_norms,
    run_seeded,
    variant_options,
)
from rnnlab import recurrence

CELLS = ["lstm", "lstm_proj", "gru", "rnn_tanh", "rnn_relu"]


def _options(cell: str, masks: bool, norm: bool) -> dict:
    """The options a test turns on: zoneout and recurrent dropout (``masks``), layer norm (``norm``)."""
    return (variant_options(cell) if masks else {}) | ({"layer_norm": True} if norm else {})


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize(("masks", "norm"), [(True, False), (False, True), (True, True)],
                         ids=["masks", "layer-norm", "both"])
@pytest.mark.parametrize("cell", CELLS)
def test_auto_matches_the_step_by_step_recurrence(cell, masks, norm, training):
    ref, _ = make_pair(cell, 5, 6, torch.float64, num_layers=2, bidirectional=True, dropout=0.2)
    step = rnnlab.from_torch(ref, backend="torch", **_options(cell, masks, norm)).train(training)
    randomise_norms(step)
    fast = rnnlab.from_torch(ref, **_options(cell, masks, norm)).train(training)
    fast.load_state_dict(step.state_dict())
    x, hx, leaves = make_inputs(ref, "packed", T=7, B=5, dtype=torch.float64, with_state=True, seed=4)
    assert not fast._stepwise() and step._stepwise()
    # layer norm's 1 / std scales the two paths' rounding (they sum in other orders): 4e-12 seen at H = 6
    tol = {"scaled": True, "tol": 1e-11} if norm else {"tol": 1e-12}
    assert_same(run_seeded(fast, x, hx, leaves), run_seeded(step, x, hx, leaves), **tol)


@pytest.mark.parametrize(("cell", "option"), SINGLE_OPTIONS, ids=[f"{c}-{o}" for c, o in SINGLE_OPTIONS])
def test_each_option_alone(cell, option):
    ref, _ = make_pair(cell, 5, 6, torch.float64)
    alone = {option: variant_options(cell)[option]}
    step = rnnlab.from_torch(ref, backend="torch", **alone)
    fast = rnnlab.from_torch(ref, **alone)
    x, hx, leaves = make_inputs(ref, "packed", T=7, B=5, dtype=torch.float64, with_state=True, seed=4)
    assert_same(run_seeded(fast, x, hx, leaves), run_seeded(step, x, hx, leaves), 1e-12)


@pytest.mark.parametrize("norm", [False, True], ids=["masks", "masks-layer-norm"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("cell", ["lstm", "lstm_proj", "gru", "rnn_tanh"])
def test_gradcheck(cell, training, norm):
    """torch.autograd.gradcheck through every input of one direction (with layer norm its gains and biases
    too) with fixed draws, packed and reversed."""
    proj = 3 if cell == "lstm_proj" else 0
    assert gradcheck_masked_scan(recurrence, cell.removesuffix("_proj"), training, variant_options(cell),
                                 [3, 3, 2, 1], I=3, H=4, proj=proj, norm=norm)


def test_torch_func_transforms_run_the_step_by_step_path():
    layer = rnnlab.LSTM(3, 4, zoneout=0.2, recurrent_dropout=0.3, dtype=torch.float64).eval()
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    params = dict(layer.named_parameters())
    grads = torch.func.grad(lambda p: torch.func.functional_call(layer, p, (x,))[0].sum())(params)
    expected = torch.autograd.grad(layer(x)[0].sum(), list(params.values()))
    for got, want in zip(grads.values(), expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
