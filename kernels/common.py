"""Jit helpers and host-side gradient helpers shared by the kernels."""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch.torch_version import TorchVersion
from triton.language.extra import libdevice

from ..recurrence.common import input_grads, linear_grads, normalised_inputs
from ..recurrence.schedule import Schedule, lengths_of
from ..recurrence.variants import EPS
from .dispatch import INTERPRET

# Compiled kernels take fp32 exponentials and divisions in the flush-to-zero forms (ex2.approx.ftz.f32 and
# div.approx.ftz.f32, through libdevice): ex2.approx.f32 and div.full.f32, what tl.exp and "/" give, come
# with 3 and 4 more instructions each to handle results and divisors in the subnormal range (sm_90 SASS:
# 61 of the 232 instructions of a persistent bf16 LSTM forward step at H = 64). In sigmoid and tanh they
# differ only there: 1 + e^-x is the same number when e^-x is subnormal, and a sigmoid below 2^-126 comes
# out 0. The interpreter, which runs neither, takes tl.exp and "/" (what the tests check the kernels' numbers
# with on the CPU; tests/test_cuda.py checks the compiled ones against cuDNN).
FAST_MATH: tl.constexpr = tl.constexpr(not INTERPRET)
NORM_EPS: tl.constexpr = tl.constexpr(EPS)  # layer norm's epsilon
TANH_SERIES_BELOW: tl.constexpr = tl.constexpr(0.0625)  # fp32 |x| below which tanh takes its series (_tanh_series)
# tl.dot takes fp64 operands from Triton 3.5; before (Triton 3.4, torch 2.8's), dot() multiplies them out and sums.
FP64_DOT: tl.constexpr = tl.constexpr(TorchVersion(triton.__version__) >= "3.5")


def projection_grads(d_input_side, d_hidden_side, x, h0, Y, w_ih, w_hh, batch_sizes, reverse, need_x, need_w_ih,
                     need_w_hh, drop=None):
    """dx, dW_ih and dW_hh in the accumulator type (that of the gate gradients: fp32, or fp64 for fp64
    input) from a fused backward's gate gradients, as single GEMMs over all timesteps:
    d_input_side/d_hidden_side (T, B, G) are the pre-activation gradients on the input and hidden sides
    (the same tensor except for GRU; with layer norm d_hidden_side is its input's); without ``w_ih`` x held the
    input projections and dx is d_input_side. The hidden states entering each step come from Y and h0, times the
    recurrent dropout mask ``drop`` (B, H) if given. For fp16/bf16 input the GEMMs take its operands as they
    are (split_linear_grads)."""
    T, B, _ = x.shape
    acc = d_input_side.dtype
    grads = linear_grads if acc == x.dtype else split_linear_grads
    dx, dw_ih = input_grads(d_input_side, x, w_ih if w_ih is None else w_ih.to(x.dtype), need_x, need_w_ih, grads)
    h_prev = Schedule(T, B, batch_sizes, reverse).all_incoming(Y, h0)  # (T, B, H)
    h_prev = (h_prev if drop is None else h_prev * drop).to(x.dtype)
    _, dw_hh = grads(d_hidden_side, h_prev, w_hh.to(x.dtype), False, need_w_hh)
    return dx, dw_ih, dw_hh


def variant_args(drop: torch.Tensor | None, zone: torch.Tensor | None, zone_c: torch.Tensor | None = None,
                 cell_state: bool = False) -> dict:
    """The kernels' keyword arguments for a cell variant's draws (rnnlab.recurrence.variants.Masks): recurrent
    dropout's mask D (B, H) and DROP, zoneout's weights Z and ZONE (h's) and, with a ``cell_state`` (LSTM),
    ZC and ZONE_C (c's), and ZS: whether they are training's per-step weights (T, B, F) or evaluation's (F,).
    (Layer norm's LN and NORM go to the persistent kernels alone.) The kernels index them as contiguous: a view's
    strides would be ignored."""
    drop, zone, zone_c = (None if t is None else t.contiguous() for t in (drop, zone, zone_c))
    args = {"D": drop, "DROP": drop is not None, "Z": zone, "ZONE": zone is not None}
    if cell_state:
        args |= {"ZC": zone_c, "ZONE_C": zone_c is not None}
    args["ZS"] = any(z is not None and z.dim() == 3 for z in (zone, zone_c))
    return args


def norm_args(norm: torch.Tensor | None) -> dict:
    """The persistent kernels' layer-norm arguments: its parameters LN (fused_norm's) and NORM."""
    return {"LN": norm, "NORM": norm is not None}


def fused_norm(x: torch.Tensor, w_ih: torch.Tensor, norms: dict[str, torch.Tensor] | None, keys: tuple[str, ...]
               ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """rnnlab.recurrence.common.normalised_inputs for the fused ops: the layer-norm parameters ``keys`` the kernels
    apply concatenated into one tensor (None without layer norm)."""
    x, w_ih, parts = normalised_inputs(x, w_ih, norms, keys)
    return x, w_ih, torch.cat(parts) if parts else None


def norm_grads(d_gates: torch.Tensor, RH: torch.Tensor, d_state: torch.Tensor | None = None) -> torch.Tensor:
    """The gradients of a fused kernel's layer-norm parameters: the recurrent gains' (G,), the sum over steps
    and rows of the gradients reaching the normalised products (d_gates (T, B, G)) times those (RH, stored),
    then (LSTM) c's gain and bias, summed over the backward's programs (d_state (programs, 2, H))."""
    d_gain = (d_gates * RH).sum((0, 1))
    return d_gain if d_state is None else torch.cat((d_gain, d_state.sum(0).reshape(-1)))


def split_linear_grads(d_out, inputs, weight, need_input, need_weight):
    """linear_grads (``out = inputs @ weight.T`` over all timesteps) for fp32 ``d_out`` (T, B, G) and fp16/bf16
    ``inputs`` (T, B, K) and ``weight`` (G, K), in fp32: d_out is split into two parts in the inputs' dtype
    (split_half), each multiplied by the others as they are with fp32 accumulation (mm_to_fp32), and the
    products added. On a GPU that runs on tensor cores where fp32 GEMMs would not (in fp32 they took most
    of a bf16 training step on an H100: benchmarks/README.md), as accurate as fp32 GEMMs over the
    half-precision operands (d_out kept to about 2^-16 of itself in bf16, 2^-22 in fp16)."""
    G, K = weight.shape
    hi, lo = (part.reshape(-1, G) for part in split_half(d_out, inputs.dtype))  # (T * B, G) each
    d_inputs = mm_to_fp32(hi, weight).add_(mm_to_fp32(lo, weight)).view(*inputs.shape[:-1], K) if need_input else None
    flat = inputs.reshape(-1, K).t()  # (K, T * B)
    d_weight = mm_to_fp32(flat, hi).add_(mm_to_fp32(flat, lo)).t() if need_weight else None
    return d_inputs, d_weight


def split_half(t: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 ``t`` as ``hi + lo`` in ``dtype`` (fp16/bf16): hi is t rounded, lo what that left, rounded."""
    hi = t.to(dtype)
    return hi, (t - hi).to(dtype)  # t - hi promotes to fp32 without a copy of hi


def mm_to_fp32(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b for fp16/bf16 ``a`` and ``b`` in fp32, accumulated in fp32: cuBLAS's GEMM with fp32 output on CUDA
    (torch.mm's out_dtype), elsewhere the same products (exact in fp32) in an fp32 GEMM."""
    if a.is_cuda:
        return torch.mm(a, b, out_dtype=torch.float32)
    return a.float() @ b.float()


def row_major_copy(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A row-major copy of ``t`` in ``dtype`` for a kernel to update in place, step by step: a plain copy of a
    transposed view (a loss that read h_n through ``.mT``) would keep its strides, which the kernels ignore."""
    return t.to(dtype, copy=True, memory_format=torch.contiguous_format)


def ping_pong(state: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A (2, B, H) buffer in ``dtype`` (the accumulator type, or dispatch.stored's for what the products
    read) for the tiled regime's state exchange, with ``state`` (B, H) in slot 0."""
    buffer = state.new_zeros((2, *state.shape), dtype=dtype)
    buffer[0] = state
    return buffer


def lengths_from(batch_sizes: list[int] | None, T: int, B: int, device) -> torch.Tensor:
    """Per-row sequence lengths (B,) int32 from PackedSequence-style batch sizes (None: all T)."""
    if batch_sizes is None:
        return torch.full((B,), T, dtype=torch.int32, device=device)
    return lengths_of(batch_sizes, B).to(device=device, dtype=torch.int32)


@triton.jit
def _exp(x):
    """e^x (FAST_MATH's form for fp32 when compiled)."""
    if FAST_MATH and x.dtype == tl.float32:
        return libdevice.fast_expf(x)
    return tl.exp(x)


@triton.jit
def _divide(a, b):
    """a / b (FAST_MATH's form for fp32 when compiled)."""
    if FAST_MATH and b.dtype == tl.float32:
        return libdevice.fast_dividef(a, b)
    return a / b


@triton.jit
def sigmoid(x):
    """1 / (1 + exp(-x)), on the exponential and division below (flush-to-zero when compiled)."""
    return _divide(1.0, 1.0 + _exp(-x))


@triton.jit
def _tanh_series(x):
    """tanh(x) as x - x^3/3 + 2x^5/15, for fp32 |x| < 1/16 (within 4e-9 of tanh(x) relative there), where
    2 sigmoid(2x) - 1 and 1 - e^-2|x| keep an absolute error of about 1e-7 only: 1e-2 of tanh(x) at 1e-5, and
    at most 3e-6 from 1/16 up. Four products and a select a call, off the critical path (the exponential and the
    division): the LSTM's held step at H = 128 issues 371 instructions a warp with it, 322 without (fit.py --loop,
    sm_90, Triton 3.9; 393 and 345 with 3.6), and Triton 3.6 spills a few vector-regime configurations it fit
    before (README). A degree-3 series up to 1/32 spilled alike."""
    x2 = x * x
    return x + x * x2 * (-0.3333333333 + 0.1333333333 * x2)


@triton.jit
def tanh(x):
    """tanh(x) as 2 sigmoid(2x) - 1 (libdevice's tanh is unavailable under the interpreter), in fp32 near 0 from
    its series (_tanh_series); fp64's absolute error, about 1e-16, keeps the relative accuracy further in."""
    y = 2.0 * sigmoid(2.0 * x) - 1.0
    if x.dtype == tl.float32:
        y = tl.where(tl.abs(x) < TANH_SERIES_BELOW, _tanh_series(x), y)
    return y


@triton.jit
def sigmoid_tanh(a, b):
    """sigmoid(a) * tanh(b) with one division where the two functions take two: sign(b) (1 - e^-2|b|) /
    ((1 + e^-a) (1 + e^-2|b|)). Divisions (reciprocals) and exponentials share the special-function units,
    16 results a clock an SM: the LSTM cell takes 8 a unit this way instead of 10. The numerator stays
    within (-1, 1), so an infinite e^-a (a below about -88) gives 0, as sigmoid(a) does. In fp32 near 0 the
    numerator is tanh(b) (1 + e^-2|b|) from tanh's series, as in tanh."""
    e = _exp(-2.0 * tl.abs(b))
    tanh_num = tl.where(b < 0.0, e - 1.0, 1.0 - e)  # tanh(b) (1 + e)
    if b.dtype == tl.float32:
        tanh_num = tl.where(tl.abs(b) < TANH_SERIES_BELOW, _tanh_series(b) * (1.0 + e), tanh_num)
    return _divide(tanh_num, (1.0 + _exp(-a)) * (1.0 + e))


@triton.jit
def zone_weight(Z, out, cols, ZS: tl.constexpr, mask, ACC: tl.constexpr):
    """A (BB, BH) tile's zoneout weights (rnnlab.recurrence.variants.Masks), in ACC: in training (ZS) Z (T, B, F)
    at the offsets ``out`` (BB, BH) of the tile's step; in evaluation Z (F,) at ``cols`` (BH,). A constexpr: as a
    run-time factor of the offsets it hid their alignment from the compiler (the wide LSTM backward at H = 1024
    then spilled 16-32 bytes, fit.py, sm_90)."""
    if ZS:
        w = tl.load(Z + out, mask=mask, other=0.0)
    else:
        w = tl.load(Z + cols[None, :] + tl.zeros_like(out), mask=mask, other=0.0)
    return w.to(ACC)


@triton.jit
def lerp(new, prev, w):
    """torch.lerp(new, prev, w) in its own two forms: exactly ``new`` at w = 0 and ``prev`` at w = 1 (zoneout)."""
    return tl.where(w < 0.5, new + w * (prev - new), prev - (prev - new) * (1.0 - w))


@triton.jit
def zone_split(Z, out, cols, ZS: tl.constexpr, mask, d):
    """Zoneout's backward for a tile: of the gradient ``d`` reaching a zoned-out state (h = lerp(h', h_prev, w)),
    the part reaching the cell's new state, (1 - w) d, and the part going straight to the previous one, w d."""
    w = zone_weight(Z, out, cols, ZS, mask, d.dtype)
    return d * (1.0 - w), w * d


@triton.jit
def dropout_tile(D, state, mask, ACC: tl.constexpr):
    """Recurrent dropout's (BB, BH) tile of its scaled mask D (B, H) at the offsets ``state``, in ACC."""
    return tl.load(D + state, mask=mask, other=0.0).to(ACC)


@triton.jit
def recurrent_operand(h, D, state, mask, DROP: tl.constexpr):
    """What W_hh multiplies: the (BB, BH) tile ``h``, times recurrent dropout's mask D (B, H) at ``state`` with
    DROP."""
    if DROP:
        h = h * dropout_tile(D, state, mask, h.dtype)
    return h


@triton.jit
def norm_columns(H, GATES: tl.constexpr, WIDTH: tl.constexpr, BLOCK_H: tl.constexpr):
    """For a tile (BB, WIDTH) in split_gates' layout (gate g's unit u in column g * BLOCK_H + u): each column's
    offset g * H + u into a row of GATES * H gate values (the layer-norm gains, a stored normalised product),
    and whether it holds one of the GATES gates' H units; (WIDTH,) each."""
    c = tl.arange(0, WIDTH)
    gate, unit = c // BLOCK_H, c % BLOCK_H
    return gate * H + unit, (gate < GATES) & (unit < H)


@triton.jit
def normalise(x, valid, N):
    """Layer normalisation of each row of ``x`` (BB, W) over its ``valid`` (W,) columns, N of them: the
    normalised rows (x - mean) / sqrt(var + eps) (zero outside ``valid``), the mean and 1 / sqrt(var + eps),
    (BB, 1) each. Two passes (the mean, then the centred squares), as torch's layer_norm."""
    mean = tl.sum(tl.where(valid[None, :], x, 0.0), axis=1)[:, None] / N
    centred = tl.where(valid[None, :], x - mean, 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(centred * centred, axis=1)[:, None] / N + NORM_EPS)
    return centred * rstd, mean, rstd


@triton.jit
def normalise_grad(d_norm, x_norm, rstd, valid, N):
    """normalise's backward: from the gradient ``d_norm`` (BB, W) reaching the normalised rows ``x_norm`` (after
    any gain: d_norm is the gradient times the gain) and their ``rstd`` (BB, 1), the gradient of the rows
    before normalisation, rstd (d - mean(d) - x_norm mean(d x_norm)), zero outside ``valid``. A row split
    over tiles takes norm_sums of each, then norm_grad_tile with the means of their sums."""
    d = tl.where(valid[None, :], d_norm, 0.0)
    sum_d, sum_dx = norm_sums(d, x_norm)
    return norm_grad_tile(d, x_norm, rstd, sum_d / N, sum_dx / N, valid)


@triton.jit
def norm_sums(d_norm, x_norm):
    """A tile's part of normalise_grad's means: the row sums of ``d_norm`` and ``d_norm * x_norm``, (BB, 1) each
    (both zero outside the valid columns)."""
    return tl.sum(d_norm, axis=1)[:, None], tl.sum(d_norm * x_norm, axis=1)[:, None]


@triton.jit
def norm_grad_tile(d_norm, x_norm, rstd, mean_d, mean_dx, valid):
    """normalise_grad for one tile of a row, given the row's means of d_norm and d_norm * x_norm (norm_sums)."""
    return tl.where(valid[None, :], rstd * (d_norm - mean_d - x_norm * mean_dx), 0.0)


@triton.jit
def batch_tile(LEN, B, H, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr):
    """This program's batch rows (BB,), hidden columns (BH,), their (BB, BH) mask, the (BB, BH) int64 offsets
    of a (B, H) state, and each row's sequence length (BB,)."""
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    cols = tl.arange(0, BLOCK_H)
    rmask = rows < B
    mask = rmask[:, None] & (cols < H)[None, :]
    state = rows[:, None].to(tl.int64) * H + cols[None, :]
    length = tl.load(LEN + rows, mask=rmask, other=0)
    return rows, cols, mask, state, length


@triton.jit
def gate_block(W, gate: tl.constexpr, H, BLOCK_H: tl.constexpr, TRANSPOSE: tl.constexpr, DOT_F32: tl.constexpr):
    """Block ``gate`` of a stacked weight W (gates * H, H) as a (BLOCK_H, BLOCK_H) tile, zero-padded: W_g^T
    when TRANSPOSE (for h @ W_g^T in the forward), else W_g (for dgate @ W_g in the backward); in fp32 when
    DOT_F32, else in W's dtype."""
    r = tl.arange(0, BLOCK_H)
    return weight_slice(W, gate * H, r, r, H, H, H, TRANSPOSE, DOT_F32)


@triton.jit
def batch_rows(LEN, B, BLOCK_B: tl.constexpr):
    """This program's batch rows (BB,) int64 and each row's sequence length (BB,), 0 for rows past B (so
    they are never active)."""
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    length = tl.load(LEN + rows, mask=rows < B, other=0)
    return rows.to(tl.int64), length


@triton.jit
def plane(B, N):
    """The elements (int64) of one (B, N) plane of a (., B, N) buffer: the distance between its time steps or
    ping-pong slots, which passes 2^31 before any one index does."""
    return tl.cast(B, tl.int64) * N


@triton.jit
def weight_offsets(row0, cols, k, ld, TRANSPOSE: tl.constexpr, WIDE: tl.constexpr):
    """The (len(k), BN) offsets of weight_slice's block in a row-major weight (leading dimension ``ld``): of
    W[row0 + cols, k]^T when TRANSPOSE, else of W[row0 + k, cols]; int64 when WIDE (a weight the tiled regime
    streams can pass 2^31 elements: an LSTM's W_hh at H >= 23171), else int32 (the blocks the other regimes hold
    come from weights of at most 4 x 1024^2 elements, their hidden sizes' limits in dispatch.py; in int64 the vector
    regime's loads of them cost registers, spills with Triton 3.6)."""
    if TRANSPOSE:
        rows = row0 + cols[None, :]
        inner = k[:, None]
    else:
        rows = row0 + k[:, None]
        inner = cols[None, :]
    if WIDE:
        rows = rows.to(tl.int64)
    return rows * ld + inner


@triton.jit
def weight_slice(W, row0, cols, k, N, K, ld, TRANSPOSE: tl.constexpr, DOT_F32: tl.constexpr,
                 WIDE: tl.constexpr = False):
    """(len(k), BN) block of the row-major weight W (leading dimension ``ld``), zero outside k < K and
    cols < N: W[row0 + cols, k]^T when TRANSPOSE (for h @ W_g^T, the forward), else W[row0 + k, cols]
    (for dgate @ W_g, the backward); in fp32 when DOT_F32, else in W's dtype; WIDE: see weight_offsets."""
    wmask = (k < K)[:, None] & (cols < N)[None, :]
    w = tl.load(W + weight_offsets(row0, cols, k, ld, TRANSPOSE, WIDE), mask=wmask, other=0.0)
    if DOT_F32:
        w = w.to(tl.float32)
    return w


@triton.jit
def resident_slice(W, row0, N, K, ld, TRANSPOSE: tl.constexpr, BLOCK_H: tl.constexpr, K_RES: tl.constexpr,
                   DOT_F32: tl.constexpr):
    """In the resident regime (K_RES > 0: the reduced length K padded to a power of two), the (K_RES,
    BLOCK_H) weight_slice of this program's own column tile (tile ``program_id(1)``), loaded once before
    the time loop for recurrent_product to use every step; otherwise W itself (nothing is held)."""
    if K_RES:
        cols = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
        w = weight_slice(W, row0, cols, tl.arange(0, K_RES), N, K, ld, TRANSPOSE, DOT_F32)
    else:
        w = W
    return w


@triton.jit
def gate_rows(j, H, GATES: tl.constexpr, BLOCK_H: tl.constexpr):
    """The rows (4 * BLOCK_H,) of a stacked weight W (GATES * H, K) that column tile ``j`` of every gate
    reads, side by side (entry g * BLOCK_H + u: gate g, hidden unit j * BLOCK_H + u), GATES * H (past W's
    rows, so masked) past GATES and H."""
    c = tl.arange(0, 4 * BLOCK_H)
    gate = c // BLOCK_H
    unit = j * BLOCK_H + c % BLOCK_H
    return tl.where((gate < GATES) & (unit < H), gate * H + unit, GATES * H)


@triton.jit
def gates_block(W, j, H, K, GATES: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr, DOT_F32: tl.constexpr):
    """The (BLOCK_K, 4 * BLOCK_H) block of W (GATES * H, K) that column tile ``j`` of every gate multiplies
    in the forward: its gate_rows transposed side by side, zero past them and K; in fp32 when DOT_F32."""
    return weight_slice(W, 0, gate_rows(j, H, GATES, BLOCK_H), tl.arange(0, BLOCK_K), GATES * H, K, K, True, DOT_F32)


@triton.jit
def resident_gates(W, H, K, GATES: tl.constexpr, BLOCK_H: tl.constexpr, K_RES: tl.constexpr, DOT_F32: tl.constexpr):
    """In the resident regime (K_RES > 0), the gates_block (K_RES, 4 * BLOCK_H) of this program's column tile
    (``program_id(1)``), loaded once before the time loop for recurrent_product; otherwise W itself."""
    if K_RES:
        w = gates_block(W, tl.program_id(1), H, K, GATES, BLOCK_H, K_RES, DOT_F32)
    else:
        w = W
    return w


@triton.jit
def split_gates(pre, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr):
    """The four (BB, BLOCK_H) tiles of ``pre`` (BB, 4 * BLOCK_H), column g * BLOCK_H + u holding slot g, unit
    u (gate_rows' order). The cells compute every gate of a step in one (BB, 4 BLOCK_H) product and split
    it here: one product, not one a gate, lets the warps share out the columns instead of each repeating a
    16-wide product (fit.py: about 80 registers fewer in the resident regime), takes fewer layout
    conversions (in the persistent LSTM forward, sm_90: 4 barriers a step instead of 16), and a streamed
    step waits on a quarter as many slices of W_hh. The input projections are added after the split, in
    the cell's layout (lstm._lstm_inputs)."""
    by_gate = tl.permute(tl.reshape(pre, (BLOCK_B, 4, BLOCK_H)), (0, 2, 1))  # (BB, BH, 4)
    even, odd = tl.split(tl.reshape(by_gate, (BLOCK_B, BLOCK_H, 2, 2)))  # the last axis: slot % 2
    g0, g2 = tl.split(even)
    g1, g3 = tl.split(odd)
    return g0, g1, g2, g3


@triton.jit
def dot(a, b, input_precision: tl.constexpr = None, out_dtype: tl.constexpr = tl.float32):
    """tl.dot(a, b, ...); fp64 operands on a Triton whose tl.dot refuses them (not FP64_DOT): multiplied out, summed."""
    if FP64_DOT or a.dtype != tl.float64:
        return tl.dot(a, b, input_precision=input_precision, out_dtype=out_dtype)
    else:
        return tl.sum(a[:, :, None] * b[None, :, :], axis=1)


@triton.jit
def resident_product(A, a_rows, a_mask, w, K, K_RES: tl.constexpr, PRECISION: tl.constexpr):
    """(BB, N) product, in the accumulator type (fp64 for fp64 operands, else fp32), of the rows of A
    (length K, padded to K_RES, from the (BB, 1) offsets ``a_rows``, masked by ``a_mask``) with a block
    ``w`` (K_RES, N) the program holds. A bypasses L1 (other programs wrote it this step)."""
    k = tl.arange(0, K_RES)
    a = tl.load(A + a_rows + k[None, :], mask=a_mask & (k < K)[None, :], other=0.0, cache_modifier=".cg")
    return dot(a.to(w.dtype), w, input_precision=PRECISION)


@triton.jit
def recurrent_product(A, a_rows, a_mask, W, row0, cols, N, K, ld, TRANSPOSE: tl.constexpr, BLOCK_K: tl.constexpr,
                      DOT_F32: tl.constexpr, PRECISION: tl.constexpr, w_res, K_RES: tl.constexpr):
    """(BB, BN) product, in the accumulator type (fp64 for fp64 operands, else fp32), of the rows of A
    (length K from the (BB, 1) offsets ``a_rows``, masked by ``a_mask``; in the accumulator type, or in the
    operands' half precision, see dispatch.stored) with the weight_slice of ``cols`` (BN,) over all K. The
    slice is ``w_res`` when the program holds it (K_RES > 0, see resident_slice; ``cols`` must then be the
    program's own tile), else A and W are streamed in BLOCK_K slices of the reduced dimension. A bypasses
    L1 (other programs wrote it this step)."""
    if K_RES:
        acc = resident_product(A, a_rows, a_mask, w_res, K, K_RES, PRECISION)
    else:
        acc_type: tl.constexpr = tl.float64 if A.dtype.element_ty == tl.float64 else tl.float32
        acc = tl.zeros((a_rows.shape[0], cols.shape[0]), dtype=acc_type)
        for k0 in range(0, K, BLOCK_K):
            k = k0 + tl.arange(0, BLOCK_K)
            a = tl.load(A + a_rows + k[None, :], mask=a_mask & (k < K)[None, :], other=0.0, cache_modifier=".cg")
            w = weight_slice(W, row0, cols, k, N, K, ld, TRANSPOSE, DOT_F32, True)  # streamed: any size
            acc += dot(a.to(w.dtype), w, input_precision=PRECISION)
    return acc


@triton.jit
def exchange_rows(step, rows, B, K):
    """The (BB, 1) offsets of ``rows`` (BB,) in slot ``step`` % 2 of a (2, B, K) buffer through which the
    backward's programs exchange a step's gate gradients for the product with W_hh, in the products'
    operand type (dispatch.stored): a step writes one slot while programs still finishing the previous
    step's product read the other, and none writes it again before all have passed the next barrier."""
    return ((step % 2) * B + rows[:, None]) * K  # int64, as rows are


@triton.jit
def step_barrier(COUNT, arrivals, GRID_SYNC: tl.constexpr):
    """End of a tiled step: every thread's stores are visible to the whole program and, with GRID_SYNC, to
    every program of this batch tile: each adds one to the tile's arrival counter COUNT (release) and
    spins until it reaches ``arrivals`` (acquire). Without GRID_SYNC one program owns every column tile
    (the only way the interpreter, which runs programs one after another, can run the tiled kernels)."""
    tl.debug_barrier()
    if GRID_SYNC:
        tl.atomic_add(COUNT, 1, sem="release", scope="gpu")
        while tl.atomic_add(COUNT, 0, sem="acquire", scope="gpu") < arrivals:
            pass
        tl.debug_barrier()


@triton.jit
def column_tile(j, active, H, BLOCK_H: tl.constexpr):
    """Hidden columns (BH,) of column tile ``j`` and the (BB, BH) mask of its active rows."""
    cols = j * BLOCK_H + tl.arange(0, BLOCK_H)
    return cols, active & (cols < H)[None, :]


@triton.jit
def load_previous(X, X0, out, state, s, B, H, mask, ACC: tl.constexpr, REVERSE: tl.constexpr):
    """The values (in ACC) entering step ``s`` of the rows at offsets ``out`` of X (T, B, H): X at each row's
    previous time (the next one in the reverse direction), or X0 (B, H) at ``state`` for step 0."""
    if REVERSE:
        prev = out + plane(B, H)
    else:
        prev = out - plane(B, H)
    first = (tl.zeros_like(out) + s) == 0  # a tensor: the interpreter refuses a Python bool in a mask
    before = tl.load(X + prev, mask=mask & (first == 0), other=0.0).to(ACC)
    return before + tl.load(X0 + state, mask=mask & first, other=0.0).to(ACC)


def vector_buffers(launch, h0: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The vector regime's exchange buffer (2, B, H) with ``h0`` in slot 0, where the launch splits the units over
    programs (GRID_SYNC): in ``dtype`` with the arrival counters of its barrier, or with FLAGGED tagged words
    (flagged_ping_pong) and no counters; else, or for clusters (which exchange h in shared memory: held.py), None,
    None (nothing to allocate)."""
    if not launch.meta["GRID_SYNC"] or launch.cluster > 1:
        return None, None
    if launch.meta["FLAGGED"]:
        return flagged_ping_pong(h0), None
    return ping_pong(h0, dtype), launch.counters(h0.device)


def flagged_ping_pong(h0: torch.Tensor) -> torch.Tensor:
    """The flagged exchange's (2, B, H) int64 words, each a step tag (high 32 bits) over an fp32 value's bits (low
    32): slot 0 holds ``h0`` (B, H) tagged step 0, slot 1 the same tagged -1 (no step yet)."""
    bits = h0.float().contiguous().view(torch.int32).to(torch.int64) & 0xFFFFFFFF
    return torch.stack((bits, bits | (-1 << 32)))


@triton.jit
def _flagged_words(HQ, slot, b, B, H, k, mask):
    """The words of batch rows ``b`` at positions ``k`` in ``slot`` of a flagged exchange buffer (flagged_ping_pong's),
    loaded volatile (from L2, not a stale L1 line)."""
    return tl.load(HQ + (slot * B + b) * H + k, mask=mask, other=0, volatile=True)


@triton.jit
def flagged_values(HQ, s, b, B, H, k, mask):
    """The fp32 values at positions ``k`` of batch rows ``b`` in slot s % 2 of a flagged exchange buffer, reloaded
    until every word under ``mask`` carries tag ``s`` (a stale word carries s - 2, or -1): the data is its own
    barrier. The vector regime's split programs and the held regime's read h so (vector_operand, held.py). Each
    word must be loaded by one thread only: the loop checks one copy's tag, and another copy, loaded earlier, may be
    the one used (dispatch.EXCHANGES)."""
    word = _flagged_words(HQ, s % 2, b, B, H, k, mask)
    while tl.min(tl.where(mask, word >> 32, s)) < s:
        word = _flagged_words(HQ, s % 2, b, B, H, k, mask)
    return word.to(tl.int32).to(tl.float32, bitcast=True)


@triton.jit
def vector_row(LEN, H, BLOCK_U: tl.constexpr, GRID_SYNC: tl.constexpr):
    """A vector-regime program's batch row (program_id(0), int64), its hidden units (BU,) (with GRID_SYNC tile
    program_id(1) of BLOCK_U, else the first: a constant offset, which kept the RNN at H = 128 from spilling 108-192
    bytes with Triton 3.6 for sm_80) and their mask, and the row's sequence length."""
    b = tl.program_id(0).to(tl.int64)
    units = tl.arange(0, BLOCK_U)
    if GRID_SYNC:
        units += tl.program_id(1) * BLOCK_U
    return b, units, units < H, tl.load(LEN + b)


@triton.jit
def vector_block(W, gate: tl.constexpr, H, units, BLOCK_H: tl.constexpr, ACC: tl.constexpr):
    """The rows of gate ``gate``'s ``units`` (BU,) of a stacked weight W (gates * H, H) as a (BU, BLOCK_H) tile in
    ACC, zero-padded, in W's own layout (row = the gate's unit, column = input unit: each row's sum runs along the
    loaded vectors, within a thread, then across a few lanes): what a vector-regime program holds in registers."""
    return weight_slice(W, gate * H, tl.arange(0, BLOCK_H), units, H, H, H, False, False).to(ACC)


@triton.jit
def matvec(w, h):
    """The product of a held block ``w`` (BU, BH) (vector_block's) with the vector ``h`` (BH,): (BU,), in w's type.
    Round h to the weights' stored type first (as tl.dot's operand would be) for the persistent kernels' numbers."""
    return tl.sum(w * h[None, :], axis=1)


@triton.jit
def vector_operand(h, HQ, s, b, B, H, W, BLOCK_H: tl.constexpr, GRID_SYNC: tl.constexpr, FLAGGED: tl.constexpr):
    """What W_hh multiplies at step ``s`` of batch row ``b`` in the vector regime, in h's type, rounded to W's: the
    program's own ``h`` (BH,) when it holds every unit, else (GRID_SYNC: the units split over programs) the whole
    h from slot s % 2 of the (2, B, H) exchange buffer HQ (bypassing L1: other programs wrote it this step). With
    FLAGGED, HQ holds tagged words (flagged_ping_pong's), and the program reloads the slot until every word carries
    tag ``s`` (a stale word carries s - 2, or -1): the data is its own barrier."""
    if GRID_SYNC:
        k = tl.arange(0, BLOCK_H)
        if FLAGGED:
            h_in = flagged_values(HQ, s, b, B, H, k, k < H).to(h.dtype)
        else:
            h_in = tl.load(HQ + ((s % 2) * B + b) * H + k, mask=k < H, other=0.0, cache_modifier=".cg").to(h.dtype)
    else:
        h_in = h
    return h_in.to(W.dtype.element_ty).to(h.dtype)


@triton.jit
def vector_exchange(h, HQ, COUNT, group, s, b, B, H, units, valid, GRID_SYNC: tl.constexpr, FLAGGED: tl.constexpr):
    """End of a vector-regime step where the units are split over programs (GRID_SYNC): the program's new ``h``
    (BU,) goes to slot (s + 1) % 2 of HQ (vector_operand's), and the programs of its ``group`` (the batch row; a held
    program's batch tile, whose h is a (BU, NB) tile of rows ``b``) meet at step_barrier on their counter COUNT +
    group; with FLAGGED, as words tagged s + 1 (fp32 bits), without a grid barrier (the readers wait on the tags; a
    block barrier before the store lets every warp finish reading this step's slot, the one after it keeps the
    compiler from sinking the store below the next step's wait). Nothing otherwise."""
    if GRID_SYNC:
        at = HQ + (((s + 1) % 2) * B + b) * H + units
        if FLAGGED:
            bits = h.to(tl.float32).to(tl.uint32, bitcast=True).to(tl.int64)
            # no word tagged s + 1 leaves the program before all its warps have read slot s % 2: a reader that sees
            # this row's tags s + 1 may go on to overwrite that slot with s + 2, which a warp still polling it would
            # take for current. (Not what an H200 ran wrong: dispatch.EXCHANGES.)
            tl.debug_barrier()
            # s + 1 in bits' int64 (s: an i32, or an int under the interpreter); bits * 0, not zeros_like, which a
            # Gluon caller (held.py) would have to give a layout
            tl.store(at, bits | ((bits * 0 + s + 1) << 32), mask=valid)
            tl.debug_barrier()
        else:
            tl.store(at, h.to(HQ.dtype.element_ty), mask=valid)
            step_barrier(COUNT + group, (s + 1) * tl.num_programs(1), GRID_SYNC)


@triton.jit
def vector_step(s, length, b, B, valid, REVERSE: tl.constexpr):
    """The row (int64) of batch row ``b`` in a (T, B, .) buffer at processing step ``s`` of its ``length`` (the
    reverse direction starts at its last step), and the mask of the units ``valid`` (BH,) there: none past the
    sequence (a tensor: the interpreter takes no scalar in a mask)."""
    if REVERSE:
        t = length - 1 - s
    else:
        t = s
    return tl.cast(t, tl.int64) * B + b, valid & ((tl.zeros_like(valid.to(tl.int32)) + s) < length)


@triton.jit
def step_rows(s, length, rows, B, REVERSE: tl.constexpr):
    """Processing step ``s`` for each of the rows (BB,) int64 of lengths ``length`` (BB,): which are still
    active (BB, 1), and the (BB, 1) int64 row of each in a (T, B, .) buffer, its time index times B plus
    its batch row (time 0 for rows already finished; the reverse direction starts each row at its own
    last step)."""
    if REVERSE:
        t = length - 1 - s
    else:
        t = tl.zeros_like(length) + s
    t = tl.where(s < length, t, 0).to(tl.int64)
    return (s < length)[:, None], (t * B + rows)[:, None]
