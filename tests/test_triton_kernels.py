"""The fused Triton LSTM, GRU and RNN (tanh, relu) against the pure-PyTorch reference, run on the CPU
by the Triton interpreter (TRITON_INTERPRET=1, set in conftest.py when no GPU is present): outputs,
final states and every gradient, sizes off the block grid (T = 7 and 63; H = 20 in the persistent
regime, 50 to 100 in the tiled one: two or more column tiles, the last one partial, and several
slices of the reduction), both directions, packed input with unequal lengths, more than one batch tile,
and fp16/bf16 with tolerances measured against float64. Under the interpreter the tiled regime runs
one program per batch tile (the grid barrier would deadlock there); the multi-program variant is for a
GPU, where it is the default (scripts/gpu_check.sh runs this file on one).

The kernels keep their state and accumulate in fp32, or in fp64 for fp64 input: that is how they pass
torch.autograd.gradcheck in float64 (both regimes, packed and reversed).

bf16 ``tl.dot`` is wrong under the interpreter, so interpreted kernels multiply in fp32 (DOT_F32); on a
GPU bf16/fp16 products run on tensor cores with fp32 accumulation.
"""

import itertools

import pytest
import torch

import rnnlab
from parity import (
    FUSED_DEVICE,
    assert_same,
    make_inputs,
    make_pair,
    needs_fused_device,
    relative_errors,
    run,
    small_activation_errors,
)

triton = pytest.importorskip("triton")  # optional where it has no wheel; rnnlab.kernels needs it
from rnnlab.kernels.dispatch import (  # noqa: E402
    batch_rows,
    force_batch_tile,
    force_regime,
    force_tiling,
    force_warps,
    grid_sync_enabled,
    max_resident_h,
    plan,
    resident_launch,
    resident_rows,
)

pytestmark = needs_fused_device
DEVICE = FUSED_DEVICE


CELLS = ["lstm", "gru", "rnn_tanh", "rnn_relu"]


def _pair(H, dtype=torch.float32, cell="lstm", **kwargs):
    """(reference rnnlab module, fused rnnlab module, torch.nn module), all with the same weights."""
    ref, fused = make_pair(cell, 5, H, dtype, backend="triton", **kwargs)
    reference = rnnlab.from_torch(ref, backend="torch")
    return reference.to(DEVICE), fused.to(DEVICE), ref


def _shapes():
    """(T, H, bidirectional, form) cases: H = 20 runs the persistent regime, 50 the tiled one. The tiled
    regime at T = 63 takes 10-30 s a case under the interpreter, so the default run keeps one of those
    (unidirectional, packed) per cell and marks the rest slow."""
    for T, H, bidirectional, form in itertools.product((7, 63), (20, 50), (False, True), ("batched", "packed")):
        slow = H == 50 and T == 63 and (bidirectional or form == "batched")
        yield pytest.param(T, H, bidirectional, form, marks=[pytest.mark.slow] if slow else [],
                           id=f"T{T}-H{H}-{'bi' if bidirectional else 'uni'}-{form}")


@pytest.mark.parametrize(("T", "H", "bidirectional", "form"), list(_shapes()))
@pytest.mark.parametrize("cell", CELLS)
def test_fused_matches_reference_fp32(cell, T, H, bidirectional, form):
    torch.manual_seed(0)
    reference, fused, ref = _pair(H, cell=cell, num_layers=2, bidirectional=bidirectional)
    x, hx, leaves = make_inputs(ref, form, T=T, B=5, dtype=torch.float32, with_state=True, seed=4, device=DEVICE)
    assert_same(run(fused, x, hx, leaves), run(reference, x, hx, leaves), 2e-5)


@pytest.mark.parametrize("cell", CELLS)
def test_fused_against_torch_nn_without_initial_state(cell):
    torch.manual_seed(1)
    _, fused, ref = _pair(20, cell=cell, batch_first=True)
    x, hx, leaves = make_inputs(ref, "batched", T=9, B=3, dtype=torch.float32, with_state=False, seed=5,
                                device=DEVICE)
    assert_same(run(fused, x, hx, leaves), run(ref.to(DEVICE), x, hx, leaves), 2e-5, scaled=DEVICE == "cuda")


@pytest.mark.filterwarnings("ignore:overflow encountered in exp:RuntimeWarning")  # the interpreter's numpy, on purpose
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_fused_with_saturated_gates(cell):
    """Weights 60 times their initial scale drive the gates' pre-activations past +-100, where e^-x
    overflows fp32 (sigmoid_tanh's and sigmoid's denominators become infinite): the gates saturate to 0 or
    1 without a NaN, as the reference's do. Outputs and final states to 2e-5 under the interpreter, 2e-4
    compiled on a GPU (3xTF32 products against cuBLAS's fp32 ones, each pre-activation a sum of terms up to
    +-100 in another order: an H200's LSTM output 1.1e-4 off); the gradients to 2e-4 of each one's largest
    value: with such weights their elements are sums of large terms that cancel, and the GRU's input gradient
    differs from the reference's by 8.5e-5 of its largest value (as much before the kernels took
    flush-to-zero math and sigmoid_tanh)."""
    torch.manual_seed(2)
    reference, fused, ref = _pair(20, cell=cell)
    with torch.no_grad():
        for module in (reference, fused, ref):
            for name, p in module.named_parameters():
                if name.startswith("weight"):
                    p.mul_(60.0)
    x, hx, leaves = make_inputs(ref, "packed", T=7, B=5, dtype=torch.float32, with_state=True, seed=6,
                                device=DEVICE)
    fused_out = run(fused, x, hx, leaves)
    assert all(torch.isfinite(t).all() for t in fused_out if t is not None)
    want = run(reference, x, hx, leaves)
    states = 1 + (cell == "lstm")  # the output and the final states come first
    assert_same(fused_out[:1 + states], want[:1 + states], 2e-5 if DEVICE == "cpu" else 2e-4)
    assert_same(fused_out[1 + states:], want[1 + states:], 2e-4, scaled=True)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_split_weight_gradients_match_fp32_gemms(dtype):
    """kernels.common.split_linear_grads: the fp32 gate gradients split into two half-precision parts, each
    multiplied with fp32 accumulation, give what fp32 GEMMs over the same half-precision operands give (to
    fp32 rounding), where rounding the gradients to the dtype once would not."""
    from rnnlab.kernels.common import split_half, split_linear_grads
    from rnnlab.recurrence.common import linear_grads

    gen = torch.Generator().manual_seed(0)
    d_out = torch.randn(7, 5, 12, generator=gen) * torch.logspace(-3, 1, 12)  # (T, B, G), spread magnitudes
    inputs = torch.randn(7, 5, 9, generator=gen).to(dtype)  # (T, B, K)
    weight = torch.randn(12, 9, generator=gen).to(dtype)  # (G, K)
    hi, lo = split_half(d_out, dtype)
    error = (hi.double() + lo.double() - d_out.double()).abs()
    assert hi.dtype == lo.dtype == dtype and (error <= 2**-15 * d_out.abs() + 2**-24).all()  # fp16 subnormals
    want = linear_grads(d_out.double(), inputs.double(), weight.double(), True, True)
    got = split_linear_grads(d_out, inputs, weight, True, True)
    once = linear_grads(d_out.to(dtype).double(), inputs.double(), weight.double(), True, True)
    for g, w, o in zip(got, want, once, strict=True):
        assert g.dtype == torch.float32 and g.shape == w.shape
        scale = w.abs().max()
        assert (g.double() - w).abs().max() < 1e-5 * scale  # measured 3e-6 (bf16), 8e-8 (fp16)
        assert (o - w).abs().max() > 1e-4 * scale  # the error the split avoids: 3e-3, 3e-4


@pytest.mark.parametrize("regime", ["persistent", "tiled", "resident"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
def test_final_state_gradients_in_any_layout(cell, regime):
    """A loss that reads h_n (and c_n) through a transpose hands the backward a (B, H) gradient with strides (1, B);
    the tiled and resident backwards copied it keeping those strides and then updated the copy as row-major (every
    gradient 0.5-2 off)."""
    reference, fused, ref = _pair(5, cell=cell)
    x, hx, leaves = make_inputs(ref, "batched", T=4, B=3, dtype=torch.float32, with_state=True, seed=9, device=DEVICE)
    weights = torch.randn(5, 3, generator=torch.Generator().manual_seed(0)).to(DEVICE)  # (H, B)

    def grads(module):
        for t in leaves:
            t.grad = None
        module.zero_grad(set_to_none=True)
        _, h = module(x(), hx)
        sum((s.transpose(1, 2) * weights).sum() for s in (h if isinstance(h, tuple) else (h,))).backward()
        return [t.grad for t in leaves] + [p.grad for _, p in sorted(module.named_parameters())]

    want = grads(reference)
    with force_regime(regime):
        got = grads(fused)
    assert_same(got, want, 2e-5)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_scans_take_masks_given_as_views(cell):
    """rnnlab.kernels' scan functions called directly with zoneout weights and a dropout mask that are transposed
    views match the reference scans: the kernels index masks as contiguous, so they get contiguous copies (a view's
    strides were ignored, 0.25-1.7 off; the layers draw contiguous masks)."""
    from rnnlab import kernels, recurrence
    from rnnlab.recurrence.variants import Masks

    T, B, I, H = 5, 3, 2, 4
    gen = torch.Generator().manual_seed(0)
    x, h0, c0 = (torch.randn(*shape, generator=gen).to(DEVICE).requires_grad_()
                 for shape in ((T, B, I), (B, H), (B, H)))
    G = {"lstm": 4, "gru": 3, "rnn": 1}[cell] * H
    w_ih, w_hh, b_ih, b_hh = (torch.randn(*shape, generator=gen).to(DEVICE) for shape in ((G, I), (G, H), (G,), (G,)))
    masks = Masks(dropout=((torch.rand(H, B, generator=gen) < 0.7).float() / 0.7).to(DEVICE).t(),  # (B, H) view
                  zoneout=(torch.rand(T, H, B, generator=gen) < 0.3).float().to(DEVICE).transpose(1, 2),
                  zoneout_cell=None)
    states = (x, h0, c0) if cell == "lstm" else (x, h0)

    def grads(scan):
        for t in states:
            t.grad = None
        y = scan(*states, w_ih, w_hh, b_ih, b_hh, masks=masks)[0]
        (y * torch.arange(y.numel(), device=DEVICE).reshape(y.shape).sin()).sum().backward()
        return [y.detach(), *(t.grad for t in states)]

    want = grads(getattr(recurrence, f"{cell}_scan"))
    assert_same(grads(getattr(kernels, f"{cell}_scan_triton")), want, 2e-5)


@pytest.mark.parametrize("cell", CELLS)
def test_a_nan_stays_in_its_sequence(cell):
    """A NaN in one sequence's input makes that sequence's later outputs, its final state and the weight gradients
    NaN, as the reference's (and torch.nn's) are, and leaves the other sequences' values as they were: the relu's
    max(NaN, 0) is NaN, as torch.relu's, and its backward passes the gradient on at a NaN (tl.maximum's default
    and a y > 0 test made both 0, and a corrupt batch then trained on)."""
    reference, fused, ref = _pair(20, cell=cell)
    x, hx, leaves = make_inputs(ref, "batched", T=7, B=3, dtype=torch.float32, with_state=True, seed=7,
                                device=DEVICE)
    with torch.no_grad():
        leaves[0][2, 1, 0] = float("nan")  # sequence 1 at t = 2
    got, want = run(fused, x, hx, leaves), run(reference, x, hx, leaves)
    assert want[0][2:, 1].isnan().all() and not want[0][:, ::2].isnan().any()
    for k, (a, b) in enumerate(zip(got, want, strict=True)):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=2e-5, equal_nan=True, msg=lambda m, k=k: f"item {k}: {m}")


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
def test_small_activations_keep_their_relative_accuracy(cell):
    """Activations near 0 (parity.small_activation_errors), where 2 sigmoid(2x) - 1 put outputs and gradients 1e-2
    off float64's: the kernels take tanh's series there and match torch.nn in float64 to 3e-6 of each tensor's
    largest value, as at ordinary scales."""
    torch.manual_seed(3)
    _, fused, ref = _pair(20, cell=cell)
    assert max(small_activation_errors(fused, ref, DEVICE)) < 3e-6


@pytest.mark.parametrize(("dtype", "bound"), [(torch.float16, 2e-3), (torch.bfloat16, 1.6e-2)], ids=["fp16", "bf16"])
@pytest.mark.parametrize(("cell", "H"), [("lstm", 20), ("lstm", 50), ("lstm", 70), ("gru", 20), ("gru", 50),
                                         ("gru", 70), ("rnn_tanh", 50), ("rnn_tanh", 100), ("rnn_relu", 20),
                                         ("lstm_proj", 20), ("lstm_proj", 50)])
def test_fused_half_precision(cell, dtype, bound, H):
    """Errors relative to the largest value of each output and gradient, against float64, bounded at about
    twice the largest measured (fp16 up to 8.6e-4, bf16 up to 7.8e-3). The fused LSTM and GRU keep their
    state in fp32, so they must beat the reference path in the same dtype, which keeps it in the dtype
    (measured 0.3-0.85x its error); an RNN's state is its output, rounded to the dtype on both paths."""
    errors = _errors_against_float64(cell, H, dtype, T=15, B=5)
    kept = slice(0, 2) if cell == "rnn_relu" else slice(None)  # relu: y and h_n (gradients: the next test)
    assert max(errors[kept]) < bound, errors
    if not cell.startswith("rnn"):
        reference = _errors_against_float64(cell, H, dtype, T=15, B=5, backend="torch")
        assert max(errors) <= max(reference), (errors, reference)


@pytest.mark.parametrize(("dtype", "bound"), [(torch.float16, 2e-3), (torch.bfloat16, 1.6e-2)], ids=["fp16", "bf16"])
def test_fused_relu_gradients_in_half_precision(dtype, bound):
    """Every output and gradient of the fused relu RNN in half precision, which the test above cannot bound (a
    pre-activation within rounding of zero switches its unit's gradient on or off: measured 0.37 off at one such
    flip). Here the biases hold each unit's pre-activation at +3 or -3 (active and dead units), and the products
    move it by less than 2 (asserted from the weights' row sums and the largest input and state), so no unit can
    flip; the same bounds as the other cells'."""
    torch.manual_seed(3)
    ref, layer = make_pair("rnn_relu", 5, 20, torch.float64, backend="triton", bidirectional=True)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if name.startswith("weight"):
                p.uniform_(-0.02, 0.02)
            else:  # b_ih + b_hh: +3 on even units, -3 on odd ones
                p.copy_(torch.tensor([1.5, -1.5], dtype=p.dtype).repeat(10))
    layer.load_state_dict(ref.state_dict())
    shape = {"form": "packed", "T": 15, "B": 5, "with_state": True, "seed": 6}
    make_input, h0, leaves = make_inputs(ref, dtype=torch.float64, **shape)
    want = run(ref, make_input, h0, leaves)
    row_sums = {kind: max(p.abs().sum(1).max().item() for name, p in ref.named_parameters()
                          if name.startswith(f"weight_{kind}")) for kind in ("ih", "hh")}
    largest_x = max(t.abs().max().item() for t in leaves[:-1])  # the sequences (the last leaf is h0)
    largest_h = max(t.abs().max().item() for t in (want[0], want[1], h0))
    assert row_sums["ih"] * largest_x + row_sums["hh"] * largest_h < 2.0  # |W_ih x| + |W_hh h|, against 3
    got = run(layer.to(DEVICE, dtype), *make_inputs(ref, dtype=dtype, device=DEVICE, **shape))
    errors = relative_errors(got, want)
    assert max(errors) < bound, errors


def _errors_against_float64(cell, H, dtype, T, B, backend="triton"):
    """The bidirectional layer's error (fused, or on ``backend``) in ``dtype`` on packed input, for each
    output and gradient, relative to that item's largest value in float64 (the reference path)."""
    torch.manual_seed(2)
    ref, layer = make_pair(cell, 5, H, torch.float64, backend=backend, bidirectional=True)
    shape = {"form": "packed", "T": T, "B": B, "with_state": True, "seed": 6}
    want = run(ref, *make_inputs(ref, dtype=torch.float64, **shape))
    layer = layer.to(DEVICE, dtype)
    got = run(layer, *make_inputs(ref, dtype=dtype, device=DEVICE, **shape))
    return relative_errors(got, want)


@pytest.mark.parametrize(("regime", "H"), [("persistent", 12), ("tiled", 20), ("resident", 13)])
@pytest.mark.parametrize("cell", CELLS)
def test_fused_float64_matches_reference(cell, regime, H):
    """fp64 runs its own configuration (fp64 products and state, narrower persistent blocks): outputs,
    final states and every gradient against the reference path in float64, packed, both directions, two
    batch tiles (B = 19)."""
    torch.manual_seed(15)
    reference, fused, ref = _pair(H, torch.float64, cell=cell, bidirectional=True)
    x, hx, leaves = make_inputs(ref, "packed", T=6, B=19, dtype=torch.float64, with_state=True, seed=16,
                                device=DEVICE)
    with force_regime(regime):
        got = run(fused, x, hx, leaves)
    assert_same(got, run(reference, x, hx, leaves), 1e-9)


@pytest.mark.parametrize(("cell", "H"), [*((cell, 20) for cell in CELLS), ("lstm_proj", 20)])
def test_fused_without_bias_on_unbatched_input(cell, H):
    """bias=False (the kernels take no bias; the GRU's b_hn is then zero) on one unbatched sequence."""
    torch.manual_seed(17)
    reference, fused, ref = _pair(H, cell=cell, bias=False, num_layers=2)
    x, hx, leaves = make_inputs(ref, "unbatched", T=7, B=1, dtype=torch.float32, with_state=True, seed=18,
                                device=DEVICE)
    assert_same(run(fused, x, hx, leaves), run(reference, x, hx, leaves), 2e-5)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_tiled_regime_with_several_reduction_slices(cell):
    """H = 130: 5 column tiles of 32, the last partial; the forward streams W_hh in 5 slices of 32 of the
    reduction, the last partial, and the backward the gates' gradients (K = 4H or 3H) in 5 or 4 slices of
    128, the last partial."""
    torch.manual_seed(19)
    reference, fused, ref = _pair(130, cell=cell)
    x, hx, leaves = make_inputs(ref, "packed", T=4, B=3, dtype=torch.float32, with_state=True, seed=20,
                                device=DEVICE)
    assert plan(cell, torch.zeros(1, 3, 5), 130, 3).meta["BLOCK_K"] == 32
    assert plan(cell, torch.zeros(1, 3, 5), 130, 3, backward=True).meta["BLOCK_K"] == 128
    assert_same(run(fused, x, hx, leaves), run(reference, x, hx, leaves), 2e-5)


def test_tiled_regime_takes_longer_slices_in_half_precision():
    """fp16/bf16 stream W_hh in slices of 64 (dispatch.HALF_TILED_BLOCK_K; the backward's 4 times that), but the
    LSTM backward with a projection, which spills with them, keeps 32 (128)."""
    x = torch.zeros(1, 3, 5, dtype=torch.bfloat16)
    assert plan("gru", x, 130, 3).meta["BLOCK_K"] == 64 and plan("gru", x, 130, 3, backward=True).meta["BLOCK_K"] == 256
    assert plan("lstm", x, 130, 3, proj=True).meta["BLOCK_K"] == 64
    assert plan("lstm", x, 130, 3, proj=True, backward=True).meta["BLOCK_K"] == 128


def test_tiled_regime_on_a_single_partial_tile_and_several_batch_tiles():
    torch.manual_seed(3)
    reference, fused, ref = _pair(20, cell="lstm", bidirectional=True)
    x, hx, leaves = make_inputs(ref, "packed", T=6, B=19, dtype=torch.float32, with_state=True, seed=7,
                                device=DEVICE)
    with force_regime("tiled"):
        got = run(fused, x, hx, leaves)
    assert_same(got, run(reference, x, hx, leaves), 2e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("cell", CELLS)
def test_resident_regime_matches_reference(cell, dtype):
    """The resident regime (each program holds its tile of W_hh for the whole sequence) where the
    interpreter can run it: one tile covering H = 13 (masked columns, reduction padded to 16), two batch
    tiles, packed, both directions; fp16 bounded against float64 as in test_fused_half_precision (measured up to
    9.0e-4)."""
    with force_regime("resident"):
        if dtype == torch.float16:
            errors = _errors_against_float64(cell, 13, dtype, T=7, B=19)
            assert max(errors[:2] if cell == "rnn_relu" else errors) < 2e-3, errors
            return
        torch.manual_seed(3)
        reference, fused, ref = _pair(13, cell=cell, bidirectional=True)
        x, hx, leaves = make_inputs(ref, "packed", T=7, B=19, dtype=dtype, with_state=True, seed=7, device=DEVICE)
        assert_same(run(fused, x, hx, leaves), run(reference, x, hx, leaves), 2e-5)


def test_dispatcher_picks_the_regime_from_cell_size_and_dtype():
    x32, x16 = torch.zeros(1, 40, 1), torch.zeros(1, 40, 1, dtype=torch.float16)
    assert plan("lstm", x32, 32, 40).regime == "persistent"
    assert plan("lstm", x32, 33, 40).regime == "tiled"
    assert plan("lstm", x16, 64, 40).regime == "persistent"
    assert plan("gru", x16, 64, 40).regime == "persistent" and plan("gru", x16, 65, 40).regime == "tiled"
    tiled = plan("rnn", x16, 1024, 40)
    assert tiled.grid == (3, 1) and not tiled.meta["GRID_SYNC"]  # the grid barrier is for CUDA only
    assert not tiled.meta["launch_cooperative_grid"]
    # programs that meet at the barrier must all be resident: a cooperative launch, which CUDA refuses otherwise
    spread = resident_launch(x16, 256, 40)
    assert spread.grid == (3, 16) and spread.meta["GRID_SYNC"] and spread.meta["launch_cooperative_grid"]
    with force_regime("tiled"):
        assert plan("lstm", x32, 8, 40).tiled
    with force_regime("resident"):  # one program per 16 hidden units and batch tile, holding its W_hh slice
        resident = plan("gru", x16, 16, 40)
        assert resident.tiled and resident.grid == (3, 1) and resident.meta["K_RES"] == 16
    # up to the sizes that compile without spills (fit.py); the backward's limits are lower
    assert max_resident_h("lstm", torch.bfloat16) == 512 and max_resident_h("lstm", torch.bfloat16, True) == 256
    assert max_resident_h("gru", torch.float16) == 1024 and max_resident_h("gru", torch.float16, True) == 256
    # hidden sizes that are multiples of 16 compile with vectorized accesses, which need fewer registers
    assert max_resident_h("lstm", torch.bfloat16, aligned=True) == 1024
    assert max_resident_h("lstm", torch.bfloat16, True, aligned=True) == 1024
    assert max_resident_h("gru", torch.float16, True, aligned=True) == 1024
    assert max_resident_h("rnn", torch.float16, True) == 512
    assert max_resident_h("rnn", torch.float16, True, aligned=True) == 1024
    assert max_resident_h("rnn", torch.float32, True, aligned=True) == 128  # no larger entry: MAX_RESIDENT_H's
    assert max_resident_h("lstm", torch.float32) == 32 and max_resident_h("lstm", torch.float32, aligned=True) == 128


@pytest.mark.parametrize("tiling", [(16, 16, 1, 4), (16, 128, 2, 8)], ids=["narrow", "wide-k"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
def test_forced_tilings_match_reference(cell, tiling):
    """The tiled regime's candidate blocks (benchmarks/tune.py): 16-unit column tiles, and reduction
    slices wider than H (masked), give the reference's numbers."""
    torch.manual_seed(5)
    reference, fused, ref = _pair(50, cell=cell)
    x, hx, leaves = make_inputs(ref, "packed", T=7, B=5, dtype=torch.float32, with_state=True, seed=8, device=DEVICE)
    with force_regime("tiled"), force_tiling(*tiling):
        assert plan(cell.split("_")[0], torch.zeros(1, 5, 5, device=DEVICE), 50, 5).meta["BLOCK_H"] == tiling[0]
        got = run(fused, x, hx, leaves)
    assert_same(got, run(reference, x, hx, leaves), 2e-5)
    with pytest.raises(ValueError, match=r"block_h must be a power of two >= 16 .*; got 24"), \
            force_tiling(24, 64, 1, 4):
        pass
    with pytest.raises(ValueError, match=r"stages must be >= 1; got 0"), force_tiling(16, 64, 0, 4):
        pass
    with pytest.raises(ValueError, match=r"warps must be a power of two >= 1; got 6"), force_tiling(16, 64, 1, 6):
        pass


def test_forced_batch_tile_widens_the_resident_programs_only():
    """dispatch.force_batch_tile (benchmarks/tune.py): 32 batch rows a resident program, half the programs;
    the other regimes keep BLOCK_B's 16. The numbers: two batch tiles of 32 (B = 40), one covering H."""
    x = torch.zeros(1, 40, 5, dtype=torch.float16)
    assert resident_rows(x, 1024, 40) == 16  # off CUDA
    with force_batch_tile(32):
        assert resident_rows(x, 1024, 40) == 32
        launch = resident_launch(x, 1024, 40, resident_rows(x, 1024, 40))
        assert launch.grid == (2, 64) and launch.meta["BLOCK_B"] == 32
        assert plan("lstm", x, 64, 40).meta["BLOCK_B"] == 16 and plan("lstm", x, 64, 40).grid == (3,)
        with force_regime("resident"):
            torch.manual_seed(3)
            reference, fused, ref = _pair(16, cell="gru", bidirectional=True)
            inputs = make_inputs(ref, "packed", T=5, B=40, dtype=torch.float32, with_state=True, seed=7, device=DEVICE)
            assert_same(run(fused, *inputs), run(reference, *inputs), 2e-5)
    with pytest.raises(ValueError, match=r"rows must be 16 or 32 .* got 64"), force_batch_tile(64):
        pass


@pytest.mark.parametrize(("capability", "sms", "dtype", "H", "B", "rows"), [
    ((9, 0), 132, torch.bfloat16, 1024, 64, 32),  # 256 programs of 16 rows, 128 of 32
    ((9, 0), 132, torch.float16, 512, 128, 32),
    ((9, 0), 132, torch.bfloat16, 1024, 32, 16),  # 128 programs of 16 rows fit
    ((9, 0), 132, torch.bfloat16, 1024, 96, 16),  # 192 of 32 rows do not either: tiled
    ((9, 0), 132, torch.bfloat16, 1000, 64, 16),  # not a multiple of 16
    ((9, 0), 132, torch.float32, 128, 512, 16),  # fp32
    ((8, 0), 108, torch.bfloat16, 512, 64, 16),  # sm_80: too little shared memory
])
def test_wide_resident_programs_only_where_narrow_ones_outnumber_the_sms(capability, sms, dtype, H, B, rows):
    """dispatch.batch_rows: 32 batch rows a resident program on sm_90 in half precision for multiples of
    16, where 16 rows a program would need more programs than the device has SMs and 32 would not."""
    assert batch_rows(capability, sms, dtype, H, B) == rows


def test_forced_warps_reach_the_persistent_and_resident_launches():
    """dispatch.force_warps (benchmarks/tune.py): the warps of a persistent or resident program, each thread
    allowed every register the program may have; the tiled regime keeps its own (force_tiling's)."""
    x = torch.zeros(1, 3, 5, dtype=torch.bfloat16)
    with force_warps(4):
        meta = plan("gru", x, 20, 3).meta
        assert (meta["num_warps"], meta["maxnreg"]) == (4, 255)
        assert resident_launch(x, 256, 3).meta["num_warps"] == 4
        with force_regime("tiled"):
            assert plan("gru", x, 20, 3).meta["num_warps"] == 8
    with force_warps(16):
        assert plan("lstm", x, 64, 3).meta["maxnreg"] == 128 and resident_launch(x, 256, 3).meta["maxnreg"] == 128
    assert plan("rnn", x, 20, 3).meta["num_warps"] == 8 and "maxnreg" not in plan("rnn", x, 20, 3).meta
    # dispatch.TIMED_WARPS: the GRU forward at BLOCK_H = 64 in half precision, not its backward or the LSTM
    assert [plan(cell, x, 64, 3, backward=bwd).meta["num_warps"] for cell, bwd in
            (("gru", False), ("gru", True), ("lstm", False))] == [8, 16, 16]
    for bad in (3, 64):
        with pytest.raises(ValueError, match=rf"warps must be a power of two from 1 to 32; got {bad}"), \
                force_warps(bad):
            pass


def test_grid_sync_setting_is_checked(monkeypatch):
    monkeypatch.setenv("RNNLAB_GRID_SYNC", "yes")
    with pytest.raises(ValueError, match=r"RNNLAB_GRID_SYNC must be 0 .* or 1 .*; got 'yes'"):
        grid_sync_enabled()
    monkeypatch.setenv("RNNLAB_GRID_SYNC", "0")
    assert not grid_sync_enabled()


def test_unsupported_configurations_say_so():
    _, fused, _ = _pair(200)
    with force_regime("persistent"), pytest.raises(NotImplementedError, match=r"LSTM hidden sizes up to 32 .*=200"):
        fused(torch.randn(3, 2, 5, device=DEVICE))
    with pytest.raises(ValueError, match=r"regime must be one of .* got 'fast'"), force_regime("fast"):
        pass
    proj = rnnlab.LSTM(5, 20, proj_size=4, backend="triton").to(DEVICE)
    with force_regime("persistent"), pytest.raises(NotImplementedError, match=r"up to 0 .* with a projection"):
        proj(torch.randn(3, 2, 5, device=DEVICE))
    with force_regime("resident"), pytest.raises(NotImplementedError, match=r"no projection"):
        proj(torch.randn(3, 2, 5, device=DEVICE))
    x = torch.zeros(1, 4, 1, device=DEVICE)
    if not (grid_sync_enabled() and x.is_cuda):  # the interpreter, or RNNLAB_GRID_SYNC=0
        with force_regime("resident"), pytest.raises(NotImplementedError, match=r"2 programs would meet at a grid"):
            plan("lstm", x, 20, 4)
    with force_regime("resident"), pytest.raises(NotImplementedError, match=r"forward holds .* 32 for torch.float32"):
        plan("lstm", x, 1000, 4)  # not a multiple of 16 (those: up to 128)
    x16 = x.half()  # the LSTM forward holds H = 512, the backward 256; multiples of 16 1024 each (fit.py)
    if not x.is_cuda:
        with force_regime("resident"), pytest.raises(NotImplementedError, match=r"63 programs would meet"):
            plan("lstm", x16, 1008, 4)
    with force_regime("resident"), pytest.raises(NotImplementedError,
                                                 match=r"forward holds .* 512 for torch.float16 \(1024 for multiples"):
        plan("lstm", x16, 1000, 4)
    with force_regime("resident"), pytest.raises(NotImplementedError, match=r"backward holds .* 256 for torch.float16"):
        plan("lstm", x16, 500, 4, backward=True)
    with force_regime("resident"), pytest.raises(NotImplementedError, match=r"holds .* up to 1024 for torch.float16"):
        plan("lstm", x16, 1040, 4, backward=True)


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize(("T", "H", "form"), [(7, 20, "packed"), (7, 50, "batched"), (63, 20, "packed")])
def test_fused_lstm_with_projection_matches_reference(T, H, form, bidirectional):
    """proj_size = H // 2 (tiled regime: a second exchange phase per step projects h)."""
    torch.manual_seed(13)
    reference, fused, ref = _pair(H, cell="lstm_proj", num_layers=2, bidirectional=bidirectional)
    x, hx, leaves = make_inputs(ref, form, T=T, B=5, dtype=torch.float32, with_state=True, seed=14, device=DEVICE)
    assert_same(run(fused, x, hx, leaves), run(reference, x, hx, leaves), 2e-5)


def _inputs(cell, H=20, P=0, T=5, B=3, I=4, dtype=torch.float32):
    """Tensor inputs of a fused scan, each requiring grad: x, the initial states, w_ih, w_hh, b_ih, b_hh and,
    for an LSTM with P > 0, w_hr (P, H)."""
    gates = {"lstm": 4, "gru": 3, "rnn": 1}[cell]
    like = {"device": DEVICE, "dtype": dtype, "requires_grad": True}
    width = P or H  # of h
    states = [torch.randn(B, width, **like)] + ([torch.randn(B, H, **like)] if cell == "lstm" else [])
    weights = [torch.randn(gates * H, n, **like) / H**0.5 for n in (I, width)]
    biases = [torch.randn(gates * H, **like) for _ in range(2)]
    projection = [torch.randn(P, H, **like) / H**0.5] if P else []
    return [torch.randn(T, B, I, **like), *states, *weights, *biases, *projection]


def _op_args(cell, tensors, packed=False, store=True):
    """Arguments of rnnlab::<cell>_fused for _inputs(cell): the tensors (an LSTM's w_hr or None), the batch
    sizes, reverse, and the last flag (LSTM and GRU: store; RNN: relu)."""
    if cell == "lstm":
        tensors = [*tensors[:7], tensors[7] if len(tensors) > 7 else None]
    return (*tensors, [3, 3, 2, 2, 1] if packed else None, True, store if cell != "rnn" else False)


@pytest.mark.parametrize("packed", [False, True], ids=["batched", "packed"])
@pytest.mark.parametrize(("cell", "P"), [("lstm", 0), ("lstm", 7), ("gru", 0), ("rnn", 0)],
                         ids=["lstm", "lstm_proj", "gru", "rnn"])
def test_custom_ops_pass_opcheck(cell, P, packed):
    """Schema, fake (meta) implementation, autograd registration and AOT dispatch of the forward op (and,
    through its backward, of the backward op), checked by torch.library.opcheck."""
    torch.manual_seed(8)
    op = getattr(torch.ops.rnnlab, f"{cell}_fused").default
    torch.library.opcheck(op, _op_args(cell, _inputs(cell, P=P), packed))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_custom_ops_pass_opcheck_in_bf16(cell):
    """bf16 stores its activations for the backward in bf16 (dispatch.stored), the state's outputs in
    fp32: the fake implementation must say the same."""
    torch.manual_seed(8)
    op = getattr(torch.ops.rnnlab, f"{cell}_fused").default
    args = _op_args(cell, _inputs(cell, dtype=torch.bfloat16))
    assert op(*args)[4 if cell == "lstm" else 2].dtype == torch.bfloat16  # C (GRU: G), kept for the backward
    torch.library.opcheck(op, args, test_utils=("test_schema", "test_faketensor", "test_autograd_registration"))


@pytest.mark.usefixtures("fresh_dynamo")
@pytest.mark.parametrize("cell", CELLS)
def test_layers_compile_without_graph_breaks(cell):
    """A 2-layer bidirectional fused layer under torch.compile(fullgraph=True) gives eager's outputs and
    gradients. Dynamo refuses every torch.nn.RNN/GRU/LSTM subclass unless allow_rnn is set."""
    torch.manual_seed(9)
    _, fused, ref = _pair(20, cell=cell, num_layers=2, bidirectional=True)
    x, hx, leaves = make_inputs(ref, "batched", T=6, B=3, dtype=torch.float32, with_state=True, seed=10,
                                device=DEVICE)
    want = run(fused, x, hx, leaves)
    with torch._dynamo.config.patch(allow_rnn=True):
        got = run(torch.compile(fused, backend="aot_eager", fullgraph=True), x, hx, leaves)
    assert_same(got, want, 1e-6)


@pytest.mark.usefixtures("fresh_dynamo")
@pytest.mark.parametrize("cell", CELLS)
def test_plain_inference_skips_the_custom_op(cell, monkeypatch):
    """Outside autograd, tracing and transforms a layer calls its fused forward's implementation directly
    (the custom op's dispatch is CPU time the GPU waits for), with the op's outputs; a forward that needs a
    backward, and torch.compile (fullgraph, so no graph break at the kernel), still go through the op."""
    kernels = getattr(rnnlab.kernels, cell.split("_")[0])
    name = f"{cell.split('_')[0]}_fused"
    op, calls = getattr(kernels, name), []
    monkeypatch.setattr(kernels, name, lambda *args: calls.append(name) or op(*args))
    torch.manual_seed(12)
    _, fused, _ = _pair(20, cell=cell)
    x = torch.randn(6, 3, 5, device=DEVICE)
    with torch.no_grad():
        direct = fused(x)
    assert calls == []
    through_op = fused(x.requires_grad_())
    assert calls == [name]
    with torch.no_grad(), torch._dynamo.config.patch(allow_rnn=True):
        compiled = torch.compile(fused, backend="aot_eager", fullgraph=True)(x)
    assert calls == [name, name]
    flat = [[t.detach() for t in torch.utils._pytree.tree_leaves(out)] for out in (direct, through_op, compiled)]
    assert all(torch.equal(a, b) for a, b in zip(flat[0], flat[2], strict=True))
    # a forward for a backward takes another regime (the LSTM's and GRU's store for it; the vector regime does
    # not): the same numbers to fp32 rounding
    assert_same(flat[1], flat[0], 1e-6)


@pytest.mark.parametrize(("cell", "regime", "P"), [("lstm", "persistent", 0), ("lstm", "tiled", 0),
                                                  ("lstm", "tiled", 7), ("lstm", "resident", 0),
                                                  ("gru", "persistent", 0), ("gru", "tiled", 0)])
def test_inference_forward_stores_nothing_for_a_backward(cell, regime, P):
    """Without a backward to come, the fused forward skips the gates and states it stores for one, and
    returns the same outputs."""
    torch.manual_seed(11)
    tensors = [t.detach() for t in _inputs(cell, H=16 if regime == "resident" else 20, P=P)]
    op = getattr(torch.ops.rnnlab, f"{cell}_fused")
    with force_regime(regime):
        training, inference = op(*_op_args(cell, tensors, store=True)), op(*_op_args(cell, tensors, store=False))
    outputs = 3 if cell == "lstm" else 2
    assert all(torch.equal(a, b) for a, b in zip(training[:outputs], inference[:outputs], strict=True))
    assert all(t.numel() == 0 for t in inference[outputs:])
    assert all(t.numel() > 0 for t in training[outputs:][: 3 if P else 2])


@pytest.mark.parametrize(("cell", "H", "P", "regime"), [
    *((cell, H, 0, regime) for cell in ("lstm", "gru", "rnn")
      for H, regime in ((12, "persistent"), (20, "tiled"), (12, "resident"))),
    ("lstm", 20, 7, "tiled"), ("rnn_relu", 12, 0, "persistent"), ("rnn_relu", 20, 0, "tiled"),
])
def test_fused_kernels_pass_gradcheck_in_float64(cell, H, P, regime):
    """Packed and reversed, every tensor input (x, initial states, weights, biases, w_hr) checked by
    torch.autograd.gradcheck against finite differences (fast mode: random projections of the Jacobian)."""
    torch.manual_seed(12)
    kind = cell.split("_")[0]
    tensors = _inputs(kind, H=H, P=P, dtype=torch.float64)
    scan = getattr(rnnlab.kernels, f"{kind}_scan")
    batch_sizes = [3, 3, 2, 2, 1]

    def fn(*t):
        if kind == "lstm":
            return scan(*t[:7], t[7] if P else None, batch_sizes, True)
        nonlinearity = ["relu" if cell == "rnn_relu" else "tanh"] if kind == "rnn" else []
        return scan(*t, batch_sizes, True, *nonlinearity)

    with force_regime(regime):
        assert torch.autograd.gradcheck(fn, tensors, fast_mode=True)
