"""The kernels' offsets into buffers past 2^31 elements, without allocating one: the jit helpers that compute
them (kernels/common.py) run in a small kernel that stores what they return. The interpreter computes in the
arguments' own int32, as the compiled kernels do, so a product that wraps there wraps here."""

import pytest
import torch

from parity import FUSED_DEVICE, needs_fused_device

triton = pytest.importorskip("triton")  # optional where it has no wheel; rnnlab.kernels needs it
import triton.language as tl  # noqa: E402

from rnnlab.kernels.common import plane, vector_step, weight_offsets  # noqa: E402

pytestmark = needs_fused_device


@triton.jit
def _offsets(OUT, s, length, b, B, N, row0, ld, REVERSE: tl.constexpr, TRANSPOSE: tl.constexpr):
    """OUT[0]: vector_step's row of batch row ``b`` at step ``s``; OUT[1]: plane(B, N); OUT[2:6]: the (2, 2)
    weight_offsets of rows row0 + (0, 1) by columns (0, 1), row-major, as the tiled regime streams them (WIDE)."""
    two = tl.arange(0, 2)
    row, _ = vector_step(s, length, tl.cast(b, tl.int64), B, two < 2, REVERSE)
    tl.store(OUT, row)
    tl.store(OUT + 1, plane(B, N))
    tl.store(OUT + 2 + two[:, None] * 2 + two[None, :], weight_offsets(row0, two, two, ld, TRANSPOSE, True))


def _run(s, length, b, B, N, row0, ld, reverse, transpose):
    out = torch.zeros(6, dtype=torch.int64, device=FUSED_DEVICE)
    _offsets[(1,)](out, s, length, b, B, N, row0, ld, REVERSE=reverse, TRANSPOSE=transpose)
    return out.tolist()


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_vector_rows_past_2_31(reverse):
    """Row t * B + b of a (T, B, .) buffer at t = 2^27, B = 16: 2^31 + b, which int32 would make negative."""
    t, B, b = 2**27, 16, 5
    s, length = (0, t + 1) if reverse else (t, t + 1)
    assert _run(s, length, b, B, 1, 0, 1, reverse, True)[0] == t * B + b


def test_planes_past_2_31():
    """A (B, N) plane of 65536 x 32768 elements: the distance between time steps (load_previous) and ping-pong
    slots (the tiled forwards) is 2^31."""
    assert _run(0, 1, 0, 65536, 32768, 0, 1, False, True)[1] == 2**31


@pytest.mark.parametrize("transpose", [False, True], ids=["rows", "transposed"])
def test_weight_offsets_past_2_31(transpose):
    """Rows 2^16 and 2^16 + 1 of a weight with 2^16 columns (an LSTM's W_hh at H = 16384 has 2^30 elements; at
    H = 23171, 2^31), streamed by the tiled regime, start past 2^32."""
    row0, ld = 2**16, 2**16
    offsets = _run(0, 1, 0, 1, 1, row0, ld, False, transpose)[2:]
    # entry (i, j): W[row0 + j, i] when transposed, else W[row0 + i, j]
    expected = [(row0 + (j if transpose else i)) * ld + (i if transpose else j) for i in (0, 1) for j in (0, 1)]
    assert offsets == expected
