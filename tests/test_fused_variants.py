"""Zoneout and recurrent dropout on the fused Triton kernels (backend="triton") against the step-by-step
recurrence that specifies them (rnnlab.recurrence.variants, backend="torch"), with the same random draws:
outputs, final states and every gradient, in training (per-step zoneout masks, one dropout mask per
sequence) and evaluation (zoneout's expectation), in the persistent (H = 20) and tiled (H = 50: two column
tiles, the last partial) regimes, and the resident one (H = 48, its programs in threads), two bidirectional
layers on packed input with unequal lengths; gradcheck
in float64 through the kernels with fixed draws; fp16/bf16 against float64. Run by the Triton interpreter
on the CPU (TRITON_INTERPRET=1, set in conftest.py), compiled on a GPU.
"""

import pytest
import torch

import rnnlab
from parity import (
    FUSED_DEVICE,
    SINGLE_OPTIONS,
    assert_same,
    gradcheck_masked_scan,
    make_inputs,
    make_pair,
    needs_fused_device,
    relative_errors,
    run_seeded,
    variant_options,
)

triton = pytest.importorskip("triton")  # optional where it has no wheel; rnnlab.kernels needs it
from rnnlab import kernels  # noqa: E402
from rnnlab.kernels.dispatch import force_regime, plan  # noqa: E402

pytestmark = needs_fused_device
DEVICE = FUSED_DEVICE
CELLS = ["lstm", "gru", "rnn_tanh", "rnn_relu"]


def _layers(cell: str, H: int, dtype: torch.dtype, **kwargs):
    """(step-by-step layer, fused layer, torch.nn layer), the same weights and options."""
    ref, _ = make_pair(cell, 5, H, dtype, **kwargs)
    opts = variant_options(cell)
    return (rnnlab.from_torch(ref, backend="torch", **opts).to(DEVICE),
            rnnlab.from_torch(ref, backend="triton", **opts).to(DEVICE), ref)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("H", [20, 50], ids=["persistent", "tiled"])
@pytest.mark.parametrize("cell", CELLS)
def test_fused_variants_match_the_step_by_step_recurrence(cell, H, training):
    reference, fused, ref = _layers(cell, H, torch.float32, num_layers=2, bidirectional=True, dropout=0.2)
    reference.train(training)
    fused.train(training)
    x, hx, leaves = make_inputs(ref, "packed", T=7, B=5, dtype=torch.float32, with_state=True, seed=4, device=DEVICE)
    got, want = run_seeded(fused, x, hx, leaves), run_seeded(reference, x, hx, leaves)
    assert_same(got, want, 2e-5)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("cell", CELLS)
def test_resident_regime_with_the_masks_in_threads(cell, training, programs_in_threads):
    """The resident regime (H = 48: three programs of 16 units a batch tile that meet at the grid barrier every
    step, forward and backward), forced, each program in a thread of the interpreter (tests/threaded_interpreter.py,
    which lets programs wait on each other): the step-by-step recurrence's outputs and every gradient from the same
    draws, bidirectional and packed."""
    from rnnlab.kernels import dispatch

    reference, fused, ref = _layers(cell, 48, torch.float32, bidirectional=True)
    reference.train(training)
    fused.train(training)
    x, hx, leaves = make_inputs(ref, "packed", T=5, B=3, dtype=torch.float32, with_state=True, seed=4)
    with force_regime("resident"):
        assert dispatch.plan(cell.split("_")[0], torch.empty(0, 3, 1), 48, 3, backward=True).grid == (1, 3)
        got = run_seeded(fused, x, hx, leaves)
    assert_same(got, run_seeded(reference, x, hx, leaves), 2e-5)


@pytest.mark.parametrize("H", [20, 50], ids=["persistent", "tiled"])
@pytest.mark.parametrize(("cell", "option"), SINGLE_OPTIONS, ids=[f"{c}-{o}" for c, o in SINGLE_OPTIONS])
def test_each_option_alone(cell, option, H):
    """Each option by itself (the kernels take their own path for each): training, packed, reversed."""
    ref, _ = make_pair(cell, 5, H, torch.float32, bidirectional=True)
    alone = {option: variant_options(cell)[option]}
    reference = rnnlab.from_torch(ref, backend="torch", **alone).to(DEVICE)
    fused = rnnlab.from_torch(ref, backend="triton", **alone).to(DEVICE)
    x, hx, leaves = make_inputs(ref, "packed", T=7, B=5, dtype=torch.float32, with_state=True, seed=4, device=DEVICE)
    assert_same(run_seeded(fused, x, hx, leaves), run_seeded(reference, x, hx, leaves), 2e-5)


def test_training_draws_differ_between_calls_and_zone_out_units():
    """Each training call draws new masks (two calls differ), and zoneout with rate 1 keeps the initial
    state through the fused kernels as on the step-by-step path."""
    layer = rnnlab.GRU(5, 20, backend="triton", zoneout=0.5, recurrent_dropout=0.5).to(DEVICE)
    x = torch.randn(6, 3, 5, device=DEVICE)
    assert not torch.equal(layer(x)[0], layer(x)[0])
    frozen = rnnlab.LSTM(5, 20, backend="triton", zoneout=1.0, zoneout_cell=1.0).to(DEVICE)
    h0, c0 = torch.randn(1, 3, 20, device=DEVICE), torch.randn(1, 3, 20, device=DEVICE)
    y, (h, c) = frozen(x, (h0, c0))
    assert torch.equal(y, h0.expand(6, 3, 20)) and torch.equal(h, h0) and torch.equal(c, c0)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("regime", ["persistent", "tiled"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
def test_gradcheck_through_the_fused_variants(cell, regime, training):
    """torch.autograd.gradcheck in float64 through every input of one direction with fixed draws, packed
    and reversed; fast mode (random projections of the Jacobian: 0.3-2 s each under the interpreter, where
    every column took up to 30 s), which fails a 1% error planted in one term of the LSTM's backward."""
    with force_regime(regime):
        assert gradcheck_masked_scan(kernels, cell, training, variant_options(cell, 0.4, 0.3), [2, 2, 1], I=2, H=3,
                                     device=DEVICE, fast_mode=True)


@pytest.mark.parametrize(("dtype", "bound"), [(torch.float16, 2e-3), (torch.bfloat16, 1.6e-2)], ids=["fp16", "bf16"])
@pytest.mark.parametrize(("cell", "H"), [("lstm", 20), ("lstm", 70), ("gru", 20), ("gru", 70), ("rnn_tanh", 50),
                                         ("rnn_tanh", 100)])
def test_fused_variants_in_half_precision(cell, H, dtype, bound):
    """Errors relative to each item's largest value against the step-by-step path in float64 with the same
    draws (rates whose masks are exact in half precision; on the same device, whose generator draws them),
    within the plain kernels' bounds (test_triton_kernels.test_fused_half_precision). In half precision the
    persistent regime holds H up to 64 (the RNN's more): H = 70 and 100 are the tiled regime's (asserted)."""
    regime = plan(cell.split("_")[0], torch.empty(15, 5, H, dtype=dtype), H, 5).regime
    assert regime == ("tiled" if H > 64 else "persistent"), regime
    torch.manual_seed(5)  # the weights, whatever ran before
    ref, _ = make_pair(cell, 5, H, torch.float64)
    opts = variant_options(cell, 0.25, 0.5)
    want_layer = rnnlab.from_torch(ref, backend="torch", **opts).to(DEVICE)
    layer = rnnlab.from_torch(ref, backend="triton", **opts).to(DEVICE, dtype)
    shape = {"form": "packed", "T": 15, "B": 5, "with_state": True, "seed": 6, "device": DEVICE}
    want = run_seeded(want_layer, *make_inputs(ref, dtype=torch.float64, **shape))
    got = run_seeded(layer, *make_inputs(ref, dtype=dtype, **shape))
    errors = relative_errors(got, want)
    assert max(errors) < bound, errors


def test_what_the_kernels_do_not_take_is_refused():
    """A projection stays on the step-by-step path: backend="triton" with it names the way out; "auto" runs
    it there. torch.nn's kernel ("native") takes no option. (Layer norm: test_fused_layer_norm.py.)"""
    with pytest.raises(NotImplementedError, match=r"zoneout=0\.1 runs on rnnlab's pure-PyTorch path .*'auto'\);"):
        rnnlab.LSTM(3, 8, proj_size=4, backend="triton", zoneout=0.1)
    with pytest.raises(NotImplementedError, match=r"zoneout=0\.1 .* and the fused kernels \(backend='triton'\)"):
        rnnlab.GRU(3, 8, backend="native", zoneout=0.1)
    layer = rnnlab.LSTM(3, 8, proj_size=4, zoneout=0.1)
    assert layer(torch.randn(4, 2, 3))[0].shape == (4, 2, 4)
