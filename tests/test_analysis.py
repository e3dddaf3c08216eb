"""rnnlab.analysis: the norms of dL/dh_t against a loop over torch.nn's cells with retained gradients."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_sequence

import rnnlab
from rnnlab.analysis import geometric_mean_norms, plot_gradient_norms, record_states


@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn_tanh"])
@pytest.mark.parametrize("backend", ["native", "torch"])
def test_norms_match_a_loop_over_torch_cells(mode, backend):
    torch.manual_seed(0)
    cell_cls, layer_cls = {"lstm": (nn.LSTMCell, rnnlab.LSTM), "gru": (nn.GRUCell, rnnlab.GRU),
                           "rnn_tanh": (nn.RNNCell, rnnlab.RNN)}[mode]
    layer = layer_cls(4, 6, backend=backend, dtype=torch.float64)
    cell = cell_cls(4, 6, dtype=torch.float64)
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        getattr(cell, name).data.copy_(getattr(layer, f"{name}_l0"))
    x = torch.randn(9, 3, 4, dtype=torch.float64)
    target = torch.randn(9, 3, 6, dtype=torch.float64)

    def loss_of(y):  # (T, B, H) -> a scalar that weighs late steps more
        return ((y - target).square() * torch.arange(1, 10).view(9, 1, 1)).sum()

    with record_states(layer) as states:
        y = layer(x)[0]
    got = states.gradient_norms(loss_of(y))["LSTM" if mode == "lstm" else layer._get_name()]

    hs, state = [], None
    for x_t in x:
        state = cell(x_t, state)
        h = state[0] if mode == "lstm" else state
        h.retain_grad()
        hs.append(h)
    loss_of(torch.stack(hs)).backward()
    want = torch.stack([h.grad.norm(dim=-1) for h in hs])  # (T, B)
    assert got.shape == (1, 9, 3)
    torch.testing.assert_close(got[0], want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend", ["native", "torch"])
def test_norms_of_a_bidirectional_stack_match_a_loop_over_torch_cells(backend):
    """Two layers, both directions: row layer * 2 + direction, each direction's h_t at the step of x_t, against
    torch.nn cells run by hand (the reverse direction over the reversed sequence), the upper layer reading both
    directions' states."""
    torch.manual_seed(1)
    layer = rnnlab.GRU(4, 5, num_layers=2, bidirectional=True, backend=backend, dtype=torch.float64)
    x = torch.randn(7, 3, 4, dtype=torch.float64)
    weights = torch.randn(7, 3, 10, dtype=torch.float64)
    with record_states(layer) as states:
        y = layer(x)[0]
    got = states.gradient_norms((y * weights).sum())["GRU"]

    inputs, hs = x, {}
    for index in range(2):
        outputs = []
        for direction, suffix in enumerate(("", "_reverse")):
            cell = nn.GRUCell(inputs.shape[-1], 5, dtype=torch.float64)
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(cell, name).data.copy_(getattr(layer, f"{name}_l{index}{suffix}"))
            steps = range(7) if direction == 0 else range(6, -1, -1)
            h, out = None, [None] * 7
            for t in steps:
                h = cell(inputs[t], h)
                h.retain_grad()
                hs[index * 2 + direction, t] = out[t] = h
            outputs.append(torch.stack(out))
        inputs = torch.cat(outputs, -1)  # (T, B, 2H)
    (inputs * weights).sum().backward()
    want = torch.stack([torch.stack([hs[row, t].grad.norm(dim=-1) for t in range(7)]) for row in range(4)])
    assert got.shape == (4, 7, 3)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_recording_changes_nothing_outside_the_block():
    layer = rnnlab.LSTM(3, 5, num_layers=2, backend="native")
    x = torch.randn(6, 2, 3)
    before = layer(x)[0]
    with record_states(layer):
        during = layer(x)[0]
    torch.testing.assert_close(during, before, rtol=1e-5, atol=1e-6)
    assert layer._observe is None and torch.equal(layer(x)[0], before)


def test_packed_input_bidirectional_stack():
    """Shape (L * D, T, B) in the caller's order, NaN where a sequence has no step; at a sequence's own
    last step the top forward direction's gradient is exactly the loss's (sum: norm sqrt(H))."""
    torch.manual_seed(0)
    layer = rnnlab.GRU(3, 5, num_layers=2, bidirectional=True)
    lengths = (2, 5, 3)
    with record_states(layer) as states:
        y = layer(pack_sequence([torch.randn(n, 3) for n in lengths], enforce_sorted=False))[0]
    norms = states.gradient_norms(y.data.sum())["GRU"]
    assert norms.shape == (4, 5, 3)
    for b, n in enumerate(lengths):
        assert norms[:, n:, b].isnan().all() and not norms[:, :n, b].isnan().any()
        assert norms[2, n - 1, b].item() == pytest.approx(math.sqrt(5))  # top layer, forward
        assert norms[3, 0, b].item() == pytest.approx(math.sqrt(5))  # top layer, reverse, ends at t = 0


class _EncoderDecoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = rnnlab.LSTM(3, 4)
        self.cell = rnnlab.GRUCell(4, 4)  # a cell is not recorded
        self.head = rnnlab.RNN(4, 4)

    def forward(self, x):
        y, _ = self.encoder(x)  # (T, B, 4)
        out, h = [], None
        for y_t in y:  # the head one step at a time, carrying its state
            o, h = self.head(self.cell(y_t).unsqueeze(0), h)
            out.append(o)
        return torch.cat(out).sum()


def test_a_layer_called_step_by_step_is_joined_along_time():
    model = _EncoderDecoder()
    with record_states(model) as states:
        loss = model(torch.randn(5, 2, 3))
    norms = states.gradient_norms(loss)
    assert {k: tuple(v.shape) for k, v in norms.items()} == {"encoder": (1, 5, 2), "head": (1, 5, 2)}
    assert norms["head"][0, -1].tolist() == pytest.approx([2.0, 2.0])  # the last step: d sum / d h = ones(4)


def test_calls_with_other_batches_are_kept_apart():
    layer = rnnlab.GRU(3, 4)
    with record_states(layer) as states:
        loss = layer(torch.randn(6, 2, 3))[0].sum() + layer(torch.randn(3, 1, 3))[0].sum()
    norms = states.gradient_norms(loss)
    assert {k: tuple(v.shape) for k, v in norms.items()} == {"GRU[0]": (1, 6, 2), "GRU[1]": (1, 3, 1)}


def test_errors():
    with pytest.raises(ValueError, match="contains no rnnlab RNN, LSTM or GRU layer"), record_states(nn.Linear(2, 2)):
        pass
    layer = rnnlab.RNN(2, 3)
    with record_states(layer) as states:
        pass
    with pytest.raises(ValueError, match="no rnnlab layer ran inside the record_states block"):
        states.gradient_norms(torch.zeros((), requires_grad=True))
    with record_states(layer) as states:
        y = layer(torch.randn(4, 1, 2))[0]
    with pytest.raises(ValueError, match=r"loss must be a scalar tensor; got shape \(4, 1, 3\)"):
        states.gradient_norms(y)
    with record_states(layer) as states:
        layer(torch.randn(4, 1, 2))
    with pytest.raises(ValueError, match="loss does not depend on any recorded state"):
        states.gradient_norms(layer(torch.randn(4, 1, 2))[0].sum())  # a call outside the block
    with pytest.raises(ValueError, match=r"an enclosing record_states block already records RNN"), \
            record_states(layer), record_states(layer):
        pass
    with torch.no_grad(), record_states(layer) as states:
        layer(torch.randn(4, 1, 2))
    with pytest.raises(ValueError, match=r"no rnnlab layer ran inside the record_states block with gradients "
                                         r"enabled \(1 call\(s\) ran with them disabled"):
        states.gradient_norms(torch.zeros((), requires_grad=True))
    layer.requires_grad_(False)
    with record_states(layer) as states:
        y = layer(torch.randn(4, 1, 2))[0]
    with pytest.raises(ValueError, match="the recorded states do not require grad"):
        states.gradient_norms(y.sum())


def test_a_call_without_gradients_is_not_recorded():
    """A warm-up call under torch.no_grad() inside the block leaves no states (it has no gradient to take): the
    graded call's norms come out as if it ran alone, under the layer's own name; a recorded call that the loss does
    not reach gets zero norms."""
    torch.manual_seed(0)
    layer, x = rnnlab.GRU(3, 4), torch.randn(5, 2, 3)
    with record_states(layer) as alone:
        loss = layer(x)[0][-1].sum()
    expected = alone.gradient_norms(loss)["GRU"]
    with record_states(layer) as states:
        with torch.no_grad():
            layer(x)
        loss = layer(x)[0][-1].sum()
        layer(torch.randn(2, 2, 3))  # recorded, not in the loss
    norms = states.gradient_norms(loss)
    torch.testing.assert_close(norms["GRU"][:, :5], expected)
    assert norms["GRU"].shape == (1, 7, 2) and not norms["GRU"][:, 5:].any()


def test_plot(tmp_path):
    layer = rnnlab.LSTM(2, 3, bidirectional=True)
    with record_states(layer) as states:
        y = layer(torch.randn(7, 2, 2))[0]
    path = plot_gradient_norms(states.gradient_norms(y[-1].sum()), tmp_path / "plots" / "grad.png")
    assert path.read_bytes().startswith(b"\x89PNG")


def test_the_batch_mean_skips_sequences_the_loss_does_not_use():
    """A loss on some sequences of the batch leaves the others' norms zero at every step; the geometric mean is over
    the sequences the loss uses (it was 0 at every t, an empty log plot), and a gradient that vanished at some
    steps only still counts."""
    layer = rnnlab.GRU(2, 3)
    with record_states(layer) as states:
        y = layer(torch.randn(6, 3, 2))[0]  # (T, B, H)
    norms = states.gradient_norms(y[-1, :2].sum())["GRU"]  # (1, 6, 3): the loss uses sequences 0 and 1
    assert not norms[..., 2].any() and norms[..., :2].all()
    expected = (norms[..., 0] * norms[..., 1]).sqrt()  # (1, 6)
    torch.testing.assert_close(geometric_mean_norms(norms), expected)
    norms[0, 0, 1] = 0.0  # vanished at t = 0 in sequence 1
    assert geometric_mean_norms(norms)[0, 0] == 0 and geometric_mean_norms(norms)[0, 1:].gt(0).all()


def test_plotting_nothing_is_an_error(tmp_path):
    with pytest.raises(ValueError, match=r"plot_gradient_norms: norms is empty; pass what "
                                         r"StateRecorder.gradient_norms\(loss\) returns"):
        plot_gradient_norms({}, tmp_path / "g.png")
    assert not (tmp_path / "g.png").exists()
