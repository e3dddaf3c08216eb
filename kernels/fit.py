"""Cross-compile every kernel configuration the dispatcher can choose, for sm_80 and sm_90, without a
GPU, and report registers, shared memory and spills (Triton's compiler and the ptxas in its wheel).

    python -m rnnlab.kernels.fit                        # every configuration, a table
    python -m rnnlab.kernels.fit lstm_bwd sm_90 bf16 64   # one configuration

Each configuration compiles in a process of its own (a compiler crash is reported, not fatal).
tests/test_kernel_fit.py asserts that every one fits. Must run without TRITON_INTERPRET (interpreted
kernels cannot be compiled).
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass

import triton
from triton.backends.compiler import GPUTarget
from triton.backends.nvidia.compiler import get_ptxas
from triton.compiler import ASTSource

from .common import BLOCK_B, MAX_PERSISTENT_H, num_warps
from .gru import _gru_bwd_kernel, _gru_fwd_kernel
from .lstm import _lstm_bwd_kernel, _lstm_fwd_kernel
from .rnn import _rnn_bwd_kernel, _rnn_fwd_kernel

KERNELS = {"lstm_fwd": _lstm_fwd_kernel, "lstm_bwd": _lstm_bwd_kernel, "gru_fwd": _gru_fwd_kernel,
           "gru_bwd": _gru_bwd_kernel, "rnn_fwd": _rnn_fwd_kernel, "rnn_bwd": _rnn_bwd_kernel}
TARGETS = {"sm_80": (80, 163 * 1024), "sm_90": (90, 227 * 1024)}  # capability, shared memory per block
DTYPES = {"fp32": "fp32", "fp16": "fp16", "bf16": "bf16"}


@dataclass
class Fit:
    kernel: str
    target: str
    dtype: str
    block_h: int
    num_warps: int
    registers: int
    shared: int
    spill_bytes: int  # spill stores + spill loads reported by ptxas

    @property
    def fits(self) -> bool:
        return self.shared <= TARGETS[self.target][1] and self.spill_bytes == 0 and self.registers <= 255


def _signature(kernel: str, dt: str) -> dict[str, str]:
    """Pointer and scalar types of a kernel's arguments for input dtype ``dt`` (state buffers are fp32)."""
    io, f32, i32 = f"*{dt}", "*fp32", "*i32"
    pointers = {
        "lstm_fwd": {"GX": io, "W": io, "H0": io, "C0": io, "LEN": i32, "Y": io, "C": f32, "G": f32, "HN": f32,
                     "CN": f32},
        "lstm_bwd": {"G": f32, "C": f32, "C0": io, "DY": io, "DHN": io, "DCN": io, "W": io, "LEN": i32, "DG": f32,
                     "DH0": f32, "DC0": f32},
        "gru_fwd": {"GX": io, "W": io, "BHH": io, "H0": io, "LEN": i32, "Y": io, "G": f32, "GHN": f32, "HN": f32},
        "gru_bwd": {"G": f32, "GHN": f32, "Y": io, "H0": io, "DY": io, "DHN": io, "W": io, "LEN": i32, "DG": f32,
                    "DGH": f32, "DH0": f32},
        "rnn_fwd": {"GX": io, "W": io, "H0": io, "LEN": i32, "Y": io, "HN": f32},
        "rnn_bwd": {"Y": io, "DY": io, "DHN": io, "W": io, "LEN": i32, "DG": f32, "DH0": f32},
    }[kernel]
    flags = {"RELU": "constexpr"} if kernel.startswith("rnn") else {}
    return {**pointers, "T": "i32", "B": "i32", "H": "i32", **flags, "REVERSE": "constexpr",
            "BLOCK_B": "constexpr", "BLOCK_H": "constexpr", "DOT_F32": "constexpr", "PRECISION": "constexpr"}


def compile_one(kernel: str, target: str, dtype: str, block_h: int) -> Fit:
    """Compile one configuration as the dispatcher would launch it and read its resource usage."""
    fn = KERNELS[kernel]
    warps = num_warps(block_h)
    constexprs = {"REVERSE": False, "BLOCK_B": BLOCK_B, "BLOCK_H": block_h, "DOT_F32": dtype == "fp32",
                  "PRECISION": "tf32x3" if dtype == "fp32" else "ieee"}  # as dot_precision() chooses
    if kernel.startswith("rnn"):
        constexprs["RELU"] = False
    src = ASTSource(fn=fn, signature=_signature(kernel, DTYPES[dtype]), constexprs=constexprs)
    compiled = triton.compile(src, target=GPUTarget("cuda", TARGETS[target][0], 32),
                              options={"num_warps": warps})
    usage = resource_usage(compiled.asm["ptx"], TARGETS[target][0])
    return Fit(kernel, target, dtype, block_h, warps, usage["registers"], compiled.metadata.shared,
               usage["spill_stores"] + usage["spill_loads"])


def resource_usage(ptx: str, capability: int) -> dict[str, int]:
    """Registers, stack frame and spill stores/loads (bytes) of the kernel in ``ptx``, from ``ptxas -v``."""
    arch = f"sm_{capability}a" if capability == 90 else f"sm_{capability}"
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "kernel.ptx")
        with open(path, "w") as f:
            f.write(ptx)
        command = [get_ptxas(capability).path, f"-arch={arch}", "-v", path, "-o", os.path.join(tmp, "k.cubin")]
        out = subprocess.run(command, capture_output=True, text=True, check=True).stderr
    numbers = {
        "registers": r"Used (\d+) registers",
        "stack": r"(\d+) bytes stack frame",
        "spill_stores": r"(\d+) bytes spill stores",
        "spill_loads": r"(\d+) bytes spill loads",
    }
    return {key: int(m.group(1)) if (m := re.search(rx, out)) else 0 for key, rx in numbers.items()}


def configurations():
    """Every (kernel, target, dtype, BLOCK_H) the dispatcher can launch."""
    for kernel, target, dtype in itertools.product(KERNELS, TARGETS, DTYPES):
        largest = MAX_PERSISTENT_H[kernel.split("_")[0], "fp32" if dtype == "fp32" else "half"]
        for block_h in (16, 32, 64, 128):
            if block_h <= max(16, largest):
                yield kernel, target, dtype, block_h


HEADER = (f"{'kernel':9} {'target':6} {'dtype':5} {'BLOCK_H':>7} {'warps':>5} {'regs':>4} {'shared':>7} "
          f"{'spill':>5} fits")


def row(fit: Fit) -> str:
    return (f"{fit.kernel:9} {fit.target:6} {fit.dtype:5} {fit.block_h:7} {fit.num_warps:5} {fit.registers:4} "
            f"{fit.shared:7} {fit.spill_bytes:5} {fit.fits}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if os.environ.get("TRITON_INTERPRET") == "1":
        raise SystemExit("unset TRITON_INTERPRET: interpreted kernels cannot be compiled")
    if argv:
        fit = compile_one(argv[0], argv[1], argv[2], int(argv[3]))
        print(row(fit))
        return 0 if fit.fits else 1
    print(HEADER)
    bad = 0
    for config in configurations():
        proc = subprocess.run([sys.executable, "-m", "rnnlab.kernels.fit", *map(str, config)], capture_output=True,
                              text=True, check=False)
        lines = proc.stdout.strip().splitlines()
        print(lines[-1] if lines else f"{' '.join(map(str, config))}: compiler failed: "
              f"{(proc.stderr.strip().splitlines() or ['?'])[-1][:160]}")
        bad += proc.returncode != 0
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
