"""Launch parameters and helpers shared by the kernels."""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from ..recurrence.common import linear_grads
from ..recurrence.schedule import Schedule, lengths_of

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
BLOCK_B = 16  # batch rows per program (tl.dot needs >= 16)
# Largest hidden size whose W_hh gate blocks fit one program's registers without spilling, per cell and
# operand width (cross-compiled for sm_80 and sm_90 by fit.py: fp32 spills from BLOCK_H = 64, and so does
# the half-precision GRU forward on sm_90).
MAX_PERSISTENT_H = {("lstm", "fp32"): 32, ("lstm", "half"): 64, ("gru", "fp32"): 32, ("gru", "half"): 32,
                    ("rnn", "fp32"): 32, ("rnn", "half"): 64}


def max_persistent_h(cell: str, dtype: torch.dtype) -> int:
    """The persistent regime's largest hidden size for ``cell`` ("lstm", "gru", "rnn") and ``dtype``."""
    return MAX_PERSISTENT_H[cell, "fp32" if dtype == torch.float32 else "half"]


def dot_precision(dtype: torch.dtype) -> str:
    """tl.dot precision for fp32 operands: three-pass TF32 (about fp32 accuracy). Triton 3.9's compiler
    aborts on the "ieee" fp32 backward kernel for sm_90 (an LLVM SLP-vectorizer assertion, seen in
    fit.py); half-precision operands ignore the setting."""
    return "tf32x3" if dtype == torch.float32 else "ieee"


def num_warps(block_h: int) -> int:
    """Warps per program: enough that the weight blocks fit in registers without spilling, with margin
    (checked for sm_80 and sm_90 by rnnlab.kernels.fit: at BLOCK_H = 64, 8 warps left the LSTM backward at
    128 registers with 32 bytes spilled, 16 warps use 104-119 with none)."""
    return 4 if block_h <= 16 else (8 if block_h <= 32 else 16)


def block_h(H: int) -> int:
    """The power-of-two tile covering hidden size ``H`` (>= 16 for tl.dot)."""
    return max(16, triton.next_power_of_2(H))


def launch_args(x: torch.Tensor, H: int) -> dict:
    """Block sizes, warps and product precision of a launch for input ``x`` and hidden size ``H``."""
    bh = block_h(H)
    return {"BLOCK_B": BLOCK_B, "BLOCK_H": bh, "DOT_F32": INTERPRET or x.dtype == torch.float32,
            "PRECISION": dot_precision(x.dtype), "num_warps": num_warps(bh)}


def check_persistent(cell: str, H: int, dtype: torch.dtype) -> None:
    """Refuse hidden sizes the persistent regime cannot hold (the tiled regime is not built)."""
    limit = max_persistent_h(cell, dtype)
    if limit < H:
        raise NotImplementedError(
            f"backend='triton' runs {cell.upper()} hidden sizes up to {limit} for {dtype} (the persistent "
            f"regime; the tiled one is not built); got hidden_size={H}. Use backend='torch' or 'native'"
        )


def projection_grads(ctx, d_input_side, d_hidden_side, x, h0, Y, w_ih, w_hh, need_x, need_w_ih, need_w_hh):
    """dx, dW_ih and dW_hh in fp32 from a fused backward's gate gradients, as single GEMMs over all
    timesteps: d_input_side/d_hidden_side (T, B, G) are the pre-activation gradients on the input and
    hidden sides (the same tensor except for GRU); the hidden states entering each step come from Y and h0."""
    T, B, _ = x.shape
    dx, dw_ih = linear_grads(d_input_side, x.float(), w_ih.float(), need_x, need_w_ih)
    h_prev = Schedule(T, B, ctx.batch_sizes, ctx.reverse).all_incoming(Y, h0).float()  # (T, B, H)
    _, dw_hh = linear_grads(d_hidden_side, h_prev, w_hh.float(), False, need_w_hh)
    return dx, dw_ih, dw_hh


def cast_grads(grads, likes):
    """Each gradient (or None) in the dtype of its input."""
    return tuple(None if g is None else g.to(like.dtype) for g, like in zip(grads, likes, strict=True))


def lengths_from(batch_sizes: list[int] | None, T: int, B: int, device) -> torch.Tensor:
    """Per-row sequence lengths (B,) int32 from PackedSequence-style batch sizes (None: all T)."""
    if batch_sizes is None:
        return torch.full((B,), T, dtype=torch.int32, device=device)
    return lengths_of(batch_sizes, B).to(device=device, dtype=torch.int32)


@triton.jit
def sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))


@triton.jit
def tanh(x):
    # libdevice tanh is unavailable under the interpreter; exact in real arithmetic
    return 2.0 * sigmoid(2.0 * x) - 1.0


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
    r = tl.arange(0, BLOCK_H)[:, None]
    k = tl.arange(0, BLOCK_H)[None, :]
    mask = (r < H) & (k < H)
    if TRANSPOSE:
        w = tl.load(W + (gate * H + k) * H + r, mask=mask, other=0.0)
    else:
        w = tl.load(W + (gate * H + r) * H + k, mask=mask, other=0.0)
    if DOT_F32:
        w = w.to(tl.float32)
    return w


@triton.jit
def step_time(s, length, REVERSE: tl.constexpr):
    """Time index of processing step ``s`` for each row (0 for rows already finished)."""
    if REVERSE:
        t = length - 1 - s
    else:
        t = tl.zeros_like(length) + s
    return tl.where(s < length, t, 0).to(tl.int64)
