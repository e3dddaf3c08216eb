"""The fused Triton LSTM, GRU and RNN (tanh, relu) against the pure-PyTorch reference, run on the CPU
by the Triton interpreter (TRITON_INTERPRET=1, set in conftest.py when no GPU is present): outputs,
final states and every gradient, sizes off the block grid (T = 7 and 63; H = 20 in fp32, 20, 30 and 50
in fp16/bf16, within the persistent regime's limits), both directions, packed input with unequal
lengths, and fp16/bf16 with tolerances measured against float64.

bf16 ``tl.dot`` is wrong under the interpreter, so interpreted kernels multiply in fp32 (DOT_F32); on a
GPU bf16/fp16 products run on tensor cores with fp32 accumulation.
"""

import pytest
import torch

import rnnlab
from parity import assert_same, make_inputs, make_pair, run

triton = pytest.importorskip("triton")
pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available() and __import__("os").environ.get("TRITON_INTERPRET") != "1",
    reason="needs a GPU or TRITON_INTERPRET=1",
)
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


CELLS = ["lstm", "gru", "rnn_tanh", "rnn_relu"]


def _pair(H, dtype=torch.float32, cell="lstm", **kwargs):
    """(reference rnnlab module, fused rnnlab module, torch.nn module), all with the same weights."""
    ref, fused = make_pair(cell, 5, H, dtype, backend="triton", **kwargs)
    reference = rnnlab.from_torch(ref, backend="torch")
    return reference.to(DEVICE), fused.to(DEVICE), ref


@pytest.mark.parametrize("form", ["batched", "packed"])
@pytest.mark.parametrize(("T", "H"), [(7, 20), (63, 20)])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
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
    assert_same(run(fused, x, hx, leaves), run(ref.to(DEVICE), x, hx, leaves), 2e-5)


@pytest.mark.parametrize(("dtype", "bound"), [(torch.float16, 4e-3), (torch.bfloat16, 3e-2)], ids=["fp16", "bf16"])
@pytest.mark.parametrize(("cell", "H"), [("lstm", 20), ("lstm", 50), ("gru", 20), ("gru", 30), ("rnn_tanh", 50),
                                         ("rnn_relu", 20)])
def test_fused_half_precision(cell, dtype, bound, H):
    """Errors relative to the largest value of each output and gradient, against float64; the fused
    kernel keeps fp32 state, so it must not be worse than the reference path in the same dtype."""
    torch.manual_seed(2)
    ref, fused = make_pair(cell, 5, H, torch.float64, backend="triton", bidirectional=True)
    shape = {"form": "packed", "T": 15, "B": 5, "with_state": True, "seed": 6}
    want = run(ref, *make_inputs(ref, dtype=torch.float64, **shape))
    fused = fused.to(DEVICE, dtype)
    got = run(fused, *make_inputs(ref, dtype=dtype, device=DEVICE, **shape))
    errors = [((a.double().cpu() - b).abs().max() / b.abs().max()).item() for a, b in zip(got, want, strict=True)]
    values = 3 if cell == "lstm" else 2  # relu's gradients jump at zero: only its values are bounded
    assert max(errors[:values] if cell == "rnn_relu" else errors) < bound, errors


def test_unsupported_configurations_say_so():
    _, fused, _ = _pair(200)
    with pytest.raises(NotImplementedError, match=r"LSTM hidden sizes up to 32 for torch.float32 .* hidden_size=200"):
        fused(torch.randn(3, 2, 5, device=DEVICE))
    proj = rnnlab.LSTM(5, 20, proj_size=4, backend="triton").to(DEVICE)
    with pytest.raises(NotImplementedError, match=r"no LSTM proj_size yet"):
        proj(torch.randn(3, 2, 5, device=DEVICE))
