"""A floor under a split launch's time a step: its programs' exchange of the state without the math.

Where the resident regime, or the vector or held regime split over programs, spreads a layer's hidden units over
programs, every step each program reads the whole h that all of them wrote the step before, writes its own
units of the next, and meets the others at the grid barrier (kernels.common.step_barrier), or, the flagged
exchange, waits until the words it reads carry the step's tag, or, the held regime's cluster exchanges, writes into
the others' shared memory (held_floor.py). :func:`exchange_call` runs only that, on the launch the fused inference
forward takes (same grid, warps and exchange), so latency.py can say how much of a step no faster math could
remove.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from rnnlab.kernels.common import step_barrier, vector_buffers, vector_exchange, vector_operand, vector_row
from rnnlab.kernels.dispatch import accumulator, plan, stored


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


@triton.jit
def _vector_exchange_kernel(HQ, COUNT, LEN, W, B, H, BLOCK_H: tl.constexpr, BLOCK_U: tl.constexpr,
                            FLAGGED: tl.constexpr):
    # The vector regime's split programs, through the fused forwards' own exchange (common.vector_operand and
    # vector_exchange): each step every program reads its row's whole h and writes its units of the next (the
    # maximum of what it read: something the read must be done for). W: only its dtype, which h is rounded to.
    b, units, valid, length = vector_row(LEN, H, BLOCK_U, True)
    h = tl.zeros((BLOCK_U,), dtype=tl.float32)
    for s in range(0, length):
        h_in = vector_operand(h, HQ, s, b, B, H, W, BLOCK_H, True, FLAGGED)
        h = tl.zeros_like(h) + tl.max(h_in, axis=0)
        vector_exchange(h, HQ, COUNT, b, s, b, B, H, units, valid, True, FLAGGED)


def exchange_call(cell: str, x: torch.Tensor, H: int):
    """A function that runs the exchange alone for ``x`` (T, B, I) steps, on the launch the fused inference
    forward of ``cell`` (lstm, gru or rnn) takes for it with hidden size ``H`` (the force_* overrides in effect
    included); None where that launch does not split a batch tile over programs (one program holds it)."""
    T, B, _ = x.shape
    launch = plan(cell, x, H, B, inference=True)
    if launch.regime == "vector" and launch.meta["GRID_SYNC"]:
        return _vector_exchange_call(launch, x, H)
    if launch.regime == "held" and launch.meta.get("GRID_SYNC"):
        from held_floor import held_exchange_call  # Gluon's (Triton >= 3.6)

        return held_exchange_call(launch, x, H)
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


def _vector_exchange_call(launch, x: torch.Tensor, H: int):
    """exchange_call for a split vector-regime ``launch``: its exchange buffer (tagged words where FLAGGED) set
    back to step 0 and its counters zeroed before each run."""
    T, B, _ = x.shape
    meta = launch.meta
    fresh, counters = vector_buffers(launch, torch.zeros(B, H, dtype=accumulator(x.dtype), device=x.device),
                                     stored(x.dtype))
    hq = fresh.clone()
    lengths = torch.full((B,), T, dtype=torch.int32, device=x.device)
    options = {key: meta[key] for key in ("num_warps", "maxnreg", "launch_cooperative_grid") if key in meta}

    def run():
        hq.copy_(fresh)  # the flagged words' tags start again at 0
        if counters is not None:
            counters.zero_()
        _vector_exchange_kernel[launch.grid](hq, counters, lengths, x, B, H, BLOCK_H=meta["BLOCK_H"],
                                             BLOCK_U=meta["BLOCK_U"], FLAGGED=meta["FLAGGED"], **options)
    return run
