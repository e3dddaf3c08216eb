"""A floor under the resident regime's time a step: its programs' exchange of the state without the math.

Where the resident regime splits a layer's hidden units over programs (H > 16 in bf16 on a GPU), every step
each program reads the whole h that all of them wrote the step before, writes its own tile of the next, and
meets the others at the grid barrier (kernels.common.step_barrier). :func:`exchange_call` runs only that,
on the launch the fused forward takes (same grid, warps and barrier), so latency.py can say how much of a
step no faster math could remove.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from rnnlab.kernels.common import step_barrier
from rnnlab.kernels.dispatch import plan, stored


@triton.jit
def _exchange_kernel(HQ, COUNT, T, B, H, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, K_RES: tl.constexpr):
    # HQ (2, B, H): h_{t-1} in slot s % 2, h_t written to the other, as the resident forwards do. Each program
    # reads its batch tile's whole h (bypassing L1, K_RES >= H wide) and writes its BLOCK_H columns of the
    # next from it (the row maximum: something the read must be done for), then waits for the others.
    rows = (tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)).to(tl.int64)
    k = tl.arange(0, K_RES)
    cols = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    row_mask = (rows < B)[:, None]
    for s in range(0, T):
        src = (s % 2) * B * H
        h = tl.load(HQ + src + rows[:, None] * H + k[None, :], mask=row_mask & (k < H)[None, :], other=0.0,
                    cache_modifier=".cg")
        tile = tl.zeros((BLOCK_B, BLOCK_H), dtype=tl.float32) + tl.max(h.to(tl.float32), axis=1)[:, None]
        tl.store(HQ + B * H - src + rows[:, None] * H + cols[None, :], tile.to(HQ.dtype.element_ty),
                 mask=row_mask & (cols < H)[None, :])
        step_barrier(COUNT + tl.program_id(0), (s + 1) * tl.num_programs(1), True)


def exchange_call(cell: str, x: torch.Tensor, H: int):
    """A function that runs the exchange alone for ``x`` (T, B, I) steps, on the launch the fused forward of
    ``cell`` (lstm, gru or rnn) takes for it with hidden size ``H``; None
    where that launch does not split a batch tile over programs (the persistent regime, or one tile)."""
    T, B, _ = x.shape
    launch = plan(cell, x, H, B)
    if launch.regime != "resident" or launch.grid[1] == 1:
        return None
    meta = launch.meta
    hq = torch.zeros(2, B, H, dtype=stored(x.dtype), device=x.device)
    counters = launch.counters(x.device)

    def run():
        counters.zero_()  # the barrier counts arrivals from 0
        _exchange_kernel[launch.grid](hq, counters, T, B, H, BLOCK_B=meta["BLOCK_B"], BLOCK_H=meta["BLOCK_H"],
                                      K_RES=meta["K_RES"], num_warps=meta["num_warps"], launch_cooperative_grid=True)
    return run
