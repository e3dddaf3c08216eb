"""Which regime runs a fused recurrence, and with which blocks, warps and grid.

- ``vector``: forwards that keep nothing for a backward (inference; the RNN's forward always) of up to
  MAX_VECTOR_B batch rows, without a projection or a cell variant: one program per batch row holds W_hh in
  registers (hidden sizes up to MAX_VECTOR_H) and takes each step's product as matrix-vector sums, where a
  persistent program pads its rows to tl.dot's 16 and reloads W_hh from shared memory every step. On CUDA,
  beyond those sizes: split over programs of VECTOR_UNITS units (forced, SPLIT_UNITS') that exchange h each step
  (at a grid barrier, or flagged: EXCHANGES), where they fit on the device at once (up to AUTO_SPLIT_VECTOR_H;
  forced, MAX_SPLIT_VECTOR_H).
- ``held`` (CUDA, fp16/bf16, forwards as the vector regime's; chosen up to AUTO_HELD_H, forced beyond): one program
  per HELD_ROWS batch rows holds W_hh in registers as tensor-core operands (hidden sizes up to MAX_HELD_H,
  multiples of 16; beyond, up to MAX_HELD_SPLIT_H, split over programs of HELD_SPLIT_UNITS units that exchange h as
  the split vector regime's do or, forced on sm_90, a thread-block cluster a batch tile, through each other's shared
  memory: CLUSTER_EXCHANGES), in Gluon (kernels/held.py), which the interpreter does not run.
- ``persistent``: one program per tile of BLOCK_B batch rows holds all of W_hh on chip for the whole
  sequence (hidden sizes up to MAX_PERSISTENT_H; Triton stages it in shared memory and loads it into
  registers for each step's product).
- ``resident`` (CUDA; off with ``RNNLAB_GRID_SYNC=0``): the hidden units are split into column tiles of
  RESIDENT_BLOCK_H, one program each (per batch tile), every program holding its tile's slice of W_hh
  on chip for the whole sequence and exchanging the state with the others through global memory at a
  grid barrier each step (hidden sizes up to MAX_RESIDENT_H, or ALIGNED_RESIDENT_H's for multiples of 16,
  up to one program per SM, with batch tiles of WIDE_BLOCK_B rows on sm_90 where those of BLOCK_B would
  need more; without a projection). The same kernels as the tiled regime (their K_RES
  argument), so under the interpreter it runs only where one tile covers H.
- ``tiled``: any hidden size. W_hh is streamed from L2 in (BLOCK_K, BLOCK_H) tiles every step, and the
  state is exchanged through buffers in global memory (fp32, but h and the gate gradients that the
  products read in the operands' type: dispatch.stored). By default one program per batch tile
  walks all BLOCK_H column tiles of a step (correct anywhere, the interpreter included, but one SM per
  batch tile: 1.2-77x slower than cuDNN on an H200 at H = 128-1024); on CUDA the column tiles are spread
  over up to one program per SM that meet at a spin-wait barrier each step (unless
  ``RNNLAB_GRID_SYNC=0``). The barrier needs every program resident at once, so such kernels go out as
  cooperative launches (``launch_cooperative_grid``): CUDA then refuses a grid that cannot be
  co-resident instead of leaving it to spin forever. Verified on an H200 and an H100 (tests/test_cuda.py,
  CUDA graphs included; timings in benchmarks/results/gpu-NVIDIA-*/).

:func:`plan` picks the regime from the cell, hidden size and dtype; :func:`force_regime` overrides it
(tests and benchmarks), :func:`force_tiling` the tiled regime's blocks, :func:`force_warps` the other
regimes' warps, :func:`force_batch_tile` the resident regime's batch rows (benchmarks/tune.py), and
:func:`force_exchange` and :func:`force_units` how split programs exchange h (EXCHANGES) and how many units a
split vector-regime program takes (benchmarks/latency.py).
Block sizes are fixed per shape: there is no run-time autotuning, and Triton caches each compiled
configuration.
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import triton

from ..recording import Recorder

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
# The GPUs every launchable configuration is cross-compiled and checked for (fit.py): compute capability
# (major, minor) and the shared memory one block may use. On others "auto" leaves the fused kernels alone.
FITTED_TARGETS = {(8, 0): 163 * 1024, (9, 0): 227 * 1024}
REGIMES = ("vector", "persistent", "resident", "tiled", "held")
BLOCK_B = 16  # batch rows per program (tl.dot needs >= 16)
# Largest hidden size whose W_hh gate blocks fit one program's registers without spilling, per cell and
# operand width (cross-compiled for sm_80 and sm_90 by fit.py with Triton 3.9 and 3.6: fp32 spills from
# BLOCK_H = 64, half precision from 128; an earlier Triton spilled the half-precision GRU forward at 64).
MAX_PERSISTENT_H = {("lstm", "fp32"): 32, ("lstm", "half"): 64, ("gru", "fp32"): 32, ("gru", "half"): 64,
                    ("rnn", "fp32"): 32, ("rnn", "half"): 64, ("lstm", "fp64"): 16, ("gru", "fp64"): 16,
                    ("rnn", "fp64"): 16}
# Persistent kernels (cell, operand width, backward) that may use every register their block can have:
# left to itself ptxas holds 8 warps to 128 registers a thread (room for a second block per SM), and with
# Triton 3.6's ptxas (the GPU machine's) these then spilled 8-16 bytes: the half-precision LSTM backward
# at BLOCK_H = 32 and the fp64 GRU forward at 16; and, since the half-precision forwards store the
# gates' pre-activations in the input dtype, the LSTM and GRU forward at 16 (8 bytes, with 96 registers
# of 4 warps); since sigmoid takes the flush-to-zero forms (common.FAST_MATH), the half-precision GRU
# backward at 32 (16 bytes at 80 registers, Triton 3.9). Lifted, they use 91-164 registers and spill
# nothing (fit.py, sm_80 and sm_90). Not for every kernel: lifted, the fp32 LSTM backward spills.
ALL_REGISTERS = {("lstm", "half", True), ("lstm", "half", False), ("gru", "half", True), ("gru", "half", False),
                 ("gru", "fp64", False)}
# Layer norm (rnnlab.recurrence.variants) runs in the persistent kernels only (NORM), at hidden sizes up to
# MAX_NORM_H, where every kernel compiles for sm_80 and sm_90 without spills (fit.py's "norm" and "all" rows,
# Triton 3.9). Beyond them: the LSTM backward at BLOCK_H = 64 in half precision spilled 44-92 bytes (368 with
# the masks), the GRU's 16-24 (sm_90). NORM_BLOCK_H: the narrowest tile with layer norm (the LSTM backward at
# BLOCK_H = 16 spilled 44-60 bytes in fp32 with all 255 registers, and with Triton 3.6's ptxas 80-96 in half
# precision with the masks). With Triton 3.6 (the GPU machine's) four fp64 configurations spill 16-44 bytes,
# the fp64 LSTM backward 1.7 KiB: gradcheck's dtype, slower there, not wrong. NORM_WITHOUT_MASKS: where "auto"
# runs layer norm with zoneout or recurrent dropout on the hand-written recurrences, as the fused LSTM
# backward spills with both (24 bytes in fp32 at BLOCK_H = 32, 116 in fp64 at 16: slower, not wrong;
# backend="triton" runs it, fit.py leaves it out). NORM_ALL_REGISTERS: as ALL_REGISTERS, with layer norm (left
# to ptxas these spilled 8-16 bytes at 128 and 80 registers: the fp32 GRU backward at 32, the half-precision
# RNN at 32 and 64; lifted, the fp32 LSTM backward spilled 20-44 where it fits without).
MAX_NORM_H = {("lstm", "fp32"): 32, ("lstm", "half"): 32, ("gru", "fp32"): 32, ("gru", "half"): 32,
              ("rnn", "fp32"): 32, ("rnn", "half"): 64, ("lstm", "fp64"): 16, ("gru", "fp64"): 16, ("rnn", "fp64"): 16}
NORM_BLOCK_H = {("lstm", "fp32"): 32, ("lstm", "half"): 32}
NORM_WITHOUT_MASKS = {("lstm", "fp32"), ("lstm", "fp64")}
NORM_ALL_REGISTERS = {("gru", "fp32", True), ("rnn", "half", True), ("rnn", "half", False)}
# Warps a persistent program where a GPU timed another count faster than num_warps' (cell, operand width,
# backward, BLOCK_H): on an H100 the GRU forward at BLOCK_H = 64 took 0.88x of 16 warps' time with 8 and
# 0.80x with 4 (benchmarks/tune.py's warps group, bf16, B = 16, without storing for a backward), but with
# 4 the training forward spills 24-64 bytes (fit.py); with 8 it fits in 234-238 registers (Triton 3.9
# and 3.6). The LSTM's at 64 was fastest with 16.
TIMED_WARPS = {("gru", "half", False, 64): 8}
# Likewise for one vector-regime program (cell, operand width, BLOCK_H) holding every unit: on an H100 the GRU at
# H = 64 took 0.44-0.46 us a step with 8 warps against 0.51 with vector_warps' 16 (benchmarks/latency.py, bf16,
# B = 1 and 16; the whole forward 0.89x, tune.py's warps group); the LSTM's at 64 was as fast with 16.
TIMED_VECTOR_WARPS = {("gru", "half", 64): 8}
# The tiled regime's blocks: column tiles of 32 hidden units, the forward's reduction in slices of 32 (the
# backward's BACKWARD_K times longer, see backward_k), 8 warps, no software pipelining. At H = 1024 a
# step then waits on 32 slices in each direction, where a product a gate with slices of 64 waited on 64
# (0.55 us each on an H200). Cross-compiled (fit.py, Triton 3.9), no tiled configuration spills but two
# on sm_80: the fp32 LSTM backward with a projection (96 bytes) and the fp64 RNN forward (16); slices of
# 64 spilled 28-2500 bytes with 8 warps, and 4 warps spilled with either. In fp16/bf16 slices of 64
# (HALF_TILED_BLOCK_K) took 0.73-0.79x the forward's time and 0.83-0.86x the training step's on an H100 in two
# sessions (benchmarks/tune.py's tiled group: H = 1024, B = 64, LSTM and GRU; with 4 warps, which spill, 0.70-0.87x) and
# compile without spills for sm_80 and sm_90 (Triton 3.9) but for the LSTM backward with a projection (124-904
# bytes), so half precision takes them but there (tiled_block_k). With Triton 3.6 (the timed one) the LSTM
# backward for sm_90 and the RNN's for sm_80 spill 8-32 bytes with them, as the GRU's did 24 with slices of 32.
TILED_BLOCK_H, TILED_BLOCK_K, TILED_WARPS, TILED_STAGES = 32, 32, 8, 1
HALF_TILED_BLOCK_K = 64
BACKWARD_K = 4  # see backward_k
# The resident regime: 16 hidden units a program (the narrowest tl.dot tile: the most programs, the
# fewest weights each), 8 warps with up to 255 registers a thread (the most 8 warps may have; left to
# itself ptxas stopped some resident kernels at 128 and spilled, while the same setting made the
# persistent fp32 LSTM backward spill, so it is the resident regime's alone). Triton keeps the (H, 16)
# slices in shared memory and loads them into registers for each step's product, whose other operand
# (h, or the gate gradients) it stages in shared memory too; in fp16/bf16 the programs exchange those in
# the input dtype (dispatch.stored), which halved that staging (staged in fp32, the LSTM forward at 1024
# and its backward at 512 took 192 KiB, past sm_80's 163). The largest hidden sizes below, (forward, backward),
# compile for sm_80 and sm_90 without spills (fit.py, Triton 3.9 and 3.6; beyond them ptxas spills
# 8-2500 bytes). The forward takes all gates in one product; the backward holds one slice (H, 16) a gate
# and takes one product a gate (one over all of them spilled: the GRU's 280-352 bytes at 128, the LSTM's
# 40 at 256, and at 1024 its staged operand took the LSTM's to 256 KiB of shared memory). An entry
# at or below MAX_PERSISTENT_H's means the dispatcher never picks the regime for that cell, width and
# direction (it still runs when forced). These hold for any hidden size.
RESIDENT_BLOCK_H, RESIDENT_WARPS = 16, 8
MAX_RESIDENT_H = {("lstm", "fp32"): (32, 32), ("lstm", "half"): (512, 256), ("gru", "fp32"): (32, 32),
                  ("gru", "half"): (1024, 256), ("rnn", "fp32"): (128, 128), ("rnn", "half"): (1024, 512),
                  ("lstm", "fp64"): (32, 32), ("gru", "fp64"): (16, 16), ("rnn", "fp64"): (256, 256)}
# Larger limits for hidden sizes that are multiples of 16: a launch then marks H, and the offsets built
# from it, divisible by 16 (as it marks every 16-byte-aligned buffer), so loads and stores move 16 bytes
# at once and need a quarter of the address registers. Compiled so (fit.py's "a16" rows), the
# half-precision LSTM forward at 1024 uses 165-168 registers where it spilled 112-200 bytes without, its
# backward at 1024 168-185 (at 512 it spilled 112 bytes without, Triton 3.6), the GRU backward at 1024
# 153-180 (spilled 448-472; Triton 3.6 spilled it from 512, 72 bytes, and the RNN backward at 1024); in
# fp32 the LSTM and GRU at 128, the backwards with 250-254 registers (at 256 they spill 112-3056 bytes).
# A buffer not 16-byte aligned (a view at an odd offset) gets another compiled variant, which may spill:
# slower, not wrong.
ALIGNED_RESIDENT_H = {("lstm", "half"): (1024, 1024), ("gru", "half"): (1024, 1024), ("rnn", "half"): (1024, 1024),
                      ("lstm", "fp32"): (128, 128), ("gru", "fp32"): (128, 128)}
# Wide resident programs: WIDE_BLOCK_B batch rows each instead of BLOCK_B, half the programs a batch needs,
# where BLOCK_B's would need more programs than the device has SMs (at H = 1024 and B = 64, 256 against an
# H100's 132) and WIDE_BLOCK_B's would not; only in fp16/bf16, for H a multiple of 16, on WIDE_CAPABILITY
# (sm_80 lacks the shared memory: 192 KiB at H = 1024). On an H100 at H = 1024, B = 64 the 16-row
# alternative (which runs tiled) took 1.30x (LSTM) and 1.55x (GRU) their training step, 2.27x and 2.41x
# their forward; against cuDNN in one run they took 0.88x and 0.67x its training step, 0.46-0.65x at
# H = 512, B = 128 (benchmarks/results/gpu-NVIDIA-H100-80GB-HBM3/: tune/, wide/). fit.py checks them for
# sm_90 (Triton 3.9: no spills; Triton 3.6's ptxas spills the GRU backward at 1024 by 8 bytes, which is
# what the H100 timed).
WIDE_BLOCK_B, WIDE_CAPABILITY = 32, (9, 0)
# The vector regime (common.vector_block, matvec): its largest hidden size per cell and operand width, where W_hh
# held in registers in the accumulator type, with vector_warps' warps, compiles for sm_80 and sm_90 without spills
# (fit.py's "_vector" rows, Triton 3.9; with 3.6, since 2026-11-28, the GRU at 64 in half precision and the RNN at
# 128 for sm_80 spill 24-168 bytes: README.md; one size up spilled 640-1900 bytes with 32 warps, the fp64 LSTM and
# GRU at 64 700-1000), for any hidden size and, larger (ALIGNED_VECTOR_H), for multiples of 16 (as
# ALIGNED_RESIDENT_H: the LSTM at 64 uses 64-98 registers there, and for other sizes spilled 64-156 bytes with
# Triton 3.6, 104-132 with 32 warps); and its largest batch: one program a row, up to BLOCK_B rows (one
# persistent program's), so it never takes more than 16 SMs. Chosen over the persistent regime for its step (sm_90,
# bf16, H = 64: no tensor-core product and no reload of W_hh from shared memory, 8 special-function instructions a
# warp instead of 16, all for real rows where the persistent step pads B to 16), which an H100 timed at 0.51-0.56
# us against 1.05-2.28 (benchmarks/latency.py; the RNN at 128: the whole forward 0.40-0.48x the resident regime's,
# benchmarks/tune.py's "regime" group).
MAX_VECTOR_H = {("lstm", "fp32"): 32, ("lstm", "half"): 32, ("lstm", "fp64"): 32, ("gru", "fp32"): 64,
                ("gru", "half"): 64, ("gru", "fp64"): 32, ("rnn", "fp32"): 128, ("rnn", "half"): 128,
                ("rnn", "fp64"): 64}
ALIGNED_VECTOR_H = {("lstm", "fp32"): 64, ("lstm", "half"): 64}
MAX_VECTOR_B = BLOCK_B
# Beyond them the vector regime can split a row's units over programs of VECTOR_UNITS units each (their rows of
# W_hh in registers, every thread allowed all 255 / (warps / 8) registers: one program an SM), which exchange h
# through global memory and meet at a grid barrier each step, as the resident regime's do, without its 16-row
# products: up to MAX_SPLIT_VECTOR_H's (any hidden size, multiples of 16), which compile for sm_80 and sm_90
# without spills (fit.py's "grid" rows of the vector kernels, Triton 3.9 and 3.6; one size up the LSTM and GRU
# spilled 12-260 bytes, the fp64 LSTM and GRU split at all 300-400). The dispatcher splits up to
# AUTO_SPLIT_VECTOR_H, where an H100 timed it faster than the resident regime (benchmarks/results/
# gpu-NVIDIA-H100-80GB-HBM3/latency/ and its forced/: bf16, T = 1024, the kernel a step: LSTM and GRU 1.19-1.45 us
# against 1.51-1.59 at H = 128, B = 1 and 16, 1.57-1.67 against 1.80-1.85 at 256, B = 1; the RNN 1.34-1.97 against
# 1.80-3.27 at 256-1024, B = 1), but not the GRU at 512 (2.59 against 2.39); beyond it only when forced
# (force_regime("vector")). Where B times the programs exceeds the SMs, the resident regime runs.
# How split programs exchange h: "barrier", each program's h stored and the row's programs meeting at step_barrier
# (an atomic arrival, then polling the counter, then loading h: on an H100 the resident regime's exchange alone took
# 1.0-1.3 us a step at H = 128-256), or "flagged" (fp32 and half precision), each value stored with its step's tag in
# one 64-bit word which the readers poll until every tag is current, so the data is its own barrier (one round trip
# through L2 instead of three, as NCCL's LL protocol), up to MAX_FLAGGED_H (fit.py's "flag" rows: without spills for
# sm_80 and sm_90; the GRU at 512, 32 warps of 64 registers, spilled 32-80 bytes). Forced only (force_exchange):
# on an H200 (tests/test_cuda.py::test_split_vector_regime_matches_cudnn, fp32, B = 2, bidirectional, packed)
# programs of 16 units at H = 256 came out up to 1.6e-2 off cuDNN in 3 of 5 runs (the GRU twice, the LSTM once; at 8
# and 4 units, the RNN at 1000 and the held regime's split programs, never). The failing launches alone gave more
# threads than h has words (16 warps for 256: Triton's layout of the polled words, sizePerThread 1 over 16 warps in
# the TTGIR, holds each word twice), so two warps load each word at different times, the loop's tl.min checks one
# copy's tag, and the product may read the other, stale copy (the barrier's load comes after the barrier, so every
# copy is current). vector_launch now gives flagged programs at most BLOCK_H / 32 warps (16 units at 256: 8
# warps, 127-180 registers, no spills; at 128: 4 warps, 245-255 registers, no spills but the fp32 GRU's 8 bytes
# for sm_80 with Triton 3.6; fit.py), not yet run on a GPU.
# Timed there (latency/forced/), it took the split vector step from 1.15-1.41 to 1.09-1.19 us at H = 128 and, with 4
# units a program, to 1.17-1.21 at 256, B = 1, where the held regime (AUTO_HELD_H) takes 0.66-0.82 and 1.46-1.69.
# "cluster" and "cluster-async" (the held regime's split programs only, sm_90): a batch tile's programs form one
# thread-block cluster and write their units of h into each other's shared memory, without a round trip through L2
# (the grid barrier's exchange alone took 1.23-1.40 us a step on an H200 for the split vector and resident regimes'
# programs, latency/: exchange, against the held regime's whole step of 1.46-2.00 us at H = 256), then meet at the
# cluster's hardware barrier ("cluster"; its release is a MEMBAR.ALL.GPU) or, the writes st.async counted by an
# mbarrier in each receiver, wait for their data alone ("cluster-async"; held.py has both). Cross-compiled (Triton 3.6
# and 3.9, sm_90; fit.py's rows of those names) and run under the interpreter with their PTX emulated, not on a GPU:
# forced, until one checks and times them.
EXCHANGES = ("barrier", "flagged", "cluster", "cluster-async")
CLUSTER_EXCHANGES = {"cluster": 1, "cluster-async": 2}  # the held split kernels' CLUSTER
MAX_CLUSTER = 8  # programs a cluster may have on any sm_90 device (CUDA's portable cluster size)
MAX_FLAGGED_H = {"lstm": 256, "gru": 256, "rnn": 1024}
# Alternatives cross-compiled and not built (sm_90, bf16, Triton 3.9; a warp's time-loop SASS a step, fit.py --loop):
# programs of 32 units fit (the LSTM at 256: 32 warps of 64 registers with the barrier; flagged, 28 bytes spilled) but
# issue 267 instructions a warp, 8544 a program, against 16 units' 3856 (241 a warp, 16 warps): twice the issue time for
# half the programs. Two 8-warp programs of 16 units an SM (at most 128 registers: 121-127, no spills, either exchange;
# 401 instructions a warp for the LSTM at 256) would let H = 256, B = 16 split (256 programs), issuing 1.7 times as much
# an SM a step (6416 against 3856). One program a row reloading W_hh from L1 every step at H = 128 (the LSTM: 128 KiB a
# step) spilled 200 bytes with 16 warps and issues 838 instructions a warp (1530 with 8): slower than split. And tl.dot
# keeps a loop-invariant W_hh in shared memory, loading it into registers inside the time loop (a local_load there in
# the TTGIR, for sm_80 and sm_90, W as either operand): the persistent regime's limit, which only explicit layouts
# (Gluon, which the interpreter does not run) could lift: the held regime, below. One vector program a row holding the
# LSTM's W_hh at H = 128 as bf16 pairs in int32 words (half the registers; an opaque inline-asm move each step keeps the
# compiler from hoisting their conversion, which spilled 220-380 bytes without it) fits, but issues 707 instructions a
# warp with 16 warps and 383 with 32 (Triton 3.6): 2800-3100 cycles a step, slower than split.
VECTOR_UNITS = 16
# Narrower split programs, forced only (force_units) until a GPU times them: vector_warps scales the warps with the
# units, so a warp holds as many weights and issues about as many instructions a step whatever the units (LSTM at 128
# and 256, sm_90, bf16: 228-242 a warp with 4, 8 or 16 units at the barrier, 45-63 more flagged), and a program of 8
# units issues half what one of 16 does, where the 16-unit step's math took 0.21 us at H = 128 and 0.51 at 256 on the
# H100 beyond the exchange (latency/: kernel minus exchange, B = 1); for twice the programs a row. All of them (LSTM and
# GRU at 128 and 256, RNN at 256 and 1024, either exchange) compile without spills for sm_80 and sm_90 with Triton 3.6,
# the LSTM's and GRU's for sm_90 with 3.9 too.
SPLIT_UNITS = (4, 8, 16)
AUTO_SPLIT_VECTOR_H = {"lstm": 256, "gru": 256, "rnn": 1024}
MAX_SPLIT_VECTOR_H = {("lstm", "fp32"): (128, 256), ("lstm", "half"): (128, 256), ("lstm", "fp64"): (32, 32),
                      ("gru", "fp32"): (128, 256), ("gru", "half"): (128, 512), ("gru", "fp64"): (32, 32),
                      ("rnn", "fp32"): (1024, 1024), ("rnn", "half"): (1024, 1024), ("rnn", "fp64"): (256, 256)}
# The held regime (kernels/held.py; the dispatcher's choice up to AUTO_HELD_H, else force_regime("held")): an
# inference forward (the RNN's forward always) in fp16/bf16 whose programs of HELD_ROWS batch rows hold every gate
# block of W_hh in registers as tensor-core operands (mma.sync m16n8k16, HELD_UNITS units a warp), written in Gluon
# because tl.dot keeps them in shared memory (above). Up to MAX_HELD_H, multiples of 16: cross-compiled (fit.py's
# "_held" rows, Triton 3.6 and 3.9, sm_80 and sm_90) the LSTM at 128 takes 8 warps of 224-231 registers, the GRU at
# 128 188-196, the RNN at 256 16 warps of 108-112, without spills, shared memory only for h; the LSTM at 100 (no
# 16-byte alignment) spilled 104 bytes, and one size up W_hh no longer fits one SM's registers. Its step issues an
# estimated 0.3-0.4 us at 128 (held.py's docstring) against the split vector regime's 1.2-1.45 us measured there.
# AUTO_HELD_H: up to which hidden size the dispatcher picks it for a forward it can run, per cell, with at most
# MAX_VECTOR_B rows (the batches timed). An H200 passed its cuDNN tests (tests/test_cuda.py, the split ones included)
# and timed its kernel (benchmarks/results/gpu-NVIDIA-H200/latency/forced/held against latency/: bf16, T = 1024, a
# step, B = 1 and 16) at 0.43-0.47 us for the LSTM and GRU at H = 64 (the vector regime 0.44-0.56), 0.66-0.82 at 128
# (the split vector regime 1.10-1.40) and, split at the barrier, 1.46-2.00 at 256 (the split vector and resident
# regimes 1.62-2.18). The RNN's held forward has not been timed. The split held kernels that the H200 checked have
# changed since (HELD_SPLIT_CHAINS, below: the product's chains, h staged for ldmatrix, one CTA barrier fewer), and a
# kernel whose programs wait on each other is the dispatcher's choice only once a GPU has checked it, so AUTO_HELD_H
# stops at MAX_HELD_H until scripts/gpu_recheck.sh passes its cuDNN tests (split_held) and times it (latency/
# held-barrier); until then the split vector regime, checked on that GPU, takes 256 (1.62-2.18 there).
# Beyond MAX_HELD_H the LSTM's and GRU's held programs split the units (HELD_SPLIT_UNITS each, 8 warps: four
# gate blocks of 32 units over 256 inputs are 64 registers a thread), which exchange h each step as the split vector
# regime's do (at the barrier, or flagged: force_exchange), up to MAX_HELD_SPLIT_H (multiples of HELD_SPLIT_UNITS),
# where a batch's programs fit on the device at once (B = 16 at 256: 16). Each step stages h in shared memory as the
# product's B operand and the product to bring a unit's gates to one thread.
# A warp takes 16 of a program's 128 gate rows over all H inputs: 16 tensor-core products (m16n8k16) a step at
# H = 256, which in one accumulator form a chain where each waits for the last (HMMA's latency, some 30 cycles, 16
# times: about 0.25 us a step). So the product accumulates HELD_SPLIT_CHAINS runs of the inputs apart and sums them
# (held._split_product): 4 chains of 4 that the warp issues interleaved. With h staged once in a swizzled buffer that
# ldmatrix.x4 reads (it was 32 single-word loads a warp), whose barrier also orders the last step's reads of the
# staged gates (one barrier a step fewer), the LSTM's and GRU's step at 256 (sm_90, fp16 and bf16, fit.py --loop,
# Triton 3.6 and 3.9) went from 228-234 SASS instructions a warp to 194-203 at the barrier, from 358-442 to 328-408
# flagged (the poll loop counted once), from 295-311 to 260-281 with "cluster" and from 236-247 to 206-219 with
# "cluster-async"; 158-170 registers (from 127-157), 8192-8256 bytes of shared memory (8192 and a cluster's
# buffer with a cluster exchange), no spills, for sm_80 (barrier and flagged) and sm_90. The H200's run above had
# one chain: the chains have been cross-compiled and run under the interpreter, not yet on a GPU.
HELD_ROWS, HELD_UNITS, HELD_SPLIT_UNITS = 8, 16, 32
HELD_SPLIT_CHAINS = 4
MAX_HELD_H = {"lstm": 128, "gru": 128, "rnn": 256}
MAX_HELD_SPLIT_H = {"lstm": 256, "gru": 256, "rnn": 256}
AUTO_HELD_H = {"lstm": 128, "gru": 128}
# The force_* overrides in effect: "regime" (force_regime), "tiling" ((BLOCK_H, BLOCK_K, stages, warps),
# force_tiling), "warps" (force_warps), "batch_tile" (force_batch_tile), "exchange" (force_exchange), "units"
# (force_units); absent: the dispatcher's choice.
_overrides: dict = {}


@dataclass(frozen=True)
class Launch:
    """How one fused kernel is launched: ``kernel[grid](..., **meta)``."""

    regime: str
    grid: tuple[int, ...]
    meta: dict
    cluster: int = 1  # programs a thread-block cluster (the held regime's cluster exchanges: held.launch_split)

    @property
    def tiled(self) -> bool:
        """Whether the tiled kernels run (the tiled and resident regimes)."""
        return self.regime in ("resident", "tiled")

    def counters(self, device) -> torch.Tensor:
        """One zeroed int32 arrival counter per batch tile (used by the tiled regime's grid barrier)."""
        return torch.zeros(self.grid[0], dtype=torch.int32, device=device)


def operand_width(dtype: torch.dtype) -> str:
    """The key of MAX_PERSISTENT_H for input ``dtype``: "fp64", "fp32" or "half" (fp16, bf16)."""
    return {torch.float64: "fp64", torch.float32: "fp32"}.get(dtype, "half")


def accumulator(dtype: torch.dtype) -> torch.dtype:
    """The type of the kernels' state and gradients for input ``dtype``: fp64 for fp64 input (so the
    kernels pass gradcheck), else fp32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def stored(dtype: torch.dtype) -> torch.dtype:
    """The type of the activations a training forward keeps for the backward, for input ``dtype``: the
    input's own in fp16/bf16 (as cuDNN keeps them; in fp32 the LSTM kept 1.6-1.7x cuDNN's activation
    memory on an H200), else the accumulator's. The backward computes in the accumulator type. Also the
    type of the h that the tiled and resident forwards exchange for the next step's product, which rounds
    it to its operands' type anyway: half the bytes read, and half the shared memory that stages them."""
    return dtype if dtype in (torch.float16, torch.bfloat16) else accumulator(dtype)


def max_persistent_h(cell: str, dtype: torch.dtype) -> int:
    """The persistent regime's largest hidden size for ``cell`` ("lstm", "gru", "rnn") and ``dtype``."""
    return MAX_PERSISTENT_H[cell, operand_width(dtype)]


def max_vector_h(cell: str, dtype: torch.dtype, aligned: bool = False) -> int:
    """The vector regime's largest hidden size for ``cell`` and ``dtype``: for any hidden size (MAX_VECTOR_H), or,
    ``aligned``, for multiples of 16 (ALIGNED_VECTOR_H where it has a larger entry)."""
    key = cell, operand_width(dtype)
    return max(MAX_VECTOR_H[key], ALIGNED_VECTOR_H.get(key, 0) if aligned else 0)


def max_split_vector_h(cell: str, dtype: torch.dtype, aligned: bool = False) -> int:
    """The largest hidden size the vector regime runs split over programs for ``cell`` and ``dtype``: for any hidden
    size, or, ``aligned``, for multiples of 16 (MAX_SPLIT_VECTOR_H)."""
    return MAX_SPLIT_VECTOR_H[cell, operand_width(dtype)][aligned]


def norm_fits(cell: str, dtype: torch.dtype, H: int, masked: bool = False) -> bool:
    """Whether the fused kernels run ``cell`` with layer norm at hidden size ``H`` in ``dtype`` (``masked``: with
    zoneout or recurrent dropout): in the persistent regime, in which one program holds all the gates of its
    rows (the tiled and resident regimes would need a reduction across programs every step), up to
    MAX_NORM_H; with masks not NORM_WITHOUT_MASKS', which backend="triton" runs and "auto" does not."""
    key = (cell, operand_width(dtype))
    return MAX_NORM_H[key] >= H and not (masked and key in NORM_WITHOUT_MASKS)


def dot_precision(dtype: torch.dtype) -> str:
    """tl.dot precision for fp32 operands: three-pass TF32 (about fp32 accuracy). Triton 3.9's compiler
    aborts on the "ieee" fp32 backward kernel for sm_90 (an LLVM SLP-vectorizer assertion, seen in
    fit.py); half-precision operands ignore the setting."""
    return "tf32x3" if dtype == torch.float32 else "ieee"


def num_warps(block_h: int, dtype: torch.dtype) -> int:
    """Warps per persistent program: enough that the weight blocks fit in registers without spilling, with
    margin (checked for sm_80 and sm_90 by rnnlab.kernels.fit: at BLOCK_H = 64, 8 warps left the LSTM
    backward at 128 registers with 32 bytes spilled, 16 warps use 104-119 with none). fp64 blocks take
    twice the registers (Triton 3.6 spilled the fp64 LSTM backward at BLOCK_H = 16 with 4 warps)."""
    size = block_h * (2 if dtype == torch.float64 else 1)
    return 4 if size <= 16 else (8 if size <= 32 else 16)


def block_h(H: int) -> int:
    """The persistent regime's power-of-two tile covering hidden size ``H`` (>= 16 for tl.dot)."""
    return max(16, triton.next_power_of_2(H))


def tiled_block_k(dtype: torch.dtype, proj: bool, backward: bool) -> int:
    """The tiled regime's forward reduction slice (backward_k gives the backward's from it) for input ``dtype``:
    HALF_TILED_BLOCK_K in fp16/bf16 but for the LSTM backward with a projection (``proj``, ``backward``), where
    it spills, else TILED_BLOCK_K."""
    return HALF_TILED_BLOCK_K if operand_width(dtype) == "half" and not (proj and backward) else TILED_BLOCK_K


def backward_k(block_k: int) -> int:
    """The backward's reduction slice for the forward's ``block_k``: BACKWARD_K times longer, since a forward
    slice feeds every gate's columns at once (BLOCK_K x 4 BLOCK_H weights, common.gate_rows) and a backward one
    reduces over every gate (K = 4H for the LSTM) into one gate's width (BLOCK_K x BLOCK_H): slices of the
    same size, and a step waits on as few of them."""
    return BACKWARD_K * block_k


def max_resident_h(cell: str, dtype: torch.dtype, backward: bool = False, aligned: bool = False) -> int:
    """The resident regime's largest hidden size for ``cell``, ``dtype`` and direction: for any hidden size
    (MAX_RESIDENT_H), or, ``aligned``, for multiples of 16 (ALIGNED_RESIDENT_H where it has a larger entry)."""
    key = cell, operand_width(dtype)
    largest = ALIGNED_RESIDENT_H.get(key, (0, 0))[backward] if aligned else 0
    return max(MAX_RESIDENT_H[key][backward], largest)


def grid_sync_enabled() -> bool:
    """Whether programs may meet at a grid barrier (the resident regime, and the tiled one spread over
    SMs): on by default, off with ``RNNLAB_GRID_SYNC=0``, never under the interpreter (it runs one program
    at a time, so the barrier would deadlock)."""
    value = os.environ.get("RNNLAB_GRID_SYNC", "1")
    if value not in ("0", "1"):
        raise ValueError(f"RNNLAB_GRID_SYNC must be 0 (one program per batch tile) or 1 (the default: "
                         f"programs meet at a grid barrier); got {value!r}")
    return value == "1" and not INTERPRET


@contextmanager
def force_regime(regime: str | None):
    """Run the fused kernels in ``regime`` ("vector", "persistent", "resident", "tiled", "held"; None: the
    dispatcher's choice) inside the block. The vector, persistent, resident and held regimes still refuse shapes they
    cannot run; "vector" and "held" forwards only (backwards run where the dispatcher puts them)."""
    if regime is not None and regime not in REGIMES:
        raise ValueError(f"regime must be one of {REGIMES} or None, got {regime!r}")
    with _override("regime", regime):
        yield


@contextmanager
def force_tiling(block_h: int, block_k: int, stages: int, warps: int):
    """Run the tiled regime with column tiles of ``block_h`` hidden units, the forward's reduction slices of
    ``block_k`` (the backward's: backward_k), ``stages`` software-pipelining stages and ``warps`` warps a
    program inside the block, instead of the TILED_* choices, which are not tuned on a GPU yet
    (benchmarks/tune.py times the candidates)."""
    for name, value in (("block_h", block_h), ("block_k", block_k), ("warps", warps)):
        if value < (1 if name == "warps" else 16) or value & (value - 1):
            least = "1" if name == "warps" else "16 (the smallest tl.dot tile)"
            raise ValueError(f"{name} must be a power of two >= {least}; got {value}")
    if stages < 1:
        raise ValueError(f"stages must be >= 1; got {stages}")
    with _override("tiling", (block_h, block_k, stages, warps)):
        yield


@contextmanager
def force_warps(warps: int):
    """Launch the vector, persistent and resident regimes' programs with ``warps`` warps inside the block, each
    thread allowed every register the block may have (65536 / (32 warps), at most 255), instead of
    vector_warps, num_warps and RESIDENT_WARPS, which are chosen to compile without spills, not timed
    (benchmarks/tune.py times the alternatives; fit.py does not check forced choices)."""
    if warps < 1 or warps & (warps - 1) or warps > 32:
        raise ValueError(f"warps must be a power of two from 1 to 32; got {warps}")
    with _override("warps", warps):
        yield


@contextmanager
def force_exchange(exchange: str):
    """Let split programs exchange h as ``exchange`` (see EXCHANGES) inside the block: "barrier", "flagged" (the
    vector and held regimes; beyond MAX_FLAGGED_H, and in fp64, whose values fill a 64-bit word, at the barrier),
    "cluster" or "cluster-async" (the held regime on sm_90; the vector regime's at the barrier). "flagged" is an
    experiment: an H200 ran it wrong at times, with more threads than h has words (EXCHANGES), which force_warps can
    still ask for; the cluster exchanges have not run on a GPU yet."""
    if exchange not in EXCHANGES:
        raise ValueError(f"exchange must be one of {EXCHANGES}, got {exchange!r}")
    with _override("exchange", exchange):
        yield


@contextmanager
def force_units(units: int):
    """Split the vector regime's programs by ``units`` hidden units each (one of SPLIT_UNITS) inside the block,
    instead of VECTOR_UNITS, where it splits them (benchmarks/latency.py times the alternatives; fit.py checks the
    default only)."""
    if units not in SPLIT_UNITS:
        raise ValueError(f"units must be one of {SPLIT_UNITS} (hidden units a split vector-regime program); "
                         f"got {units}")
    with _override("units", units):
        yield


@contextmanager
def force_batch_tile(rows: int):
    """Launch the resident regime with batch tiles of ``rows`` (BLOCK_B or WIDE_BLOCK_B) inside the block
    instead of batch_rows' choice (benchmarks/tune.py times one against the other). fit.py checks the wide
    tiles only where batch_rows picks them (sm_90, fp16/bf16, H a multiple of 16)."""
    if rows not in (BLOCK_B, WIDE_BLOCK_B):
        raise ValueError(f"rows must be {BLOCK_B} or {WIDE_BLOCK_B} (batch rows a resident program); got {rows}")
    with _override("batch_tile", rows):
        yield


@contextmanager
def _override(name: str, value):
    """``_overrides[name]`` set to ``value`` (None: the dispatcher's choice) inside the block, restored after it."""
    previous = _overrides.get(name)
    _overrides[name] = value
    try:
        yield
    finally:
        _overrides[name] = previous


def resident_rows(x: torch.Tensor, H: int, B: int) -> int:
    """Batch rows a resident program for input ``x``, hidden size ``H`` and batch ``B``: force_batch_tile's,
    else batch_rows' choice for ``x``'s device (BLOCK_B off CUDA)."""
    if forced := _overrides.get("batch_tile"):
        return forced
    if not x.is_cuda:
        return BLOCK_B
    return batch_rows(torch.cuda.get_device_capability(x.device), _sms(x), x.dtype, H, B)


def batch_rows(capability: tuple[int, int], sms: int, dtype: torch.dtype, H: int, B: int) -> int:
    """Batch rows a resident program on a device of ``capability`` with ``sms`` multiprocessors: WIDE_BLOCK_B
    where BLOCK_B's tiles would need more programs than ``sms`` and WIDE_BLOCK_B's would not (fp16/bf16, H a
    multiple of 16, WIDE_CAPABILITY), else BLOCK_B."""
    columns = triton.cdiv(H, RESIDENT_BLOCK_H)
    wide = (capability == WIDE_CAPABILITY and operand_width(dtype) == "half" and H % 16 == 0
            and triton.cdiv(B, BLOCK_B) * columns > sms >= triton.cdiv(B, WIDE_BLOCK_B) * columns)
    return WIDE_BLOCK_B if wide else BLOCK_B


def _all_registers(warps: int) -> int:
    """The most registers a thread of a ``warps``-warp program may have (one program per SM)."""
    return min(255, 65536 // (32 * warps))


_launches: Recorder[tuple[bool, Launch]] = Recorder()


def recorded_launches():
    """The launches plan() chooses while the block runs, a list of (backward, launch) in order, filled as the
    kernels run: what ran, for the benchmarks' notes (benchmarks/run.py), rather than what plan() would choose
    for arguments rebuilt outside the layer (it took the vector regime for a forward with layer norm)."""
    return _launches.recording()


def plan(cell: str, x: torch.Tensor, H: int, B: int, proj: bool = False, backward: bool = False,
         norm: bool = False, inference: bool = False) -> Launch:
    """The launch of ``cell``'s kernel as _plan chooses it, recorded where recorded_launches asks."""
    launch = _plan(cell, x, H, B, proj, backward, norm, inference)
    _launches.add((backward, launch))
    return launch


def _plan(cell: str, x: torch.Tensor, H: int, B: int, proj: bool = False, backward: bool = False,
          norm: bool = False, inference: bool = False) -> Launch:
    """The launch of ``cell``'s forward (or ``backward``) kernel for input ``x`` (T, B, I), hidden size ``H``
    and batch ``B``; an LSTM with a projection (``proj``) runs in the tiled regime, layer norm (``norm``) in
    the persistent one only (norm_fits), the vector regime a forward that keeps nothing for a backward and
    takes no cell variant (``inference``). The two directions may run in different regimes (they share the
    stored activations' layout)."""
    limit = 0 if proj else max_persistent_h(cell, x.dtype)
    width = operand_width(x.dtype)
    forced = _overrides.get("regime")
    if forced in ("vector", "held") and backward:  # forward-only regimes: the backward is the dispatcher's
        forced = None
    if norm and (proj or not norm_fits(cell, x.dtype, H) or forced not in (None, "persistent")):
        raise NotImplementedError(
            f"{cell.upper()}: the fused kernels take layer norm in their persistent regime only (one program "
            f"holds a row's every gate), hidden sizes up to {MAX_NORM_H[cell, width]} for {x.dtype}; got "
            f"hidden_size={H}{' with a projection' if proj else ''}. Use backend='torch' or 'auto', which run it "
            "step by step"
        )
    if forced == "held" or (forced is None and not backward and B <= MAX_VECTOR_B and AUTO_HELD_H.get(cell, 0) >= H):
        if (problem := _held_problem(cell, x, H, B, proj, inference and not norm)) is None:
            return held_launch(cell, x, H, B)
        if forced == "held":
            raise NotImplementedError(f"the held regime cannot run this {cell.upper()}: {problem}. Leave the regime "
                                      "to the dispatcher")
    if forced == "vector" or (forced is None and not backward):
        split = forced == "vector" or AUTO_SPLIT_VECTOR_H[cell] >= H
        problem = _vector_problem(cell, x, H, B, proj, backward, inference and not norm, split=split)
        if problem is None:
            return vector_launch(cell, x, H, B)
        if forced == "vector":
            raise NotImplementedError(f"the vector regime cannot run this {cell.upper()}: {problem}. Leave the "
                                      "regime to the dispatcher")
    batch_tiles = triton.cdiv(B, BLOCK_B)
    # None: the resident regime if it can run, else the tiled one
    regime = forced or ("persistent" if limit >= H else None)
    if regime == "persistent":
        if limit < H:
            raise NotImplementedError(
                f"the persistent regime holds {cell.upper()} hidden sizes up to {limit} for {x.dtype}"
                f"{' with a projection' if proj else ''}; got hidden_size={H}. Leave the regime to the "
                "dispatcher (it picks the tiled one)"
            )
        bh = max(block_h(H), NORM_BLOCK_H.get((cell, width), 0) if norm else 0)
        timed = TIMED_WARPS.get((cell, operand_width(x.dtype), backward, bh))
        warps = _overrides.get("warps") or timed or num_warps(bh, x.dtype)
        meta = {**common_meta(x), "BLOCK_H": bh, "num_warps": warps}
        key = (cell, operand_width(x.dtype), backward)
        if key in ALL_REGISTERS or (norm and key in NORM_ALL_REGISTERS) or _overrides.get("warps"):
            meta["maxnreg"] = _all_registers(warps)
        return Launch(regime, (batch_tiles,), meta)
    if regime in (None, "resident"):
        rows = resident_rows(x, H, B)
        problem = _resident_problem(cell, x, H, triton.cdiv(B, rows), proj, backward)
        if problem is None:
            return resident_launch(x, H, B, rows)
        if regime == "resident":
            raise NotImplementedError(f"the resident regime cannot run {cell.upper()} hidden_size={H}: {problem}. "
                                      "Leave the regime to the dispatcher")
    bk = tiled_block_k(x.dtype, proj, backward)
    bh, bk, stages, warps = _overrides.get("tiling") or (TILED_BLOCK_H, bk, TILED_STAGES, TILED_WARPS)
    if backward:
        bk = backward_k(bk)
    programs = 1
    if grid_sync_enabled() and x.is_cuda:
        programs = max(1, min(triton.cdiv(H, bh), _sms(x) // batch_tiles))
    return Launch("tiled", (batch_tiles, programs),
                  {**common_meta(x), **grid_sync_meta(programs), "BLOCK_H": bh, "BLOCK_K": bk, "K_RES": 0,
                   "num_warps": warps, "num_stages": stages})


def vector_warps(cell: str, units: int, block: int, dtype: torch.dtype) -> int:
    """Warps of a vector-regime program for ``cell`` holding ``units`` rows of each gate block, hidden units padded
    to ``block``, input ``dtype``: about 32 weights a thread (16 in fp64; a power of two, at most 32), so its part
    of W_hh stays in registers."""
    weights = {"lstm": 4, "gru": 3, "rnn": 1}[cell] * units * block * (2 if dtype == torch.float64 else 1)
    return min(32, triton.next_power_of_2(triton.cdiv(weights, 1024)))


def vector_launch(cell: str, x: torch.Tensor, H: int, B: int) -> Launch:
    """The vector regime's launch for ``cell``, input ``x``, hidden size ``H`` and batch ``B``, without checking that
    it can run here (plan does): one program per batch row holding every unit where max_vector_h allows, else
    (split) the units in tiles of split_units(), one program each, a row's programs exchanging h each step (at a
    grid barrier, or FLAGGED: see EXCHANGES)."""
    bh = block_h(H)
    units = bh if max_vector_h(cell, x.dtype, aligned=H % 16 == 0) >= H else split_units()
    programs = triton.cdiv(H, units)
    timed = TIMED_VECTOR_WARPS.get((cell, operand_width(x.dtype), bh)) if programs == 1 else None
    flagged = (programs > 1 and x.dtype != torch.float64 and MAX_FLAGGED_H[cell] >= H
               and _overrides.get("exchange") == "flagged")
    warps = vector_warps(cell, units, bh, x.dtype)
    if flagged:  # no thread holds a copy of another's word of h (EXCHANGES)
        warps = min(warps, max(1, bh // 32))
    warps = _overrides.get("warps") or timed or warps
    meta = {"BLOCK_H": bh, "BLOCK_U": units, "num_warps": warps, **grid_sync_meta(programs), "FLAGGED": flagged}
    # one program an SM (at most 16 rows; split, a row's programs all resident), whose registers it may all take:
    # under Triton's default cap a 1-warp GRU program at H = 16 (fp32, sm_80) spilled at 128
    meta["maxnreg"] = _all_registers(warps)
    return Launch("vector", (B, programs), meta)


def held_launch(cell: str, x: torch.Tensor, H: int, B: int) -> Launch:
    """The held regime's launch for ``cell``, input ``x``, hidden size ``H`` and batch ``B``, without checking that it
    can run here (plan does): one program per HELD_ROWS batch rows, a warp per HELD_UNITS hidden units (padded to a
    power of two), each thread allowed every register its share of the SM has; beyond MAX_HELD_H, split: H /
    HELD_SPLIT_UNITS programs a batch tile, 8 warps each, exchanging h at the barrier, flagged or, a cluster of them a
    tile, through each other's shared memory (force_exchange)."""
    tiles = triton.cdiv(B, HELD_ROWS)
    if MAX_HELD_H[cell] < H:
        programs = H // HELD_SPLIT_UNITS
        meta = {"BLOCK_U": HELD_SPLIT_UNITS, "BLOCK_K": triton.next_power_of_2(H), "CHAINS": HELD_SPLIT_CHAINS,
                "num_warps": 8, "maxnreg": _all_registers(8), **grid_sync_meta(programs)}
        if (cluster := CLUSTER_EXCHANGES.get(_overrides.get("exchange"), 0)):  # a 1-D grid of clusters, not cooperative
            return Launch("held", (tiles,), {**meta, "launch_cooperative_grid": False, "FLAGGED": False,
                                             "CLUSTER": cluster}, cluster=programs)
        return Launch("held", (tiles, programs),
                      {**meta, "FLAGGED": _overrides.get("exchange") == "flagged", "CLUSTER": 0})
    bh = max(HELD_UNITS, triton.next_power_of_2(H))
    warps = bh // HELD_UNITS
    return Launch("held", (tiles,), {"BLOCK_H": bh, "num_warps": warps, "maxnreg": _all_registers(warps)})


def _forward_only_problem(proj: bool, inference: bool) -> str | None:
    """Why a forward-only regime (vector, held) cannot run a launch: it is not an ``inference`` forward (one that
    keeps nothing for a backward and takes no cell variant), or it has a projection (``proj``); None if neither."""
    if not inference:
        return "it runs forwards that keep nothing for a backward, without zoneout, recurrent dropout or layer norm"
    if proj:
        return "it has no projection (proj_size)"
    return None


def _held_problem(cell: str, x: torch.Tensor, H: int, B: int, proj: bool, inference: bool) -> str | None:
    """Why the held regime cannot run this launch here, or None if it can."""
    if (problem := _forward_only_problem(proj, inference)) is not None:
        return problem
    if x.dtype not in (torch.float16, torch.bfloat16):
        return f"its products take fp16 or bf16 (tensor cores); got {x.dtype}"
    if H % HELD_UNITS or MAX_HELD_SPLIT_H[cell] < H or (MAX_HELD_H[cell] < H and H % HELD_SPLIT_UNITS):
        split = (f", split over programs multiples of {HELD_SPLIT_UNITS} up to {MAX_HELD_SPLIT_H[cell]}"
                 if MAX_HELD_SPLIT_H[cell] > MAX_HELD_H[cell] else "")
        return (f"it holds hidden sizes that are multiples of {HELD_UNITS} up to {MAX_HELD_H[cell]}{split}; got "
                f"hidden_size={H}")
    if INTERPRET or not x.is_cuda:
        return "its kernels are Gluon, which runs on CUDA only (not under the Triton interpreter)"
    if MAX_HELD_H[cell] < H and (problem := _split_held_problem(x, held_launch(cell, x, H, B))):
        return f"split, {problem}"
    if problem := gluon_missing():
        return problem
    if (capability := torch.cuda.get_device_capability(x.device)) not in FITTED_TARGETS:
        return f"it is cross-compiled for sm_80 and sm_90 only; got sm_{capability[0]}{capability[1]}"
    return None


def gluon_missing() -> str | None:
    """Why this Triton cannot build the held regime's kernels, or None: they are Gluon's, with its mma_v2 (Triton
    3.6 and later; 3.4 and 3.5 have Gluon without it). Imports only Gluon itself: an error inside held.py must
    surface where its kernels launch or compile, not read as this."""
    try:
        from triton.experimental.gluon.language.nvidia.ampere import mma_v2  # noqa: F401
    except ImportError as err:
        return f"its kernels are Gluon's, which this Triton ({triton.__version__}) lacks ({err}): it needs 3.6 or later"
    return None


def _split_held_problem(x: torch.Tensor, launch: Launch) -> str | None:
    """Why a split held ``launch`` cannot run for input ``x`` here (its programs, or its clusters), or None."""
    if launch.cluster == 1:
        return _co_resident_problem(x, math.prod(launch.grid))
    if (capability := torch.cuda.get_device_capability(x.device)) != (9, 0):
        return f"the cluster exchange is compiled for sm_90 only; got sm_{capability[0]}{capability[1]}"
    if launch.cluster > MAX_CLUSTER:
        return f"its clusters would have {launch.cluster} programs, more than MAX_CLUSTER ({MAX_CLUSTER})"
    return None


def split_units() -> int:
    """Hidden units a split vector-regime program takes: force_units', else VECTOR_UNITS."""
    return _overrides.get("units") or VECTOR_UNITS


def _vector_problem(cell: str, x: torch.Tensor, H: int, B: int, proj: bool, backward: bool, inference: bool,
                    split: bool) -> str | None:
    """Why the vector regime cannot run this launch, or None if it can; ``split``: may it split the units over
    programs (where timed faster, AUTO_SPLIT_VECTOR_H, or forced)."""
    if (problem := _forward_only_problem(proj, inference and not backward)) is not None:
        return problem
    if B > MAX_VECTOR_B:
        return f"it runs batches of up to {MAX_VECTOR_B} rows (one program each); got {B}"
    if (largest := max_vector_h(cell, x.dtype, aligned=H % 16 == 0)) >= H:
        return None
    more = _aligned_note(largest, max_vector_h(cell, x.dtype, aligned=True))
    held = f"one program holds hidden sizes up to {largest} for {x.dtype}{more}; got hidden_size={H}"
    if not split:
        return held
    if (most := max_split_vector_h(cell, x.dtype, aligned=H % 16 == 0)) < H:
        more = _aligned_note(most, max_split_vector_h(cell, x.dtype, aligned=True))
        return f"{held}, and split over programs up to {most}{more}"
    if (problem := _co_resident_problem(x, B * triton.cdiv(H, split_units()))) is not None:
        return f"{held}; split, {problem}"
    return None


def _aligned_note(largest: int, aligned: int) -> str:
    """What follows a hidden-size limit ``largest`` whose limit for multiples of 16 is ``aligned``: where that one
    is larger, " (ALIGNED for multiples of 16)", else nothing."""
    return f" ({aligned} for multiples of 16)" if aligned > largest else ""


def _co_resident_problem(x: torch.Tensor, programs: int) -> str | None:
    """Why ``programs`` programs that meet at a grid barrier (so must all be resident at once) cannot run for input
    ``x`` here, or None if they can."""
    if not (grid_sync_enabled() and x.is_cuda):
        return (f"{programs} programs would meet at a grid barrier, which needs CUDA without RNNLAB_GRID_SYNC=0 "
                "(the interpreter runs one program at a time)")
    if programs > _sms(x):
        return f"it needs {programs} programs at once, more than the device's {_sms(x)} multiprocessors"
    return None


def common_meta(x: torch.Tensor) -> dict:
    """The launch parameters every regime shares, from input ``x``'s dtype. fp16/bf16 products run in fp32
    under the interpreter (its bf16 tl.dot is wrong); fp64 ones in fp64."""
    return {"BLOCK_B": BLOCK_B, "DOT_F32": x.dtype != torch.float64 and (INTERPRET or x.dtype == torch.float32),
            "PRECISION": dot_precision(x.dtype)}


def grid_sync_meta(programs: int) -> dict:
    """The launch parameters of a batch tile spread over ``programs`` programs: with more than one they meet
    at step_barrier (GRID_SYNC), which needs them all resident at once, so the launch is cooperative (CUDA
    refuses it, rather than deadlocking, when the grid cannot be co-resident)."""
    return {"GRID_SYNC": programs > 1, "launch_cooperative_grid": programs > 1}


def resident_launch(x: torch.Tensor, H: int, B: int, rows: int = BLOCK_B) -> Launch:
    """The resident regime's launch for input ``x``, hidden size ``H`` and batch ``B``, without checking that
    it can run here (plan does): one program per RESIDENT_BLOCK_H hidden units and batch tile of ``rows``."""
    programs = triton.cdiv(H, RESIDENT_BLOCK_H)
    warps = _overrides.get("warps") or RESIDENT_WARPS
    return Launch("resident", (triton.cdiv(B, rows), programs),
                  {**common_meta(x), "BLOCK_B": rows, **grid_sync_meta(programs), "BLOCK_H": RESIDENT_BLOCK_H,
                   "BLOCK_K": TILED_BLOCK_K, "K_RES": block_h(H), "num_warps": warps,
                   "num_stages": TILED_STAGES, "maxnreg": _all_registers(warps)})


def _sms(x: torch.Tensor) -> int:
    return torch.cuda.get_device_properties(x.device).multi_processor_count


def _resident_problem(cell: str, x: torch.Tensor, H: int, batch_tiles: int, proj: bool, backward: bool) -> str | None:
    """Why the resident regime cannot run this shape here, or None if it can."""
    if proj:
        return "it has no projection (proj_size)"
    if (largest := max_resident_h(cell, x.dtype, backward, aligned=H % 16 == 0)) < H:
        more = _aligned_note(largest, max_resident_h(cell, x.dtype, backward, aligned=True))
        return f"its {'backward' if backward else 'forward'} holds hidden sizes up to {largest} for {x.dtype}{more}"
    programs = batch_tiles * triton.cdiv(H, RESIDENT_BLOCK_H)
    if programs == batch_tiles:  # one tile covers H: no program waits on another
        return None
    return _co_resident_problem(x, programs)
