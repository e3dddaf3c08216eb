"""What backend="auto" runs, and that every backend value reaches the right implementation."""

import subprocess
import sys

import pytest
import torch

import rnnlab
from rnnlab.layers import resolve_backend

CPU32 = torch.zeros(1)


@pytest.mark.parametrize(
    ("mode", "x", "flags", "expected"),
    [
        ("GRU", CPU32, {"training": True}, "torch"),
        ("RNN_TANH", torch.zeros(1, dtype=torch.float64), {"training": True}, "torch"),
        ("RNN_RELU", CPU32, {"training": True}, "torch"),
        ("LSTM", CPU32, {"training": True}, "native"),  # oneDNN's fused LSTM
        ("LSTM", CPU32, {"training": True, "packed": True}, "torch"),
        ("LSTM", CPU32, {"training": True, "proj": True}, "torch"),
        ("GRU", CPU32, {"training": False}, "native"),
        ("GRU", torch.zeros(1, dtype=torch.bfloat16), {"training": True}, "native"),
    ],
)
def test_auto_on_cpu(mode, x, flags, expected):
    assert resolve_backend("auto", mode, x, **flags) == expected


@pytest.mark.parametrize("backend", ["torch", "native"])
def test_explicit_backends_are_kept(backend):
    assert resolve_backend(backend, "GRU", CPU32, training=True) == backend


@pytest.mark.parametrize(
    ("backend", "grad", "runs_scan"),
    [("torch", False, True), ("native", True, False), ("auto", True, True), ("auto", False, False)],
)
def test_backend_reaches_implementation(backend, grad, runs_scan, monkeypatch):
    calls = []
    real = rnnlab.recurrence.gru_scan
    monkeypatch.setattr(rnnlab.recurrence, "gru_scan", lambda *a: calls.append(1) or real(*a))
    with torch.set_grad_enabled(grad):
        rnnlab.GRU(3, 4, backend=backend)(torch.randn(5, 2, 3))
    assert bool(calls) == runs_scan


def test_auto_under_torch_func_runs_the_native_kernel():
    """torch.func.grad over a training GRU, which "auto" would otherwise run on rnnlab's path (whose
    autograd.Functions are not written for functorch transforms): the same gradients as torch.nn's."""
    layer = rnnlab.GRU(3, 4)
    ref = torch.nn.GRU(3, 4)
    ref.load_state_dict(layer.state_dict())
    x = torch.randn(5, 2, 3)

    def grads(module):
        def loss(params):
            return torch.func.functional_call(module, params, (x,))[0].pow(2).sum()

        return torch.func.grad(loss)(dict(module.named_parameters()))

    got, want = grads(layer), grads(ref)
    assert all(torch.equal(got[name], want[name]) for name in want)


def test_native_backend_takes_packed_input_as_it_is(monkeypatch):
    """Validation does not pad a PackedSequence: only rnnlab's own path converts it to its layout."""
    def refuse(*args, **kwargs):
        raise AssertionError("the native path padded its packed input")

    monkeypatch.setattr(rnnlab.inputs, "pad_packed_sequence", refuse)
    packed = torch.nn.utils.rnn.pack_sequence([torch.randn(n, 3) for n in (4, 2)])
    y, _ = rnnlab.GRU(3, 4, backend="native")(packed)
    assert y.data.shape == (6, 4)
    with pytest.raises(AssertionError, match="padded"):
        rnnlab.GRU(3, 4, backend="torch")(packed)


# run in a fresh process, where nothing has imported rnnlab.cuda_choice or torch._dynamo yet
CUDA_CHOICE_UNDER_COMPILE = """
import sys
import torch
from rnnlab import layers

assert "torch._dynamo" not in sys.modules and "rnnlab.cuda_choice" not in sys.modules, "imported with rnnlab"
calls = []
def triton_installed():  # the choice's first step on an fp16/bf16 LSTM; False ends it
    calls.append(1)
    return False
layers.triton_installed = triton_installed
class CudaLike:  # what the choice reads of a CUDA tensor
    is_cuda, dtype, device = True, torch.bfloat16, torch.device("cuda", 0)
def f(x, like):
    return x + 1 if layers.fused_beats_cudnn("LSTM", like, 64, 16, False) else x - 1
x = torch.zeros(2)
compiled = torch.compile(f, fullgraph=True, backend="eager")
assert torch.equal(compiled(x, CudaLike()), x - 1) and torch.equal(compiled(x, CudaLike()), x - 1)
assert len(calls) == 1, f"the choice ran {len(calls)} times for two calls"  # traced, it would run at every call
assert torch.equal(compiled(x.to(torch.bfloat16), x), x - 1)  # a CPU tensor: no fused kernels
print("ok")
"""


def test_the_cuda_choice_is_a_constant_under_torch_compile():
    """``import rnnlab`` leaves out torch._dynamo (1.2 s), which marking auto's CUDA choice a constant for
    torch.compile imports: rnnlab.cuda_choice is imported at the first CUDA call, here while Dynamo traces.
    torch.compile(fullgraph=True) still takes the choice as a constant (no graph break): it runs once, as the
    function compiles, not at each call."""
    proc = subprocess.run([sys.executable, "-c", CUDA_CHOICE_UNDER_COMPILE], capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]
