"""step_floor.py's floor for the held regime split over programs (kernels/held.py, Gluon: Triton 3.6 or later):
its programs' exchange of the state without the math, through the split kernels' own code for it (held._split_h,
_split_exchange and, for a cluster, _cluster_start), at the barrier, flagged or in a cluster.
"""

from __future__ import annotations

import dataclasses

import torch
from triton.experimental import gluon
from triton.experimental.gluon import language as gl

from rnnlab.kernels.common import vector_buffers
from rnnlab.kernels.dispatch import Launch, accumulator, stored
from rnnlab.kernels.held import (
    _cluster_start,
    _rows,
    _split_exchange,
    _split_h,
    _split_ids,
    _split_layout,
    _state,
    _step,
    _stored_by_cell,
    launch_split,
)


@gluon.jit
def _held_exchange_kernel(H0, LEN, Y, HQ, COUNT, B, H, BLOCK_U: gl.constexpr, BLOCK_K: gl.constexpr,
                          GRID_SYNC: gl.constexpr, FLAGGED: gl.constexpr, CLUSTER: gl.constexpr):
    # The split held kernels' steps without their products and cells: each step every program reads its batch tile's
    # whole h and writes its units of the next, each row's maximum of what it read (something the read must be done
    # for), to the others and to Y, as they do. H0 (B, H); Y (T, B, H): after T steps each row's largest h_0 value
    # in every unit
    tile, part = _split_ids(H, BLOCK_U, CLUSTER)
    u, b, length, steps = _rows(LEN, B, BLOCK_U, True, tile, part)
    h = _state(H0, u, b, B, H)  # (BLOCK_U, NB)
    if CLUSTER:
        _cluster_start(h, u, H, BLOCK_U, BLOCK_K, CLUSTER)
    for s in range(0, steps):
        row, live = _step(s, u, b, length, B, H, False)
        largest = gl.max(_split_h(HQ, s, tile, B, H, BLOCK_U, BLOCK_K, FLAGGED, CLUSTER), axis=0)  # (NB,)
        h = gl.zeros_like(h) + gl.convert_layout(largest, gl.SliceLayout(0, _split_layout(gl.num_warps())))[None, :]
        gl.store(Y + row * H + u, h.to(Y.dtype.element_ty), mask=_stored_by_cell(live, CLUSTER))  # as the cell does
        _split_exchange(h, HQ, COUNT, tile, s, steps, u, b, B, H, Y, row * H + u, live, BLOCK_U, BLOCK_K, GRID_SYNC,
                        FLAGGED, CLUSTER)


def held_exchange_call(launch: Launch, x: torch.Tensor, H: int, h0: torch.Tensor | None = None):
    """A function that runs the exchange alone of a split held ``launch`` for ``x`` (T, B, I) steps, from ``h0``
    (B, H; zeros if None), and returns Y (T, B, H): the exchange buffer set back to step 0 (h0) and the counters
    zeroed before each run."""
    T, B, _ = x.shape
    h0 = torch.zeros(B, H, dtype=accumulator(x.dtype), device=x.device) if h0 is None else h0
    fresh, counters = vector_buffers(launch, h0, stored(x.dtype))
    hq = None if fresh is None else fresh.clone()
    launch = dataclasses.replace(launch, meta={k: v for k, v in launch.meta.items() if k != "CHAINS"})  # no product
    lengths = torch.full((B,), T, dtype=torch.int32, device=x.device)
    Y = torch.empty(T, B, H, dtype=x.dtype, device=x.device)

    def run():
        if fresh is not None:
            hq.copy_(fresh)
        if counters is not None:
            counters.zero_()
        launch_split(_held_exchange_kernel, launch, h0, lengths, Y, hq, counters, B, H)
        return Y
    return run
