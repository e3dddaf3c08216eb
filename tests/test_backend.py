"""What backend="auto" runs, and that every backend value reaches the right implementation."""

import pytest
import torch

import rnnlab
from rnnlab.layers import resolve_backend


@pytest.mark.parametrize(
    ("mode", "dtype", "expected"),
    [
        ("LSTM", torch.float32, "native"),
        ("GRU", torch.float32, "torch"),
        ("RNN_TANH", torch.float64, "torch"),
        ("RNN_RELU", torch.float32, "torch"),
        ("GRU", torch.bfloat16, "native"),
    ],
)
def test_auto_on_cpu(mode, dtype, expected):
    assert resolve_backend("auto", mode, torch.zeros(1, dtype=dtype)) == expected


@pytest.mark.parametrize("backend", ["torch", "native"])
def test_explicit_backends_are_kept(backend):
    assert resolve_backend(backend, "GRU", torch.zeros(1)) == backend


@pytest.mark.parametrize(("backend", "runs_scan"), [("torch", True), ("native", False), ("auto", True)])
def test_backend_reaches_implementation(backend, runs_scan, monkeypatch):
    calls = []
    real = rnnlab.recurrence.gru_scan
    monkeypatch.setattr(rnnlab.recurrence, "gru_scan", lambda *a: calls.append(1) or real(*a))
    rnnlab.GRU(3, 4, backend=backend)(torch.randn(5, 2, 3))
    assert bool(calls) == runs_scan
