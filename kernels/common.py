"""Launch parameters and helpers shared by the kernels."""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
BLOCK_B = 16  # batch rows per program (tl.dot needs >= 16)
# Largest hidden size whose four W_hh gate blocks fit one program's registers without spilling, per
# operand width (cross-compiled for sm_80 and sm_90 by fit.py: fp32 spills from BLOCK_H = 64).
MAX_PERSISTENT_H = {"fp32": 32, "half": 64}


def max_persistent_h(dtype: torch.dtype) -> int:
    """The persistent regime's largest hidden size for inputs of ``dtype``."""
    return MAX_PERSISTENT_H["fp32" if dtype == torch.float32 else "half"]


def dot_precision(dtype: torch.dtype) -> str:
    """tl.dot precision for fp32 operands: three-pass TF32 (about fp32 accuracy). Triton 3.9's compiler
    aborts on the "ieee" fp32 backward kernel for sm_90 (an LLVM SLP-vectorizer assertion, seen in
    fit.py); half-precision operands ignore the setting."""
    return "tf32x3" if dtype == torch.float32 else "ieee"


def num_warps(block_h: int) -> int:
    """Warps per program: enough that the weight blocks fit in registers without spilling (checked for
    sm_80 and sm_90 by rnnlab.kernels.fit)."""
    return 4 if block_h <= 16 else 8


def block_h(H: int) -> int:
    """The power-of-two tile covering hidden size ``H`` (>= 16 for tl.dot)."""
    return max(16, triton.next_power_of_2(H))


def lengths_from(batch_sizes: list[int] | None, T: int, B: int, device) -> torch.Tensor:
    """Per-row sequence lengths (B,) int32 from PackedSequence-style batch sizes (None: all T)."""
    if batch_sizes is None:
        return torch.full((B,), T, dtype=torch.int32, device=device)
    sizes = torch.tensor(batch_sizes)
    return (sizes.unsqueeze(0) > torch.arange(B).unsqueeze(1)).sum(1).to(device=device, dtype=torch.int32)


@triton.jit
def sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))


@triton.jit
def tanh(x):
    # libdevice tanh is unavailable under the interpreter; exact in real arithmetic
    return 2.0 * sigmoid(2.0 * x) - 1.0
