"""The vector regime (rnnlab.kernels.dispatch): forwards that keep nothing for a backward, one program per
batch row holding W_hh in registers, against the pure-PyTorch reference under the Triton interpreter (set in
conftest.py without a GPU): outputs and final states, both directions, packed with unequal lengths (a
length-1 row among them), one row and several, hidden sizes off the power-of-two blocks and at the limits
(dispatch.MAX_VECTOR_H); fp32 and fp64 tight, fp16/bf16 against float64. Its numbers on a GPU against cuDNN:
tests/test_cuda.py."""

import dataclasses
import itertools

import pytest
import torch

import rnnlab
from parity import FUSED_DEVICE, assert_same, infer, make_inputs, make_pair, needs_fused_device, relative_errors, run

pytest.importorskip("triton")  # optional where it has no wheel; rnnlab.kernels needs it
from rnnlab.kernels.common import flagged_ping_pong
from rnnlab.kernels.dispatch import (
    EXCHANGES,
    force_exchange,
    force_regime,
    force_units,
    force_warps,
    max_split_vector_h,
    max_vector_h,
    plan,
    vector_launch,
    vector_warps,
)

pytestmark = needs_fused_device
DEVICE = FUSED_DEVICE
CELLS = ["lstm", "gru", "rnn_tanh", "rnn_relu"]


def _cases():
    """(cell, H, B, dtype): a size off the blocks, and the largest the regime holds for any size and for multiples
    of 16 (dispatch.ALIGNED_VECTOR_H; one compiled kernel under the interpreter), in fp32 and fp64."""
    for cell in CELLS:
        for dtype in (torch.float32, torch.float64):
            name = cell.split("_")[0]
            sizes = {max_vector_h(name, dtype) - 1, max_vector_h(name, dtype, aligned=True)}
            for H, B in ((13, 1), *((H, 5) for H in sorted(sizes))):
                yield pytest.param(cell, H, B, dtype, id=f"{cell}-H{H}-B{B}-{str(dtype)[6:]}")


@pytest.mark.parametrize(("cell", "H", "B", "dtype"), list(_cases()))
def test_vector_regime_matches_reference(cell, H, B, dtype):
    """Two bidirectional layers, packed (unequal lengths, a length-1 row) and batched, with initial states. The
    regime is forced, so a shape it cannot run fails instead of running elsewhere; the dispatcher's own choice
    for inference gives the same bits."""
    torch.manual_seed(0)
    ref, fused = make_pair(cell, 5, H, dtype, backend="triton", num_layers=2, bidirectional=True)
    reference = rnnlab.from_torch(ref, backend="torch")
    ref, fused, reference = ref.to(DEVICE), fused.to(DEVICE), reference.to(DEVICE)
    tol = 1e-12 if dtype == torch.float64 else 2e-6
    for form in ("packed", "batched"):
        x, hx, _ = make_inputs(ref, form, T=11, B=B, dtype=dtype, with_state=True, seed=3, device=DEVICE)
        with force_regime("vector"):
            got = infer(fused, x, hx)
        assert_same(got, infer(reference, x, hx), tol, scaled=True)
        assert all(torch.equal(a, b) for a, b in zip(got, infer(fused, x, hx), strict=True))


@pytest.mark.parametrize(("dtype", "bound"), [(torch.float16, 2e-3), (torch.bfloat16, 1.6e-2)], ids=["fp16", "bf16"])
@pytest.mark.parametrize("cell", CELLS)
def test_vector_regime_in_half_precision(cell, dtype, bound):
    """Against float64 on the same rounded inputs, relative to each output's largest value, within the bound of
    the other regimes' half-precision test (tests/test_triton_kernels.py) and no further off than the
    persistent regime in the same dtype (the state stays fp32 in both; h is rounded to the weights' type before
    each product in both)."""
    torch.manual_seed(1)
    ref = make_pair(cell, 5, 48, torch.float64, bidirectional=True)[0]  # the LSTM: a multiple of 16
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(p.to(dtype))  # representable in dtype: both sides multiply the same weights
    reference = rnnlab.from_torch(ref, backend="torch")
    fused = rnnlab.from_torch(ref, backend="triton").to(DEVICE, dtype)
    shape = {"form": "packed", "T": 15, "B": 5, "with_state": True, "seed": 6, "rounded_to": dtype}
    want = infer(reference, *make_inputs(ref, dtype=torch.float64, **shape)[:2])
    x, hx, _ = make_inputs(ref, dtype=dtype, device=DEVICE, **shape)
    errors = {}
    for regime in ("vector", "persistent"):
        with force_regime(regime):
            errors[regime] = max(relative_errors(infer(fused, x, hx), want))
    assert errors["vector"] < bound and errors["vector"] <= 1.5 * errors["persistent"], errors


@pytest.mark.parametrize("exchange", EXCHANGES)
@pytest.mark.parametrize("cell", CELLS)
def test_split_exchange_under_the_interpreter(cell, exchange, monkeypatch):
    """The split programs' exchange of h through the (2, B, H) buffer (at the barrier, or flagged: tagged words),
    run by one program a row that holds every unit: the same bits as the program without it, packed,
    bidirectional, fp32 and bf16 (several programs that wait on each other: the next test)."""
    from rnnlab.kernels import dispatch

    one_program = dispatch.vector_launch

    def through_the_buffer(*args):
        launch = one_program(*args)
        return dataclasses.replace(launch, meta={**launch.meta, "GRID_SYNC": True, "FLAGGED": exchange == "flagged"})

    torch.manual_seed(3)
    ref, fused = make_pair(cell, 5, 20, torch.float32, backend="triton", bidirectional=True)
    for dtype in (torch.float32, torch.bfloat16):
        fused = fused.to(DEVICE, dtype)
        x, hx, _ = make_inputs(ref, "packed", T=9, B=4, dtype=dtype, with_state=True, seed=5, device=DEVICE)
        with force_regime("vector"):
            want = infer(fused, x, hx)
            with monkeypatch.context() as patch:
                patch.setattr(dispatch, "vector_launch", through_the_buffer)
                got = infer(fused, x, hx)
        assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))


@pytest.mark.parametrize(("cell", "H", "exchange", "units"), [
    ("lstm", 72, "barrier", 4), ("lstm", 72, "flagged", 16), ("gru", 80, "barrier", 16), ("gru", 80, "flagged", 8),
    ("rnn_tanh", 150, "flagged", 16), ("rnn_relu", 150, "barrier", 8)])
def test_split_programs_in_threads_match_reference(cell, H, exchange, units, programs_in_threads):
    """Past one program's sizes, the units split over programs that wait on each other every step, each in a
    thread of the interpreter (tests/threaded_interpreter.py): at the barrier or flagged, 16, 8 or 4 units a
    program (force_units), against the reference in fp32, packed and bidirectional with initial states."""
    torch.manual_seed(0)
    ref, fused = make_pair(cell, 5, H, torch.float32, backend="triton", bidirectional=True)
    reference = rnnlab.from_torch(ref, backend="torch")
    x, hx, _ = make_inputs(ref, "packed", T=5, B=3, dtype=torch.float32, with_state=True, seed=3)
    with force_regime("vector"), force_exchange(exchange), force_units(units):
        launch = plan(cell.split("_")[0], torch.empty(0, 3, 1), H, 3, inference=True)
        assert launch.grid == (3, -(-H // units)) and launch.meta["FLAGGED"] == (exchange == "flagged")
        got = infer(fused, x, hx)
    assert_same(got, infer(reference, x, hx), 2e-6, scaled=True)


def test_training_forward_under_a_forced_vector_regime():
    """The regime is forward-only: forced, an RNN (whose forward keeps only its outputs) trains with its backward
    where the dispatcher puts it, matching the reference's gradients; an LSTM, whose training forward stores its
    gates for the backward, is refused with what the regime runs."""
    torch.manual_seed(2)
    ref, fused = make_pair("rnn_tanh", 5, 20, torch.float32, backend="triton")
    reference = rnnlab.from_torch(ref, backend="torch")
    x, hx, leaves = make_inputs(ref, "packed", T=9, B=4, dtype=torch.float32, with_state=True, seed=4, device=DEVICE)
    with force_regime("vector"):
        got = run(fused.to(DEVICE), x, hx, leaves)
    assert_same(got, run(reference.to(DEVICE), x, hx, leaves), 2e-5)
    _, lstm = make_pair("lstm", 5, 20, torch.float32, backend="triton")
    with force_regime("vector"), pytest.raises(NotImplementedError, match=r"keep nothing for a backward"):
        lstm.to(DEVICE)(torch.randn(3, 2, 5, device=DEVICE, requires_grad=True))


def test_dispatcher_picks_the_vector_regime_for_small_inference_forwards():
    x16, x32, x64 = (torch.zeros(1, 16, 1, dtype=dt) for dt in (torch.bfloat16, torch.float32, torch.float64))
    launch = plan("lstm", x16, 64, 16, inference=True)
    assert launch.regime == "vector" and launch.grid == (16, 1) and not launch.tiled
    # one program an SM (at most 16 rows), allowed all its registers (128 a thread of 16 warps)
    assert launch.meta == {"BLOCK_H": 64, "BLOCK_U": 64, "num_warps": 16, "GRID_SYNC": False,
                           "launch_cooperative_grid": False, "FLAGGED": False, "maxnreg": 128}
    assert plan("lstm", x32, 64, 16, inference=True).regime == "vector"  # the persistent fp32 LSTM stops at 32
    assert plan("rnn", x32, 128, 1, inference=True).regime == "vector"
    assert plan("gru", x64, 32, 3, inference=True).regime == "vector"
    # a forward for a backward, backwards, larger sizes and batches, projections and layer norm: elsewhere
    assert plan("lstm", x16, 64, 16).regime == "persistent"
    assert plan("lstm", x16, 64, 16, backward=True).regime == "persistent"
    assert plan("lstm", x16, 65, 16, inference=True).regime != "vector"
    assert plan("lstm", x16, 50, 16, inference=True).regime == "persistent"  # 64 for multiples of 16 only
    assert plan("lstm", torch.zeros(1, 17, 1), 20, 17, inference=True).regime == "persistent"
    assert plan("gru", x64, 33, 1, inference=True).regime != "vector"
    assert plan("lstm", x16, 20, 2, proj=True, inference=True).regime == "tiled"
    assert plan("lstm", x16, 20, 2, norm=True, inference=True).regime == "persistent"
    # about 32 weights a thread (16 in fp64)
    assert [vector_warps("lstm", h, h, torch.float32) for h in (16, 32, 64)] == [1, 4, 16]
    assert [vector_warps("rnn", h, h, torch.float32) for h in (16, 32, 64, 128)] == [1, 1, 4, 16]
    assert vector_warps("gru", 16, 16, torch.float64) == 2 and vector_warps("lstm", 32, 32, torch.float64) == 8
    # but where a GPU timed another count faster (dispatch.TIMED_VECTOR_WARPS): the half-precision GRU at 64
    assert plan("gru", x16, 64, 16, inference=True).meta["num_warps"] == 8
    assert plan("gru", x32, 64, 16, inference=True).meta["num_warps"] == vector_warps("gru", 64, 64, x32.dtype)
    # beyond what one program holds, (forced only) 16 units a program, a row's programs meeting at a grid barrier,
    # each with every register it may have (one program an SM)
    split = vector_launch("lstm", x16, 256, 4)
    assert split.regime == "vector" and split.grid == (4, 16)
    assert split.meta == {"BLOCK_H": 256, "BLOCK_U": 16, "num_warps": 16, "GRID_SYNC": True,
                          "launch_cooperative_grid": True, "FLAGGED": False, "maxnreg": 128}
    # the flagged exchange, forced: split programs only, and not in fp64 (whose values fill a 64-bit word); never
    # more threads than h has words (an H200 ran 16 warps over 256 words wrong: dispatch.EXCHANGES)
    with force_exchange("flagged"):
        assert vector_launch("lstm", x16, 256, 4).meta["FLAGGED"]
        assert not vector_launch("lstm", x16, 64, 4).meta["FLAGGED"]
        assert not vector_launch("rnn", x64, 256, 4).meta["FLAGGED"]
        for cell, H, dtype in itertools.product(("lstm", "gru", "rnn"), (128, 256, 1000), (x16, x32)):
            for units in (16, 8, 4):
                with force_units(units):
                    meta = vector_launch(cell, dtype, H, 1).meta
                assert not meta["FLAGGED"] or meta["num_warps"] * 32 <= meta["BLOCK_H"], (cell, H, units, meta)
        assert vector_launch("lstm", x16, 256, 4).meta["num_warps"] == 8
    with pytest.raises(ValueError, match="exchange must be one of"):
        force_exchange("ring").__enter__()
    # narrower split programs, forced (force_units): the warps scale with the units; one program a row is left alone
    for units, warps in ((8, 8), (4, 4)):
        with force_units(units):
            narrow = vector_launch("lstm", x16, 256, 4)
            assert narrow.grid == (4, 256 // units) and narrow.meta["BLOCK_U"] == units
            assert narrow.meta["num_warps"] == warps and narrow.meta["maxnreg"] == 255
            assert vector_launch("lstm", x16, 64, 4).grid == (4, 1)
    with pytest.raises(ValueError, match=r"units must be one of \(4, 8, 16\) .* got 32"):
        force_units(32).__enter__()
    assert max_split_vector_h("lstm", torch.bfloat16) == 128 and max_split_vector_h("gru", x16.dtype, True) == 512
    with force_warps(4):
        forced = plan("lstm", x16, 64, 16, inference=True)
    assert forced.meta["num_warps"] == 4 and forced.meta["maxnreg"] == 255


def test_flagged_exchange_words_carry_a_step_tag_over_fp32_bits():
    """The flagged exchange's buffer: slot 0 holds h0's fp32 values under tag 0, slot 1 the same under tag -1 (what
    the kernels read back: the high 32 bits as the tag, the low 32 as fp32 bits), for every fp32 value, signs and
    NaN included; half-precision h0 widened to fp32."""
    h0 = torch.tensor([[0.0, -0.0, 1.5, -2.25], [float("inf"), -1e-38, 3e38, float("nan")]])
    for dtype in (torch.float32, torch.bfloat16):
        words = flagged_ping_pong(h0.to(dtype))
        assert words.shape == (2, 2, 4) and words.dtype == torch.int64
        assert (words[0] >> 32).eq(0).all() and (words[1] >> 32).eq(-1).all()
        for slot in words:
            values = slot.to(torch.int32).view(torch.float32)  # the low 32 bits
            assert torch.equal(values.view(torch.int32), h0.to(dtype).float().view(torch.int32))


def test_dispatcher_splits_the_vector_regime_where_timed_faster(monkeypatch):
    """Beyond one program's sizes the dispatcher splits an inference forward over programs up to
    AUTO_SPLIT_VECTOR_H (H100 timings), where the device holds them all at once (here a pretend 132 SMs)."""
    from rnnlab.kernels import dispatch

    monkeypatch.setattr(dispatch, "_co_resident_problem", lambda x, programs: None if programs <= 132 else "too many")
    x16 = torch.zeros(1, 16, 1, dtype=torch.bfloat16)

    def split(cell, H, B):  # the regime and grid of the inference forward's launch
        launch = plan(cell, x16[:, :B], H, B, inference=True)
        return launch.regime, launch.grid

    assert split("lstm", 128, 1) == ("vector", (1, 8)) and split("gru", 256, 2) == ("vector", (2, 16))
    assert split("rnn", 1024, 1) == ("vector", (1, 64))
    assert plan("lstm", x16, 256, 16, inference=True).regime != "vector"  # 256 programs
    assert plan("gru", x16[:, :1], 512, 1, inference=True).regime != "vector"  # timed slower than resident
    assert plan("lstm", x16[:, :1], 128, 1).regime != "vector"  # a forward for a backward
    with force_regime("vector"):
        assert split("gru", 512, 1) == ("vector", (1, 32))
    with force_units(8):  # twice the programs a row: as many rows fit as half the batch did
        assert split("lstm", 256, 4) == ("vector", (4, 32))
        assert plan("lstm", x16[:, :5], 256, 5, inference=True).regime != "vector"  # 160 programs


def test_forced_vector_regime_refuses_what_it_cannot_run():
    x16 = torch.zeros(1, 16, 1, dtype=torch.bfloat16)
    with force_regime("vector"):
        # beyond one program's sizes it splits the units over programs, which meet at a grid barrier: CUDA only
        with pytest.raises(NotImplementedError, match=r"vector regime cannot run this LSTM: one program holds "
                                                      r"hidden sizes up to 32 for torch.bfloat16 \(64 for multiples of "
                                                      r"16\); got hidden_size=50; split, 64 programs would meet at "
                                                      r"a grid barrier, which needs CUDA"):
            plan("lstm", x16, 50, 16, inference=True)
        with pytest.raises(NotImplementedError, match=r"got hidden_size=300, and split over programs up to 128 \(256 "
                                                      r"for multiples of 16\)"):
            plan("lstm", x16, 300, 16, inference=True)
        with pytest.raises(NotImplementedError, match=r"batches of up to 16 rows .* got 17"):
            plan("gru", torch.zeros(1, 17, 1), 20, 17, inference=True)
        with pytest.raises(NotImplementedError, match=r"no projection"):
            plan("lstm", x16, 20, 16, proj=True, inference=True)
        with pytest.raises(NotImplementedError, match=r"layer norm in their persistent regime only"):
            plan("lstm", x16, 20, 16, norm=True, inference=True)
        assert plan("lstm", x16, 20, 16, backward=True).regime == "persistent"  # backwards: the dispatcher's
