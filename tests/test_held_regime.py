"""The held regime (rnnlab.kernels.dispatch, kernels/held.py): inference forwards whose W_hh stays in registers as
tensor-core operands, written in Gluon, which the Triton interpreter does not run. Here, without a GPU: its
launch, that it refuses clearly what it cannot run, that the fused forwards' calls bind to its kernels and
compile through Triton's launch path, and the kernels' numbers against the reference with Gluon's calls given to
the interpreter as triton.language's (tests/held_interpreted.py; the split kernels' programs in threads:
tests/threaded_interpreter.py; its kernels' fit: tests/test_kernel_fit.py; its numbers against cuDNN:
tests/test_cuda.py)."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import rnnlab
from parity import assert_same, infer, make_inputs, make_pair, relative_errors

pytest.importorskip("triton")  # optional where it has no wheel; rnnlab.kernels needs it
from rnnlab.kernels import dispatch
from rnnlab.kernels.dispatch import (
    CLUSTER_EXCHANGES,
    EXCHANGES,
    HELD_ROWS,
    HELD_SPLIT_CHAINS,
    HELD_SPLIT_UNITS,
    MAX_HELD_H,
    force_exchange,
    force_regime,
    held_launch,
    plan,
)


@pytest.mark.parametrize(("cell", "H", "B", "grid", "warps", "registers"), [
    ("lstm", 128, 11, (2,), 8, 255),
    ("gru", 16, 1, (1,), 1, 255),
    ("rnn", 256, 16, (2,), 16, 128),
    ("rnn", 48, 8, (1,), 4, 255),
])
def test_held_launch(cell, H, B, grid, warps, registers):
    """One program per HELD_ROWS batch rows, a warp per 16 hidden units (padded to a power of two), every register
    a thread's share of the SM allows."""
    launch = held_launch(cell, torch.zeros(1, B, 1, dtype=torch.bfloat16), H, B)
    assert launch.regime == "held" and not launch.tiled and launch.grid == grid
    assert launch.meta == {"BLOCK_H": max(16, 1 << (H - 1).bit_length()), "num_warps": warps, "maxnreg": registers}
    assert HELD_ROWS * grid[0] >= B


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_held_launch_splits_beyond_one_program(exchange):
    """Beyond MAX_HELD_H the LSTM's and GRU's programs split the units, HELD_SPLIT_UNITS each, 8 warps, and exchange h
    as the split vector regime's do (a cooperative launch) or, a cluster a batch tile, through each other's shared
    memory (force_exchange picks the exchange)."""
    with force_exchange(exchange):
        launch = held_launch("gru", torch.zeros(1, 11, 1, dtype=torch.bfloat16), 256, 11)
    clustered = exchange.startswith("cluster")  # a grid of batch tiles, each a cluster of its programs: no
    # cooperative launch
    assert (launch.grid, launch.cluster) == (((2,), 8) if clustered else ((2, 256 // HELD_SPLIT_UNITS), 1))
    assert launch.meta == {"BLOCK_U": HELD_SPLIT_UNITS, "BLOCK_K": 256, "CHAINS": HELD_SPLIT_CHAINS, "num_warps": 8,
                           "maxnreg": 255,
                           "GRID_SYNC": True, "launch_cooperative_grid": not clustered,
                           "FLAGGED": exchange == "flagged", "CLUSTER": CLUSTER_EXCHANGES.get(exchange, 0)}


def test_forced_held_regime_refuses_what_it_cannot_run():
    """Forced, the regime names why it cannot run a launch and what to do; a backward runs where the dispatcher puts
    it (the regime is forward-only)."""
    x16 = torch.zeros(1, 4, 1, dtype=torch.bfloat16)
    infer = {"inference": True}
    cases = [
        (("lstm", x16, 64, 4), infer, r"Gluon, which runs on CUDA only \(not under the Triton interpreter\)"),
        (("lstm", torch.zeros(1, 4, 1), 64, 4), infer, r"fp16 or bf16 \(tensor cores\); got torch.float32"),
        (("gru", x16, 100, 4), infer, r"multiples of 16 up to 128, split over programs multiples of 32 up to 256; got "
                                      r"hidden_size=100"),
        (("lstm", x16, MAX_HELD_H["lstm"] + 16, 4), infer, r"got hidden_size=144"),  # split: multiples of 32
        (("lstm", x16, 288, 4), infer, r"up to 256; got hidden_size=288"),
        (("rnn", x16, 272, 4), infer, r"multiples of 16 up to 256; got hidden_size=272"),
        (("gru", x16, 256, 4), infer, r"Gluon, which runs on CUDA only"),
        (("lstm", x16, 64, 4), {"proj": True, **infer}, r"no projection"),
        (("gru", x16, 64, 4), {}, r"keep nothing for a backward"),
    ]
    with force_regime("held"):
        for args, kwargs, message in cases:
            pattern = r"the held regime cannot run this (LSTM|GRU|RNN): .*" + message + r".*Leave the regime to the"
            with pytest.raises(NotImplementedError, match=pattern):
                plan(*args, **kwargs)
        assert plan("lstm", x16, 64, 4, backward=True).regime == "persistent"


def test_cluster_exchange_refuses_other_devices(monkeypatch):
    """The cluster exchanges' PTX is compiled for sm_90 only, and its clusters hold at most MAX_CLUSTER programs (the
    portable size): elsewhere it says so (the barrier's launch asks only that its programs fit on the device)."""
    x16 = torch.zeros(1, 4, 1, dtype=torch.bfloat16)
    with force_exchange("cluster"):
        launch = held_launch("lstm", x16, 256, 4)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    assert dispatch._split_held_problem(x16, launch) == "the cluster exchange is compiled for sm_90 only; got sm_80"
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    assert dispatch._split_held_problem(x16, launch) is None
    wide = dataclasses.replace(launch, cluster=dispatch.MAX_CLUSTER * 2)
    assert "more than MAX_CLUSTER (8)" in dispatch._split_held_problem(x16, wide)


def test_dispatcher_picks_the_held_regime_only_up_to_auto_held_h(monkeypatch):
    """The dispatcher takes the held regime where AUTO_HELD_H allows (the LSTM and GRU up to 128, timed on an
    H200; the split kernels at 256 wait for a GPU to check them again, since they changed) and it can run (here on
    a pretend GPU): inference forwards of at most MAX_VECTOR_B rows; never a training forward, a backward, another
    cell, a larger size or batch. Without a GPU the vector regime runs them."""
    x16, x64 = torch.zeros(1, 4, 1, dtype=torch.bfloat16), torch.zeros(1, 64, 1, dtype=torch.bfloat16)
    assert dispatch.AUTO_HELD_H == {"lstm": 128, "gru": 128}
    assert plan("lstm", x16, 64, 4, inference=True).regime == "vector"
    monkeypatch.setattr(dispatch, "_held_problem", lambda cell, x, H, B, proj, inference: None if inference else "no")
    assert plan("lstm", x16, 128, 4, inference=True) == held_launch("lstm", x16, 128, 4)
    assert plan("gru", x16, 64, 4, inference=True) == held_launch("gru", x16, 64, 4)
    assert plan("lstm", x16, 64, 4).regime == "persistent"  # a training forward
    assert plan("lstm", x16, 64, 4, backward=True).regime == "persistent"
    assert plan("rnn", x16, 64, 4, inference=True).regime == "vector"
    assert plan("lstm", x16, 256, 4, inference=True).regime != "held"
    assert plan("lstm", x64, 64, 64, inference=True).regime != "held"


def test_layer_forced_into_the_held_regime_without_a_gpu():
    """A layer forced into the held regime where it cannot run says so, rather than running elsewhere."""
    lstm = rnnlab.LSTM(8, 64, backend="triton").to(torch.bfloat16)
    with torch.no_grad(), force_regime("held"), pytest.raises(NotImplementedError, match=r"held regime cannot run"):
        lstm(torch.randn(5, 2, 8, dtype=torch.bfloat16))


def test_fused_forwards_bind_to_the_held_kernels():
    """_lstm_forward, _gru_forward and _rnn_forward (packed and reverse among them) call their held kernels as on
    CUDA, and Triton binds, specializes and compiles each for sm_90 without launching it (tests/held_binding.py, in
    a process without TRITON_INTERPRET): at H = 64 one program holds the rows' every unit (4 warps, shared memory for
    h alone: 64 x 8 bf16); at 256 the LSTM and GRU split over programs, with each exchange: 8 warps, h and the staged
    product (held_staging), a cooperative launch of one program a cluster at the barrier and flagged, and with the
    cluster exchanges a launch of clusters of 8 with the exchange buffer and mbarriers added (held.launch_split)."""
    pytest.importorskip("triton.experimental.gluon.language.nvidia.ampere", reason="the held kernels are Gluon's")
    from rnnlab.kernels.fit import held_staging

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    script = Path(__file__).with_name("held_binding.py")
    proc = subprocess.run([sys.executable, "-W", "ignore", str(script)], capture_output=True, text=True, env=env,
                          timeout=600, check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-1500:]
    compiled = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    single, split = compiled[:3], compiled[3:]
    assert [c["kernel"] for c in single] == ["_lstm_fwd_held_kernel", "_gru_fwd_held_kernel", "_rnn_fwd_held_kernel"]
    assert all(c["num_warps"] == 4 and c["shared"] == 64 * 8 * 2 and not c["cooperative"] for c in single), single
    assert [c["kernel"] for c in split] == ["_lstm_fwd_held_split_kernel", "_gru_fwd_held_split_kernel"] * len(
        EXCHANGES)
    for exchange, (lstm, gru) in zip(EXCHANGES, zip(split[::2], split[1::2], strict=True), strict=True):
        for c in (lstm, gru):
            assert c["num_warps"] == 8 and c["shared"] <= held_staging("lstm_fwd_held_split", 256), c
            if exchange.startswith("cluster"):  # the exchange buffer and two mbarriers added
                padded = -(-c["shared"] // 16) * 16
                assert not c["cooperative"] and c["launched"] == [8, 8, padded + 2 * 256 * HELD_ROWS * 4 + 16], c
            else:
                assert c["cooperative"] and c["launched"] == [8, 1, c["shared"]], c


@pytest.fixture
def interpreted_held(monkeypatch, programs_in_threads):
    """The held kernels under the interpreter (tests/held_interpreted.py), their programs in threads
    (tests/threaded_interpreter.py), and a dispatcher that lets the held regime run here (dispatch._held_problem
    refuses the CPU, the interpreter and fp32)."""
    pytest.importorskip("triton.experimental.gluon.language.nvidia.ampere", reason="the held kernels are Gluon's")
    from held_interpreted import _ClusterPTX, interpreted_kernels, launch_split

    from rnnlab.kernels import held

    for name, kernel in interpreted_kernels().items():
        monkeypatch.setattr(held, name, kernel)
    monkeypatch.setattr(held, "launch_split", launch_split)
    monkeypatch.setattr(dispatch, "_held_problem", lambda *args, **kwargs: None)
    _ClusterPTX.reset()


@pytest.mark.parametrize(("cell", "H", "B"), [("lstm", 48, 11), ("lstm", 16, 1), ("gru", 64, 11), ("gru", 16, 3),
                                              ("rnn_tanh", 48, 11), ("rnn_relu", 32, 2)])
def test_interpreted_held_kernels_match_reference(interpreted_held, cell, H, B):
    """fp32 (h rounded to fp32 before each product, so the kernels' arithmetic is the reference's up to the order
    of sums): two bidirectional layers, packed with unequal lengths (a length-1 row) and batched with initial
    states; B = 11 takes two programs, the second with 5 rows past the batch; H = 48 pads to 64 units."""
    torch.manual_seed(0)
    ref, fused = make_pair(cell, 5, H, torch.float32, backend="triton", num_layers=2, bidirectional=True)
    reference = rnnlab.from_torch(ref, backend="torch")
    for form in ("packed", "batched"):
        x, hx, _ = make_inputs(ref, form, T=9, B=B, dtype=torch.float32, with_state=True, seed=3)
        with force_regime("held"):
            assert plan(cell.split("_")[0], torch.empty(0, B, 1), H, B, inference=True).regime == "held"
            got = infer(fused, x, hx)
        assert_same(got, infer(reference, x, hx), 2e-6, scaled=True)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
def test_interpreted_held_kernels_in_half_precision(interpreted_held, cell):
    """fp16, as the regime runs on a GPU (fp32 state, h rounded to fp16 for each product, fp32 accumulation): against
    float64 on the same rounded inputs within the vector regime's bound (tests/test_vector_regime.py), 2e-3 of each
    output's largest value (measured 3.3e-4 to 3.7e-4, as the vector regime's here), and, as that test asks of
    the vector regime, no more than 1.5 times the persistent regime's error in the same dtype."""
    torch.manual_seed(1)
    ref = make_pair(cell, 5, 48, torch.float64, bidirectional=True)[0]
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(p.to(torch.float16))
    reference = rnnlab.from_torch(ref, backend="torch")
    fused = rnnlab.from_torch(ref, backend="triton").to(torch.float16)
    shape = {"form": "packed", "T": 15, "B": 5, "with_state": True, "seed": 6, "rounded_to": torch.float16}
    want = infer(reference, *make_inputs(ref, dtype=torch.float64, **shape)[:2])
    x, hx, _ = make_inputs(ref, dtype=torch.float16, **shape)
    errors = {}
    for regime in ("held", "persistent"):
        with force_regime(regime):
            errors[regime] = max(relative_errors(infer(fused, x, hx), want))
    assert errors["held"] < 2e-3 and errors["held"] <= 1.5 * errors["persistent"], errors


@pytest.mark.parametrize(("cell", "H", "B", "exchange"), [("lstm", 256, 3, "flagged"), ("lstm", 160, 1, "barrier"),
                                                          ("gru", 256, 11, "barrier"), ("gru", 192, 2, "flagged"),
                                                          ("lstm", 256, 11, "cluster"), ("gru", 160, 3, "cluster"),
                                                          ("gru", 256, 11, "cluster-async"),
                                                          ("lstm", 160, 3, "cluster-async")])
def test_interpreted_held_split_kernels_match_reference(interpreted_held, cell, H, B, exchange):
    """Split over programs of 32 units (H / 32 a batch tile, in threads), exchanging h at the barrier, as flagged
    words or, a cluster a batch tile, through each other's shared memory at the cluster's barrier or counted by
    mbarriers (their PTX emulated: held_interpreted's _ClusterPTX, whose unwritten words are NaN): fp32 to 2e-6,
    bidirectional and packed with unequal lengths; B = 11 takes two batch tiles (two clusters); H = 160 pads the
    exchanged h to 256 units."""
    torch.manual_seed(0)
    ref, fused = make_pair(cell, 5, H, torch.float32, backend="triton", bidirectional=True)
    reference = rnnlab.from_torch(ref, backend="torch")
    x, hx, _ = make_inputs(ref, "packed", T=6, B=B, dtype=torch.float32, with_state=True, seed=3)
    tiles, parts = (B + HELD_ROWS - 1) // HELD_ROWS, H // HELD_SPLIT_UNITS
    with force_regime("held"), force_exchange(exchange):
        launch = plan(cell, torch.empty(0, B, 1), H, B, inference=True)
        clustered = exchange.startswith("cluster")
        assert (launch.grid, launch.cluster) == (((tiles,), parts) if clustered else ((tiles, parts), 1))
        assert (launch.meta["FLAGGED"], launch.meta["CLUSTER"]) == (exchange == "flagged",
                                                                    CLUSTER_EXCHANGES.get(exchange, 0))
        got = infer(fused, x, hx)
    assert_same(got, infer(reference, x, hx), 2e-6, scaled=True)


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_held_exchange_floor_under_the_interpreter(interpreted_held, monkeypatch, exchange):
    """benchmarks/held_floor.py's floor for the split held regime (latency.py's ``exchange`` column), with each
    exchange, its programs in threads (PTX emulated): every step writes each row's maximum of the h it read (the
    units past H read as 0), so every output is its row's largest h_0 value or 0; H = 160, B = 11 (two tiles)."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import held_floor
    from held_interpreted import interpreted_kernels, launch_split

    kernel = interpreted_kernels(held_floor._held_exchange_kernel)["_held_exchange_kernel"]
    monkeypatch.setattr(held_floor, "_held_exchange_kernel", kernel)
    monkeypatch.setattr(held_floor, "launch_split", launch_split)
    T, B, H = 4, 11, 160
    x = torch.empty(T, B, 1)
    with force_exchange(exchange):
        launch = held_launch("lstm", x, H, B)
    h0 = torch.randn(B, H, generator=torch.Generator().manual_seed(0))
    Y = held_floor.held_exchange_call(launch, x, H, h0)()
    assert torch.equal(Y, h0.max(dim=1, keepdim=True).values.clamp(min=0).expand(T, B, H))
