"""The hand-written recurrences (backend="torch", and "auto" where it picks them) under torch.compile: each
direction of a layer is one custom op forward and one backward (rnnlab::lstm_scan, gru_scan, rnn_scan and their
_backward), so Dynamo traces a layer whole (fullgraph=True) without unrolling its time loop, and the compiled
layer gives eager's numbers. The ops' schemas, fake implementations and autograd are checked by opcheck.
"""

import pytest
import torch

import rnnlab
from parity import assert_same, make_inputs, make_pair, run, run_seeded, variant_options

CELLS = ["lstm", "lstm_proj", "gru", "rnn_relu"]


def _scan_args(cell: str, packed: bool, options: bool, norm: bool) -> tuple:
    """Arguments of rnnlab::<cell>_scan on small float64 leaves (T = 5, B = 3, H = 4): packed with unequal
    lengths and reversed, or batched; with fixed zoneout and dropout draws (``options``) and layer norm's gains
    and biases (``norm``; x then holds the input projections and w_ih is None)."""
    torch.manual_seed(3)
    T, B, I, H = 5, 3, 2, 4
    gates = {"lstm": 4, "gru": 3, "rnn": 1}[cell]

    def leaf(*shape):
        return torch.randn(*shape, dtype=torch.float64, requires_grad=True)

    x = leaf(T, B, gates * H) if norm else leaf(T, B, I)
    states = [leaf(B, H), leaf(B, H)] if cell == "lstm" else [leaf(B, H)]
    w_ih = None if norm else leaf(gates * H, I)
    tensors = [x, *states, w_ih, leaf(gates * H, H), leaf(gates * H), leaf(gates * H)]
    if cell == "lstm":
        tensors.append(None)  # w_hr
    flags = ([3, 3, 2, 2, 1] if packed else None, packed)
    if cell == "rnn":
        flags = (*flags, "tanh")
    kept = (torch.rand(T, B, H) < 0.3).double()  # zoneout's draws: 1 where a unit keeps its previous value
    drawn = [torch.full((B, H), 1.25, dtype=torch.float64), kept, 1 - kept] if options else [None] * 3  # dropout, h, c
    norms = [leaf(gates * H), leaf(H), leaf(H)] if norm else [None] * 3  # ln_hh, ln_c, ln_c_bias
    if cell != "lstm":  # no cell state
        drawn, norms = drawn[:2], norms[:1]
    return (*tensors, *flags, *drawn, *norms)


@pytest.mark.parametrize("norm", [False, True], ids=["plain", "layer-norm"])
@pytest.mark.parametrize("options", [False, True], ids=["", "masks"])
@pytest.mark.parametrize("packed", [False, True], ids=["batched", "packed"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_custom_ops_pass_opcheck(cell, packed, options, norm):
    """Schema, fake implementation, autograd registration and AOT dispatch of the forward op (and, through its
    backward, of the backward op)."""
    op = getattr(torch.ops.rnnlab, f"{cell}_scan").default
    torch.library.opcheck(op, _scan_args(cell, packed, options, norm))


def _graph_nodes(module, x, hx) -> int:
    """How many nodes the Dynamo graph of a training call of ``module`` has (fullgraph: one graph, no breaks)."""
    graphs = []

    def count(gm, example_inputs):
        graphs.append(len(gm.graph.nodes))
        return gm

    torch._dynamo.reset()
    y = torch.compile(module, backend=count, fullgraph=True)(x, hx)[0]
    y.sum().backward()
    assert len(graphs) == 1
    return graphs[0]


@pytest.mark.usefixtures("fresh_dynamo")
@pytest.mark.parametrize("cell", CELLS)
def test_layers_compile_whole_and_give_eager_numbers(cell):
    """A 2-layer bidirectional "torch" layer under torch.compile(fullgraph=True) (Inductor) gives eager's
    outputs, final states and gradients, and its graph does not grow with the sequence: the time loop runs
    inside the ops (unrolled by Dynamo, 128 steps of an RNN took 107 s to compile). Packed input compiles with
    graph breaks (its batch sizes are read on the host, which fullgraph refuses) and gives eager's numbers too."""
    _, layer = make_pair(cell, 3, 6, torch.float32, num_layers=2, bidirectional=True)
    for form, fullgraph in (("batched", True), ("packed", False)):
        x, hx, leaves = make_inputs(layer, form, T=7, B=4, dtype=torch.float32, with_state=True, seed=5)
        want = run(layer, x, hx, leaves)
        torch._dynamo.reset()
        with torch._dynamo.config.patch(allow_rnn=True):
            got = run(torch.compile(layer, fullgraph=fullgraph), x, hx, leaves)
        assert_same(got, want, 0.0)
    with torch._dynamo.config.patch(allow_rnn=True):
        sizes = [_graph_nodes(layer, torch.randn(T, 2, 3), None) for T in (4, 32)]
    assert sizes[0] == sizes[1]


@pytest.mark.usefixtures("fresh_dynamo")
@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_auto_trains_under_compile_with_the_options(mode):
    """"auto" on the CPU under torch.compile: a plain LSTM in training takes rnnlab's path (Inductor fails on
    oneDNN's LSTM training op, as it does for torch.nn.LSTM), and the cell options (hand-written recurrences
    with their draws) compile whole; both give eager's numbers (Inductor's own random numbers set aside:
    fallback_random)."""
    torch.manual_seed(6)
    for options in ({}, variant_options(mode.lower(), 0.3, 0.25)):
        layer = getattr(rnnlab, mode)(3, 5, **options)
        x = torch.randn(6, 2, 3, requires_grad=True)
        want = run_seeded(layer, lambda x=x: x, None, [x])
        torch._dynamo.reset()
        with torch._dynamo.config.patch(allow_rnn=True), torch._inductor.config.patch(fallback_random=True):
            got = run_seeded(torch.compile(layer, fullgraph=True), lambda x=x: x, None, [x])
        assert_same(got, want, 1e-6)


def test_recording_paths_compiles_no_second_graph():
    """A compiled layer first called under rnnlab.layers.recorded_paths (as the benchmarks record what ran) is not
    compiled again once the recording stops: the record is skipped while Dynamo traces."""
    from torch._dynamo.utils import counters

    from rnnlab.layers import recorded_paths

    torch._dynamo.reset()
    counters.clear()
    layer = torch.compile(rnnlab.GRU(3, 4, backend="torch"), fullgraph=True)
    x = torch.randn(5, 2, 3, requires_grad=True)
    with torch._dynamo.config.patch(allow_rnn=True):
        with recorded_paths():
            layer(x)[0].sum().backward()
        for _ in range(2):
            layer(x)[0].sum().backward()
    assert counters["stats"]["unique_graphs"] == 1


@pytest.mark.usefixtures("fresh_dynamo")
@pytest.mark.parametrize("pooling", ["mean", "max"])
def test_classifier_pooling_over_packed_output_compiles(pooling):
    """The sentiment classifier pads its packed output to pool over the words: under torch.compile that padding
    runs eagerly (inputs.pad_packed; Dynamo traced into pad_packed_sequence's ATen op and failed before torch 2.13)
    and the logits are eager's."""
    from rnnlab.models.classifier import RNNClassifier

    torch.manual_seed(0)
    model = RNNClassifier(50, 3, 8, 8, pooling=pooling)
    tokens, lengths = torch.randint(1, 50, (4, 6)), torch.tensor([6, 3, 5, 2])
    want = model(tokens, lengths)
    with torch._dynamo.config.patch(allow_rnn=True):
        got = torch.compile(model)(tokens, lengths)
    assert_same(got, want, 1e-6)
