"""Launch parameters and helpers shared by the kernels."""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
BLOCK_B = 16  # batch rows per program (tl.dot needs >= 16)
MAX_PERSISTENT_H = 128  # largest hidden size whose four W_hh gate blocks stay in one program's registers


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
