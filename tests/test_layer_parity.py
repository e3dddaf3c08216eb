"""rnnlab layers (backend="torch") against torch.nn over the configuration grid of the core issue."""

import itertools

import pytest
import torch
from torch.nn.utils.rnn import PackedSequence

from parity import (
    CELLS,
    TOLERANCE,
    assert_same,
    make_inputs,
    make_pair,
    needs_triton,
    run,
    small_activation_errors,
    state_shapes,
)

GRID = list(itertools.product(CELLS, (1, 2, 3), (False, True), (False, True), (False, True)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("form", ["batched", "unbatched", "packed"])
@pytest.mark.parametrize("with_state", [False, True], ids=["no_hx", "hx"])
@pytest.mark.parametrize(("cell", "num_layers", "bidirectional", "batch_first", "bias"), GRID)
def test_matches_torch_nn(cell, num_layers, bidirectional, batch_first, bias, with_state, form, dtype):
    torch.manual_seed(0)
    # two-layer stacks run with dropout in eval mode: dropout must then be a no-op, as in torch.nn
    dropout = 0.25 if num_layers == 2 else 0.0
    ref, mine = make_pair(cell, 5, 7, dtype, num_layers=num_layers, bidirectional=bidirectional,
                          batch_first=batch_first, bias=bias, dropout=dropout)
    if dropout:
        ref.eval()
        mine.eval()
    x, hx, leaves = make_inputs(ref, form, T=6, B=4, dtype=dtype, with_state=with_state, seed=1)
    want = run(ref, x, hx, leaves)
    got = run(mine, x, hx, leaves)
    assert_same(got, want, TOLERANCE[dtype])


@pytest.mark.parametrize("cell", ["lstm", "lstm_proj", "gru", "rnn_tanh"])
def test_small_activations_keep_their_relative_accuracy(cell):
    """Activations near 0 (parity.small_activation_errors) match torch.nn in float64 as closely as at ordinary
    scales: the path's tanh is torch.tanh (it took 2 sigmoid(2x) - 1 on the CPU, for speed, and was 1e-2 off)."""
    torch.manual_seed(3)
    ref, mine = make_pair(cell, 5, 20, torch.float32, backend="torch")
    assert max(small_activation_errors(mine, ref)) < 3e-6


@pytest.mark.parametrize("backend", ["torch", "auto", pytest.param("triton", marks=needs_triton)])
@pytest.mark.parametrize("cell", CELLS)
def test_empty_batch_matches_torch_nn(cell, backend):
    """A batch of no sequences (B = 0): torch.nn's empty output and final states, and its zero gradients."""
    ref, mine = make_pair(cell, 3, 4, torch.float64, backend=backend, num_layers=2, bidirectional=True,
                          batch_first=True)
    x, hx, leaves = make_inputs(ref, "batched", T=5, B=0, dtype=torch.float64, with_state=True, seed=1)
    got, want = run(mine, x, hx, leaves), run(ref, x, hx, leaves)
    assert got[0].shape == (0, 5, 2 * (ref.proj_size or 4))
    assert_same(got, want, 0.0)


def test_rnn_nonlinearity_follows_mode_as_in_torch_nn():
    """torch.nn.RNN's forward picks tanh or relu from ``mode`` (set by the constructor), not from the
    ``nonlinearity`` attribute; so does every path of rnnlab's, with gradients and without."""
    ref, mine = make_pair("rnn_tanh", 3, 4, torch.float64)
    ref.nonlinearity = mine.nonlinearity = "relu"
    x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    assert_same(run(mine, lambda: x, None, [x]), run(ref, lambda: x, None, [x]), 1e-12)
    with torch.no_grad():
        assert_same(list(mine(x)), list(ref(x)), 1e-12)


@pytest.mark.parametrize("cell", CELLS)
def test_packed_equal_lengths_and_single_step(cell):
    """Packed input whose rows all have the same length, and sequences of length one."""
    ref, mine = make_pair(cell, 3, 4, torch.float64, bidirectional=True)
    for T in (1, 5):
        seqs = [torch.randn(T, 3, dtype=torch.float64, requires_grad=True) for _ in range(3)]
        def x(seqs=seqs):
            return torch.nn.utils.rnn.pack_sequence(seqs)

        assert_same(run(mine, x, None, seqs), run(ref, x, None, seqs), 1e-9)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("indices", ["unsorted_only", "sorted_only", "both"])
def test_packed_sequence_built_by_hand(cell, indices):
    """A PackedSequence built directly, with only some of its index permutations: torch.nn reads input.data
    in packed order and uses the indices only for the states, and so must rnnlab."""
    ref, mine = make_pair(cell, 3, 4, torch.float64)
    data = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    sorted_indices, unsorted_indices = torch.tensor([1, 2, 0]), torch.tensor([2, 0, 1])
    kept = {"unsorted_only": (None, unsorted_indices), "sorted_only": (sorted_indices, None),
            "both": (sorted_indices, unsorted_indices)}[indices]
    states = [torch.randn(shape, dtype=torch.float64, requires_grad=True) for shape in state_shapes(ref, 3)]
    hx = tuple(states) if ref.mode == "LSTM" else states[0]
    def x():
        return PackedSequence(data, torch.tensor([3, 2]), *kept)

    assert_same(run(mine, x, hx, [data, *states]), run(ref, x, hx, [data, *states]), 1e-9)


@pytest.mark.parametrize("cell", CELLS)
def test_native_backend_is_torch_nn(cell):
    ref, mine = make_pair(cell, 3, 4, torch.float32, backend="native", num_layers=2)
    x = torch.randn(5, 2, 3, requires_grad=True)
    assert_same(run(mine, lambda: x, None, [x]), run(ref, lambda: x, None, [x]), 0.0)


def test_dropout_in_training_changes_outputs_and_is_reproducible():
    _, mine = make_pair("lstm", 3, 8, torch.float32, num_layers=2, dropout=0.5)
    x = torch.randn(5, 4, 3)
    torch.manual_seed(3)
    a = mine(x)[0]
    torch.manual_seed(3)
    b = mine(x)[0]
    torch.testing.assert_close(a, b)
    mine.eval()
    c = mine(x)[0]
    assert not torch.allclose(a, c)
