"""The CPU fast paths inside the pure-PyTorch recurrence, each against torch.nn and the plain route:
oneDNN products (with reordered step weights) versus torch.mm."""

from pathlib import Path

import pytest
import torch

from parity import CELLS, assert_same, make_inputs, make_pair, run
from rnnlab.recurrence import gemm


@pytest.fixture(params=["onednn", "mm"])
def gemm_route(request, monkeypatch):
    """Force every product of the recurrence through one route, whatever its size."""
    if request.param == "onednn":
        if gemm._ONEDNN is None or not torch.backends.mkldnn.is_available():
            pytest.skip("this PyTorch build has no oneDNN linear op")
        monkeypatch.setattr(gemm, "MIN_ONEDNN_MACS", 0)
        monkeypatch.setattr(gemm, "MIN_PACKED_STEPS", 0)
        yield
    else:
        with gemm.use_onednn(False):
            yield


@pytest.mark.parametrize("form", ["batched", "packed"])
@pytest.mark.parametrize("cell", CELLS)
def test_gemm_routes_match_torch_nn(gemm_route, cell, form):
    torch.manual_seed(0)
    ref, mine = make_pair(cell, 6, 9, torch.float32, num_layers=2, bidirectional=True)
    x, hx, leaves = make_inputs(ref, form, T=7, B=5, dtype=torch.float32, with_state=True, seed=2)
    assert_same(run(mine, x, hx, leaves), run(ref, x, hx, leaves), 1e-5)


def test_onednn_route_is_taken_for_large_products(monkeypatch):
    if gemm._ONEDNN is None:
        pytest.skip("this PyTorch build has no oneDNN linear op")
    calls = []
    real = gemm._ONEDNN
    monkeypatch.setattr(gemm, "_ONEDNN", lambda *args: calls.append(args[1].is_mkldnn) or real(*args))
    w = torch.randn(1024, 256)
    x = torch.randn(64, 256)
    with gemm.use_onednn(True):  # the default on AMD processors only
        gemm.linear(torch.randn(64, 256), w)
        step = gemm.StepWeight(w, rows=64, steps=100)
        acc = torch.zeros(64, 1024)
        torch.testing.assert_close(step.addmm_(acc, x), x @ w.t(), atol=1e-4, rtol=1e-5)
        assert calls == [False, True]  # a plain weight, then the reordered step weight
        calls.clear()
        gemm.linear(torch.randn(2, 8), torch.randn(8, 8))  # tiny: MKL is faster
        gemm.StepWeight(w, rows=64, steps=2)(x)  # short sequence: no reorder
    with gemm.use_onednn(False):
        gemm.linear(torch.randn(64, 256), w)
    assert calls == []


def test_onednn_is_the_default_on_amd_processors_only():
    cpuinfo = Path("/proc/cpuinfo")
    amd = cpuinfo.exists() and "AuthenticAMD" in cpuinfo.read_text()
    assert gemm._enabled == amd
