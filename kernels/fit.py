"""Cross-compile every kernel configuration the dispatcher can choose, for sm_80 and sm_90, without a
GPU, and report registers, shared memory and spills (Triton's compiler and the ptxas in its wheel).

    python -m rnnlab.kernels.fit                        # every configuration, a table
    python -m rnnlab.kernels.fit gru_fwd_tiled          # every configuration of one kernel
    python -m rnnlab.kernels.fit --quick                # a subset (the test suite's default)
    python -m rnnlab.kernels.fit lstm_bwd sm_90 bf16 64   # one persistent configuration (hidden size)
    python -m rnnlab.kernels.fit lstm_bwd_tiled sm_90 bf16 1024 grid   # one tiled one, grid barrier
    python -m rnnlab.kernels.fit lstm_fwd sm_90 bf16 64 - infer   # a forward that stores nothing for a backward
    python -m rnnlab.kernels.fit lstm_fwd_tiled sm_90 bf16 1024 resident train - a16   # H a multiple of 16
    python -m rnnlab.kernels.fit lstm_fwd sm_90 bf16 64 - infer - a16 --loop   # and its time loop's SASS counts
    python -m rnnlab.kernels.fit lstm_fwd_vector sm_90 bf16 64 - - - a16   # the vector regime (inference)
    python -m rnnlab.kernels.fit gru_bwd_tiled sm_90 bf16 256 resident - - - masks   # with zoneout and dropout
    python -m rnnlab.kernels.fit lstm_bwd sm_90 bf16 32 - - - - norm   # with layer norm ("all": and the masks)
    python -m rnnlab.kernels.fit lstm_fwd_vector sm_90 bf16 256 flag - - a16 --units 8   # split, forced 8 units

Each kernel's configurations compile in a process of their own (a compiler crash is reported, not fatal).
tests/test_kernel_fit.py asserts that every one fits. Must run without TRITON_INTERPRET (interpreted
kernels cannot be compiled).
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.backends.nvidia.compiler import get_ptxas
from triton.compiler import ASTSource

from . import gru, lstm, rnn
from .dispatch import (
    BLOCK_B,
    CLUSTER_EXCHANGES,
    FITTED_TARGETS,
    HELD_ROWS,
    HELD_SPLIT_UNITS,
    HELD_UNITS,
    MAX_FLAGGED_H,
    MAX_HELD_H,
    MAX_HELD_SPLIT_H,
    MAX_NORM_H,
    MAX_PERSISTENT_H,
    NORM_BLOCK_H,
    NORM_WITHOUT_MASKS,
    WIDE_BLOCK_B,
    WIDE_CAPABILITY,
    force_exchange,
    force_regime,
    force_units,
    gluon_missing,
    held_launch,
    max_resident_h,
    max_split_vector_h,
    max_vector_h,
    plan,
    resident_launch,
    stored,
    vector_launch,
)

if gluon_missing() is None:  # not in a try: an error inside held.py must not drop its kernels from the table silently
    from triton.experimental.gluon._runtime import GluonASTSource

    from . import held
else:
    GluonASTSource = held = None


def _ptxas(capability: int):
    """Triton's ptxas for targets of ``capability`` (before Triton 3.6 get_ptxas takes none: one for all)."""
    return get_ptxas(capability) if inspect.signature(get_ptxas).parameters else get_ptxas()


CELL_MODULES = {"lstm": lstm, "gru": gru, "rnn": rnn}
KERNELS = {f"{name}_{kind}": getattr(module, f"_{name}_{kind}_kernel") for name, module in CELL_MODULES.items()
           for kind in ("fwd", "bwd", "fwd_tiled", "bwd_tiled", "fwd_vector")}
if held is not None:
    KERNELS.update({f"{name}_fwd_held": getattr(held, f"_{name}_fwd_held_kernel") for name in CELL_MODULES})
    KERNELS.update({f"{name}_fwd_held_split": getattr(held, f"_{name}_fwd_held_split_kernel")
                    for name in ("lstm", "gru")})
TARGETS = {f"sm_{major}{minor}": (10 * major + minor, shared) for (major, minor), shared in FITTED_TARGETS.items()}
WIDE_TARGET = "sm_{}{}".format(*WIDE_CAPABILITY)  # where dispatch.batch_rows may pick wide resident programs
REGISTERS_PER_SM = 65536  # a program's threads times their registers must fit (or it cannot launch)
TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "fp64": torch.float64}
DTYPES = tuple(TORCH_DTYPES)
ACC_BUFFERS = {"HF", "DHP", "HN", "CN", "DG", "DGH", "DH0", "DC0", "HS", "CS", "DHS", "DCS", "DHQ", "NS", "DR", "DLN"}
# the activations kept for the backward, and what a step's product reads: h (HQ; the GRU's beside its
# state in HS) and the gate gradients (DQ) (dispatch.stored)
STORED_BUFFERS = {"C", "G", "GHN", "HQ", "DQ", "RH"}
INT_BUFFERS = {"LEN", "COUNT"}
SCALARS = {"T", "B", "H", "P"}
SYNCS = ("loop", "grid")  # the tiled regime without and with the grid barrier
TILED_SHAPES = (128, 1024)  # the tiled regime's smallest and largest hidden sizes checked
RESIDENT_SHAPES = (16, 32, 64, 128, 256, 512, 1024)  # the resident regime's: each up to its max_resident_h
VECTOR_SHAPES = RESIDENT_SHAPES  # the vector regime's: one program a row, then split over programs ("grid")
HELD_SHAPES = (16, 32, 64, 128, 256)  # the held regime's, each up to MAX_HELD_H
SYNC_EXCHANGES = {"flag": "flagged", **{name: name for name in CLUSTER_EXCHANGES}}  # split, not "grid"
HELD_DTYPES = ("fp16", "bf16")  # its products' operands (tensor cores)


@dataclass
class Fit:
    """One compiled kernel configuration and what ptxas reported for it (a row of the report)."""

    kernel: str
    target: str
    dtype: str
    hidden: int  # the hidden size whose launch this is (its blocks are the dispatcher's for it)
    sync: str  # "-" (persistent, vector), one of SYNCS (tiled; the vector regime split over programs: "grid", or
    # "flag" with the flagged exchange, dispatch.EXCHANGES),
    # "resident" (the tiled kernels holding W_hh) or "wide" (resident, batch tiles of WIDE_BLOCK_B rows)
    mode: str  # "train" or "infer" for forwards that store what the backward reads (STORE), else "-"
    proj: str  # "proj" for the tiled LSTM with a projection (PROJ), else "-"
    align: str  # "a16": compiled as launched for H a multiple of 16 (_alignment), else "-": for any H
    variant: str  # "masks": with recurrent dropout and zoneout (DROP, ZONE, ZONE_C), "norm": layer norm (NORM,
    # persistent kernels), "all": both, else "-"
    num_warps: int
    registers: int
    shared: int
    spill_bytes: int  # spill stores + spill loads reported by ptxas

    @property
    def fits(self) -> bool:
        """Within the register (per thread and per program) and shared-memory limits and, in the
        persistent and resident regimes (whose point is that W_hh stays on chip), without spills. The
        tiled kernels stream W_hh from L2 anyway; ptxas spills a few bytes in some of them (8-192),
        reported in the table. The held regime keeps W_hh in registers: its shared memory holds only what a step
        stages (held_staging)."""
        holds_weights = self.sync in ("-", "resident", "wide") or self.kernel.endswith(("_vector", "_held", "_split"))
        staged = held_staging(self.kernel, self.hidden, self.sync)
        return (self.shared <= TARGETS[self.target][1] and self.registers <= 255
                and self.registers * self.num_warps * 32 <= REGISTERS_PER_SM
                and (self.spill_bytes == 0 or not holds_weights)
                and (staged is None or self.shared <= staged))


def held_staging(kernel: str, hidden: int, sync: str = "-") -> int | None:
    """The shared memory (bytes) a held-regime ``kernel``'s step stages at hidden size ``hidden``: h as the B operand
    (BLOCK_H x HELD_ROWS, 2 bytes each) and, split over programs, the product (four gate blocks of HELD_SPLIT_UNITS
    units, fp32) to bring a unit's gates to one thread, and with a cluster exchange (``sync`` in CLUSTER_EXCHANGES) its
    buffer and mbarriers (held.exchange_bytes), else Triton's scratch for the exchange's values across warps (the
    flagged poll's reduction: 8 bytes a warp; the barrier's broadcast: 4 bytes); None for the other regimes'
    kernels."""
    block = max(HELD_UNITS, triton.next_power_of_2(hidden))
    if kernel.endswith("_held_split"):
        exchange = held.exchange_bytes(block) if sync in CLUSTER_EXCHANGES else 8 * 8
        return 2 * block * HELD_ROWS + 4 * 4 * HELD_SPLIT_UNITS * HELD_ROWS + exchange
    return 2 * block * HELD_ROWS if kernel.endswith("_held") else None


def _signature(kernel: str, dt: str, flagged: bool = False) -> dict[str, str]:
    """Argument types of ``kernel`` for input dtype ``dt``: state and gradient buffers are in the accumulator
    type (fp32, fp64 for fp64 input), the stored activations in dispatch.stored's, lengths and counters
    int32, the other pointers the input dtype; upper-case flags are constexprs. ``flagged``: the vector regime's
    exchange buffer HQ holds int64 tagged words (common.flagged_ping_pong)."""
    acc = "*fp64" if dt == "fp64" else "*fp32"
    keep = "*" + next(name for name, t in TORCH_DTYPES.items() if t == stored(TORCH_DTYPES[dt]))

    def kind(arg: str) -> str:
        if flagged and arg == "HQ":
            return "*i64"
        if arg in SCALARS:
            return "i32"
        if arg in ACC_BUFFERS:
            return acc
        if arg in STORED_BUFFERS:
            return keep
        if arg in INT_BUFFERS:
            return "*i32"
        return "constexpr" if arg.isupper() and arg.endswith(_FLAGS) else f"*{dt}"
    return {arg: kind(arg) for arg in KERNELS[kernel].arg_names}


_FLAGS = ("REVERSE", "RELU", "BLOCK_B", "BLOCK_H", "BLOCK_U", "BLOCK_K", "DOT_F32", "PRECISION", "GRID_SYNC", "STORE",
          "FLAGGED", "CLUSTER", "CHAINS", "PROJ", "K_RES", "DROP", "ZONE", "ZONE_C", "ZS", "NORM")
# the cell variants' flags (rnnlab.kernels.common.variant_args; ZS: training's per-step zoneout weights) and the
# variants (Fit.variant) that turn them on
VARIANT_FLAGS = {"DROP": ("masks", "all"), "ZONE": ("masks", "all"), "ZONE_C": ("masks", "all"),
                 "ZS": ("masks", "all"), "NORM": ("norm", "all")}


def compile_one(kernel: str, target: str, dtype: str, hidden: int, sync: str = "-", mode: str = "-",
                proj: str = "-", align: str = "-", variant: str = "-") -> Fit:
    """Compile one configuration as the dispatcher would launch it for hidden size ``hidden`` and read its
    resource usage: for any hidden size that it pads to the same blocks, or with ``align`` "a16" for
    multiples of 16 (_alignment); with ``variant`` "masks", recurrent dropout and zoneout on, "norm" layer norm,
    "all" both."""
    config = (kernel, target, dtype, hidden, sync, mode, proj, align, variant)
    return _fit(config, *_compile(*config))


def _fit(config: tuple, compiled, num_warps: int) -> Fit:
    """The resource usage of ``compiled``, the configuration ``config`` (compile_one's arguments, all nine): its
    shared memory as launched (a cluster exchange's launch adds its buffer: held.launch_split)."""
    usage = resource_usage(compiled.asm["ptx"], TARGETS[config[1]][0])
    shared = compiled.metadata.shared
    if config[4] in CLUSTER_EXCHANGES:
        shared = held.cluster_metadata(compiled.metadata, 1, triton.next_power_of_2(config[3]))[2]
    return Fit(*config, num_warps, usage["registers"], shared, usage["spill_stores"] + usage["spill_loads"])


def _compile(kernel: str, target: str, dtype: str, hidden: int, sync: str, mode: str, proj: str, align: str,
             variant: str = "-"):
    """The compiled configuration (see compile_one) and its warps."""
    tiled = kernel.endswith("_tiled")
    x = torch.empty(0, BLOCK_B, 1, dtype=TORCH_DTYPES[dtype])
    if sync in ("resident", "wide"):  # plan() refuses it without a GPU to run on
        meta = dict(resident_launch(x, hidden, BLOCK_B, WIDE_BLOCK_B if sync == "wide" else BLOCK_B).meta)
    elif kernel.endswith("_vector") or "_held" in kernel:  # plan() refuses split launches ("grid") without a GPU
        launch = held_launch if "_held" in kernel else vector_launch
        with force_exchange(SYNC_EXCHANGES.get(sync, "barrier")):
            meta = dict(launch(kernel.split("_")[0], x, hidden, BLOCK_B).meta)
        split = meta.get("GRID_SYNC", False)
        if split != (sync in ("grid", *SYNC_EXCHANGES)):  # split over programs; one program a tile: "-"
            raise ValueError(f"{kernel} at hidden size {hidden} in {dtype} takes sync {'grid' if split else '-'}, "
                             f"not {sync}")
    else:
        with force_regime("tiled" if tiled else "persistent"):
            meta = dict(plan(kernel.split("_")[0], x, hidden, BLOCK_B, proj=proj == "proj",
                             backward="_bwd" in kernel, norm=variant in VARIANT_FLAGS["NORM"]).meta)
    options = {key: meta.pop(key) for key in ("num_warps", "num_stages", "maxnreg", "launch_cooperative_grid")
               if key in meta}
    constexprs = {"REVERSE": False, **meta}
    if tiled and sync not in ("resident", "wide"):  # plan() enables the grid barrier only on a CUDA device
        constexprs["GRID_SYNC"] = sync == "grid"
    if kernel.startswith("rnn"):
        constexprs["RELU"] = False
    if mode != "-":
        constexprs["STORE"] = mode == "train"
    if "PROJ" in KERNELS[kernel].arg_names:
        constexprs["PROJ"] = proj == "proj"
    for flag, variants in VARIANT_FLAGS.items():
        if flag in KERNELS[kernel].arg_names:
            constexprs[flag] = variant in variants
    signature = _signature(kernel, dtype, flagged=meta.get("FLAGGED", False))
    source = GluonASTSource if "_held" in kernel else ASTSource  # the held kernels are Gluon's
    src = source(fn=KERNELS[kernel], signature=signature, constexprs=constexprs,
                 attrs=_alignment(signature) if align == "a16" else None)
    return triton.compile(src, target=GPUTarget("cuda", TARGETS[target][0], 32), options=options), options["num_warps"]


# The opcodes time_loop counts: barriers, global loads and stores, shared-memory loads and stores (LDSM and
# STSM: the matrix forms), tensor-core products and special-function instructions (exponentials, reciprocals).
LOOP_OPCODES = ("BAR", "LDG", "STG", "LDS", "LDSM", "STS", "STSM", "HMMA", "MUFU")


def time_loop(compiled, capability: int) -> dict[str, int]:
    """Static instruction counts of the time loop of a kernel ``compiled`` for compute capability
    ``capability``, from its SASS (cuobjdump, beside Triton's ptxas): the body of the longest backward
    branch, which is the loop over timesteps (any loop inside it, such as the grid barrier's spin, counted
    once): "instructions" in all, each of LOOP_OPCODES, and "chain", the longest run of tensor-core products in
    it each accumulating the last one's result (hmma_chain). A warp issues these every step, predicated or
    not, so they show what a change does to a step before a GPU times it."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "kernel.cubin")
        with open(path, "wb") as f:
            f.write(compiled.asm["cubin"])
        tool = os.path.join(os.path.dirname(_ptxas(capability).path), "cuobjdump")
        sass = subprocess.run([tool, "-sass", path], capture_output=True, text=True, check=True).stdout
    # (address, opcode without its predicate, branch target or None) of every instruction
    code = [(int(address, 16), op, int(target, 16) if target else None)
            for address, op, target in re.findall(r"/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P\w+\s+)?([A-Z][\w.]*)"
                                                   r"(?:\s+0x([0-9a-f]+))?[^;]*;", sass)]
    start, end = max(((to, at) for at, op, to in code if op.startswith("BRA") and to is not None and to < at),
                     key=lambda span: span[1] - span[0])
    body = [op.split(".")[0] for at, op, _ in code if start <= at <= end]
    source = r"R\d+(?:\.reuse)?, "  # an operand, which ptxas may mark for the operand reuse cache
    hmma = [(d, c) for at, d, c in re.findall(r"/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P\w+\s+)?HMMA\S*\s+(R\d+), "
                                              + 2 * source + r"(R\d+|RZ)", sass) if start <= int(at, 16) <= end]
    if len(hmma) != body.count("HMMA"):
        raise ValueError(f"read the operands of {len(hmma)} of the time loop's {body.count('HMMA')} HMMA")
    return {"instructions": len(body), **{op: body.count(op) for op in LOOP_OPCODES}, "chain": hmma_chain(hmma)}


def hmma_chain(products: list[tuple[str, str]]) -> int:
    """The longest chain of dependent tensor-core products among ``products`` (each HMMA's destination and accumulator
    registers, in program order; "RZ": from zero): a product that accumulates another's result cannot issue before
    it completes, so a chain of n takes n times the instruction's latency."""
    lengths: dict[str, int] = {}
    for destination, accumulator in products:
        lengths[destination] = 1 + lengths.get(accumulator, 0)
    return max(lengths.values(), default=0)


def _alignment(signature: dict[str, str]) -> dict:
    """The specialization a launch gives ``signature``'s arguments when H (and P) are multiples of 16 and
    every buffer starts 16-byte aligned (as torch allocates them): Triton marks them divisible by 16, which
    lets loads and stores move 16 bytes at once (fewer address registers: the resident LSTM forward at
    H = 1024 spills 184 bytes for sm_90 compiled without it, none with it). T and B, any value."""
    return {(i,): [["tt.divisibility", 16]] for i, (arg, kind) in enumerate(signature.items())
            if kind.startswith("*") or arg in ("H", "P")}


def resource_usage(ptx: str, capability: int) -> dict[str, int]:
    """Registers, stack frame and spill stores/loads (bytes) of the kernel in ``ptx``, from ``ptxas -v``."""
    arch = f"sm_{capability}a" if capability == 90 else f"sm_{capability}"
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "kernel.ptx")
        with open(path, "w") as f:
            f.write(ptx)
        command = [_ptxas(capability).path, f"-arch={arch}", "-v", path, "-o", os.path.join(tmp, "k.cubin")]
        out = subprocess.run(command, capture_output=True, text=True, check=True).stderr
    numbers = {
        "registers": r"Used (\d+) registers",
        "stack": r"(\d+) bytes stack frame",
        "spill_stores": r"(\d+) bytes spill stores",
        "spill_loads": r"(\d+) bytes spill loads",
    }
    return {key: int(m.group(1)) if (m := re.search(rx, out)) else 0 for key, rx in numbers.items()}


def configurations(quick: bool = False):
    """Every launch configuration the dispatcher can choose, as (kernel, target, dtype, hidden size, sync,
    mode, proj, align, variant): the persistent kernels at each BLOCK_H up to their regime's limit, the tiled ones at
    a hidden size for each of their block shapes, with and without the grid barrier, and in the resident
    regime at each of RESIDENT_SHAPES up to its limit for any hidden size and, beyond it, up to that for
    multiples of 16 (ALIGNED_RESIDENT_H, "a16"), and with WIDE_BLOCK_B rows ("wide") for multiples of 16
    in fp16/bf16 on WIDE_TARGET; forwards with a STORE flag in training and
    inference; the tiled LSTM with and without a projection; with the cell variants' masks (recurrent
    dropout and zoneout, "masks") every persistent and resident configuration in training (``quick``: the
    largest of each); the persistent ones in training with layer norm (_norm, which says what ``quick``
    keeps); and the vector regime's forwards (_vector, likewise). ``quick`` keeps every persistent
    configuration but, of the tiled ones (1-30 s of compiling each), only the largest code path (H = 1024,
    grid barrier, training, projection) for every target and dtype, the smallest (H = 128, no barrier,
    inference, no projection) for sm_90, and the largest resident ones (any H, multiples of 16; wide ones in
    bf16) in training for both targets (a resident backward that spilled on sm_80 alone went unnoticed
    while only sm_90's was checked)."""
    for kernel, target, dtype in itertools.product(KERNELS, TARGETS, DTYPES):
        if kernel.endswith("_vector"):
            yield from _vector(kernel, target, dtype, quick)
            continue
        if "_held" in kernel:
            yield from _held(kernel, target, dtype, quick)
            continue
        modes = ("train", "infer") if "STORE" in KERNELS[kernel].arg_names else ("-",)
        projs = ("-", "proj") if "PROJ" in KERNELS[kernel].arg_names else ("-",)
        if kernel.endswith("_tiled"):
            shapes = [(hidden, sync) for hidden, sync in itertools.product(TILED_SHAPES, SYNCS)]
            yield from _resident(kernel, target, dtype, modes, quick)
        else:
            largest = MAX_PERSISTENT_H[kernel.split("_")[0], dtype if dtype in ("fp32", "fp64") else "half"]
            shapes = [(hidden, "-") for hidden in (16, 32, 64) if hidden <= max(16, largest)]
        for (hidden, sync), mode, proj in itertools.product(shapes, modes, projs):
            largest = (hidden, sync, mode, proj) == (TILED_SHAPES[-1], "grid", modes[0], projs[-1])
            smallest = (hidden, sync, mode, proj) == (TILED_SHAPES[0], "loop", modes[-1], "-") and target == "sm_90"
            if not quick or sync == "-" or largest or smallest:
                yield kernel, target, dtype, hidden, sync, mode, proj, "-", "-"
            if sync == "-" and mode == modes[0] and (not quick or hidden == shapes[-1][0]):
                yield kernel, target, dtype, hidden, sync, mode, proj, "-", "masks"
        if not kernel.endswith("_tiled"):
            yield from _norm(kernel, target, dtype, modes[0], quick)


def _norm(kernel: str, target: str, dtype: str, mode: str, quick: bool):
    """The layer-norm configurations of a persistent ``kernel`` (see configurations): each BLOCK_H it runs
    with (dispatch.MAX_NORM_H, NORM_BLOCK_H), alone ("norm") and with the masks ("all") where "auto" runs
    them together (not dispatch.NORM_WITHOUT_MASKS). ``quick``: the largest, in bf16 and fp32 for sm_90
    (all of them compile in about 15 minutes on 2 cores without Triton's cache)."""
    key = (kernel.split("_")[0], dtype if dtype in ("fp32", "fp64") else "half")
    sizes = [h for h in (16, 32, 64) if NORM_BLOCK_H.get(key, 16) <= h <= max(16, MAX_NORM_H[key])]
    variants = ("norm",) if key in NORM_WITHOUT_MASKS else ("norm", "all")
    if quick and (target != "sm_90" or dtype not in ("bf16", "fp32")):
        return
    for hidden, variant in itertools.product(sizes[-1:] if quick else sizes, variants):
        yield kernel, target, dtype, hidden, "-", mode, "-", "-", variant


def _vector(kernel: str, target: str, dtype: str, quick: bool):
    """The configurations of a vector-regime ``kernel`` (see configurations): each BLOCK_H up to its limit for any
    hidden size, beyond it up to that for multiples of 16 ("a16"), and likewise split over programs ("grid"; and
    "flag", with the flagged exchange, up to MAX_FLAGGED_H and not in fp64; ``quick``: the largest of each)."""
    cell, torch_dtype = kernel.split("_")[0], TORCH_DTYPES[dtype]
    anywhere, aligned = max_vector_h(cell, torch_dtype), max_vector_h(cell, torch_dtype, aligned=True)
    split, split_aligned = (max_split_vector_h(cell, torch_dtype, aligned=a) for a in (False, True))
    for sync, align, sizes in (("-", "-", [h for h in VECTOR_SHAPES if h <= anywhere]),
                               ("-", "a16", [h for h in VECTOR_SHAPES if anywhere < h <= aligned]),
                               ("grid", "-", [h for h in VECTOR_SHAPES if aligned < h <= split]),
                               ("grid", "a16", [h for h in VECTOR_SHAPES if max(aligned, split) < h <= split_aligned])):
        for hidden in sizes[-1 if quick else 0:]:
            yield kernel, target, dtype, hidden, sync, "-", "-", align, "-"
            if sync == "grid" and dtype != "fp64" and hidden <= MAX_FLAGGED_H[cell]:
                yield kernel, target, dtype, hidden, "flag", "-", "-", align, "-"


def _held(kernel: str, target: str, dtype: str, quick: bool):
    """The configurations of a held-regime ``kernel`` (see configurations): fp16 and bf16, each of HELD_SHAPES up to
    MAX_HELD_H (multiples of 16: "a16"; ``quick``: the largest), and split over programs beyond it up to
    MAX_HELD_SPLIT_H, with each exchange ("grid", "flag"; "cluster" and "cluster-async" for sm_90, the only target
    with clusters)."""
    cell = kernel.split("_")[0]
    if dtype not in HELD_DTYPES:
        return
    if kernel.endswith("_split"):
        for hidden in [h for h in HELD_SHAPES if MAX_HELD_H[cell] < h <= MAX_HELD_SPLIT_H[cell]][-1 if quick else 0:]:
            yield kernel, target, dtype, hidden, "grid", "-", "-", "a16", "-"
            yield kernel, target, dtype, hidden, "flag", "-", "-", "a16", "-"
            if target == "sm_90":
                for exchange in CLUSTER_EXCHANGES:
                    yield kernel, target, dtype, hidden, exchange, "-", "-", "a16", "-"
        return
    for hidden in [h for h in HELD_SHAPES if h <= MAX_HELD_H[cell]][-1 if quick else 0:]:
        yield kernel, target, dtype, hidden, "-", "-", "-", "a16", "-"


def _resident(kernel: str, target: str, dtype: str, modes: tuple[str, ...], quick: bool):
    """The resident configurations of a tiled ``kernel`` (see configurations)."""
    cell, torch_dtype, backward = kernel.split("_")[0], TORCH_DTYPES[dtype], "_bwd" in kernel
    anywhere = max_resident_h(cell, torch_dtype, backward)
    aligned = max_resident_h(cell, torch_dtype, backward, aligned=True)
    wide_dtypes = ("bf16",) if quick else ("fp16", "bf16")  # quick: fp16 compiles to the same resources
    wide = [h for h in RESIDENT_SHAPES if h <= aligned] if target == WIDE_TARGET and dtype in wide_dtypes else []
    for sync, align, sizes in (("resident", "-", [h for h in RESIDENT_SHAPES if h <= anywhere]),
                               ("resident", "a16", [h for h in RESIDENT_SHAPES if anywhere < h <= aligned]),
                               ("wide", "a16", wide)):
        for hidden, mode in itertools.product(sizes, modes):
            if not quick or (hidden == sizes[-1] and mode == modes[0]):
                yield kernel, target, dtype, hidden, sync, mode, "-", align, "-"
                yield kernel, target, dtype, hidden, sync, mode, "-", align, "masks"


HEADER = (f"{'kernel':14} {'target':6} {'dtype':5} {'H':>5} {'sync':4} {'mode':5} {'proj':4} {'align':5} "
          f"{'variant':7} {'warps':>5} {'regs':>4} {'shared':>7} {'spill':>5} fits")


def row(fit: Fit) -> str:
    """``fit`` as a line of the report's table."""
    return (f"{fit.kernel:14} {fit.target:6} {fit.dtype:5} {fit.hidden:5} {fit.sync:4} {fit.mode:5} {fit.proj:4} "
            f"{fit.align:5} {fit.variant:7} {fit.num_warps:5} {fit.registers:4} {fit.shared:7} {fit.spill_bytes:5} "
            f"{fit.fits}")


def main(argv: list[str] | None = None) -> int:
    """The command line of the module docstring: cross-compile and print the configurations asked for (all, one
    kernel's, or one); 1 if any does not fit."""
    argv = sys.argv[1:] if argv is None else argv
    if os.environ.get("TRITON_INTERPRET") == "1":
        raise SystemExit("unset TRITON_INTERPRET: interpreted kernels cannot be compiled")
    quick, loop = "--quick" in argv, "--loop" in argv
    argv = [a for a in argv if a not in ("--quick", "--loop")]
    units = None  # --units N: the split vector regime's programs forced to N units (dispatch.force_units)
    if "--units" in argv:
        at = argv.index("--units")
        units = int(argv[at + 1])
        argv = argv[:at] + argv[at + 2:]
        if len(argv) < 2:
            raise SystemExit("--units applies to one configuration (kernel target dtype H sync ...), not a table")
    if len(argv) > 1:  # one configuration
        config = (argv[0], argv[1], argv[2], int(argv[3]), *argv[4:], *("-",) * (9 - len(argv)))
        with force_units(units) if units else contextlib.nullcontext():
            compiled, num_warps = _compile(*config)
        fit = _fit(config, compiled, num_warps)
        print(row(fit))
        if loop:
            counts = time_loop(compiled, TARGETS[fit.target][0])
            print(f"time loop, a warp's SASS a step: {counts.pop('instructions')} instructions; "
                  + ", ".join(f"{op} {n}" for op, n in counts.items()))
        return 0 if fit.fits else 1
    if argv:  # every configuration of one kernel, in this process
        fits = [compile_one(*config) for config in configurations(quick) if config[0] == argv[0]]
        print("\n".join(map(row, fits)))
        return 0 if all(fit.fits for fit in fits) else 1
    print(HEADER)
    bad = 0
    for kernel in KERNELS:
        proc = subprocess.run([sys.executable, "-m", "rnnlab.kernels.fit", kernel, *(["--quick"] if quick else [])],
                              capture_output=True, text=True, check=False)
        print(proc.stdout.rstrip() or f"{kernel}: compiler failed: "
              f"{(proc.stderr.strip().splitlines() or ['?'])[-1][:160]}")
        bad += proc.returncode != 0
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
