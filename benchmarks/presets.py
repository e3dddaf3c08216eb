"""Benchmark presets: which cases, backends and modes ``run.py --preset NAME`` measures."""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Case:
    """One problem size. T: sequence length, B: batch, I: input size, H: hidden size."""

    cell: str
    T: int
    B: int
    I: int
    H: int
    layers: int = 1
    bidirectional: bool = False
    packed: bool = False
    dtype: str = "fp32"
    variant: str = ""  # a key of VARIANTS: the layers' cell-variant options ("" for the plain cell)

    def record(self) -> dict:
        return asdict(self)

    def label(self) -> str:
        extra = f"{'x' + str(self.layers) if self.layers > 1 else ''}{' bi' if self.bidirectional else ''}"
        extra += f"{' packed' if self.packed else ''}{' ' + self.variant if self.variant else ''}"
        return f"{self.cell} T={self.T} B={self.B} I={self.I} H={self.H}{extra}"


# Cell-variant options (rnnlab.recurrence.variants) a case can turn on, by name
VARIANTS = {
    "": {},
    "layer_norm": {"layer_norm": True},
    "zoneout": {"zoneout": 0.1},
    "recurrent_dropout": {"recurrent_dropout": 0.25},
    "weight_dropout": {"weight_dropout": 0.5},  # DropConnect: the hand-written path, not the step-by-step one
    "all": {"layer_norm": True, "zoneout": 0.1, "recurrent_dropout": 0.25},
    "masks": {"zoneout": 0.1, "recurrent_dropout": 0.25},  # what the fused kernels take
}


@dataclass(frozen=True)
class Preset:
    cases: tuple[Case, ...]
    backends: tuple[str, ...]
    modes: tuple[str, ...] = ("fwd", "fwd+bwd")
    warmup: int = 3
    reps: int = 20


# The core issue's CPU sizes (T, B, I, H): PyTorch's word-LM-like, PTB-small-like and fastrnns defaults.
CPU_SIZES = ((100, 32, 128, 256), (35, 20, 200, 200), (100, 64, 512, 512))

PRESETS = {
    "tiny": Preset(
        cases=(Case("lstm", 5, 2, 3, 4), Case("gru", 5, 2, 3, 4, packed=True)),
        backends=("torch", "native", "triton"),
        warmup=1,
        reps=3,
    ),
    "quick": Preset(
        cases=(
            *(Case(cell, 50, 16, 64, 128) for cell in ("lstm", "gru", "rnn_tanh")),
            Case("lstm", 50, 16, 64, 128, layers=2, bidirectional=True, packed=True),
        ),
        backends=("torch", "native"),
        reps=10,
    ),
    # torch.compile of the pure-PyTorch path (a preset of its own with short sequences: before the recurrences
    # were custom ops, Inductor unrolled the time loop, minutes of compilation per case and mode on a CPU).
    "compile": Preset(
        cases=tuple(Case(cell, 20, 16, 64, 128) for cell in ("lstm", "gru", "rnn_tanh")),
        backends=("torch", "compile", "native"),
        warmup=2,
        reps=10,
    ),
    # The fused-kernel issue's targets: bf16, T = 1024, B in {1, 16, 64}, H from 64 to 1024, against
    # cuDNN; sized for a few minutes on one H100 (scripts/gpu_check.sh), smallest hidden sizes first (a
    # run cut short by --budget-s loses the largest). The triton rows run the persistent regime up to
    # H = 64, the resident one up to the sizes its forward holds (on an H100/H200 LSTM and GRU up to
    # 1024, B <= 32) and the tiled one beyond; with RNNLAB_GRID_SYNC=0, the tiled one from H = 128.
    "gpu": Preset(
        cases=tuple(
            Case(cell, 1024, B, H, H, dtype="bf16")
            for H, cell, B in itertools.product((64, 128, 256, 512, 1024), ("lstm", "gru"), (1, 16, 64))
        ),
        backends=("triton", "native"),
        warmup=2,
        reps=10,
    ),
    # The gpu preset's sizes beyond the persistent regime (the resident regime and the tiled one spread
    # over SMs), H = 256 and 512 first, 5 repetitions: about a minute on an H200, for a short device slot.
    "gpu-barrier": Preset(
        cases=tuple(
            Case(cell, 1024, B, H, H, dtype="bf16")
            for H, cell, B in itertools.product((256, 512, 1024, 128), ("lstm", "gru"), (1, 16, 64))
        ),
        backends=("triton", "native"),
        warmup=2,
        reps=5,
    ),
    # Where 16-row resident programs would outnumber an H100's SMs and the dispatcher takes 32-row ones
    # (dispatch.batch_rows; B = 32 at H = 1024 for contrast, 16-row programs): a minute on an H100.
    "gpu-wide": Preset(
        cases=tuple(
            Case(cell, 1024, B, H, H, dtype="bf16")
            for (H, B), cell in itertools.product(((1024, 64), (512, 128), (1024, 32)), ("lstm", "gru"))
        ),
        backends=("triton", "native"),
        warmup=2,
        reps=5,
    ),
    # The pure-PyTorch path beside both kernels at one of those sizes (a step costs it a dozen launches).
    "gpu-torch": Preset(
        cases=tuple(Case(cell, 1024, 16, 256, 256, dtype="bf16") for cell in ("lstm", "gru", "rnn_tanh")),
        backends=("triton", "native", "torch"),
        warmup=1,
        reps=5,
    ),
    # Zoneout and recurrent dropout on the fused kernels (and "auto", which picks them on CUDA) against the
    # step-by-step recurrence that runs them on "torch" (a dozen launches a step, each way), and the plain
    # cell, at one of the gpu preset's sizes with a shorter sequence (the step-by-step path is slow); layer
    # norm (alone and with both) at a hidden size the fused kernels take it.
    "gpu-variants": Preset(
        cases=(*(Case(cell, 256, 16, 256, 256, dtype="bf16", variant=v)
                 for cell in ("lstm", "gru") for v in ("", "zoneout", "recurrent_dropout", "masks")),
               *(Case(cell, 256, 16, 32, 32, dtype="bf16", variant=v)  # layer norm: the persistent regime's sizes
                 for cell in ("lstm", "gru") for v in ("", "layer_norm", "all"))),
        backends=("triton", "native", "torch"),
        warmup=1,
        reps=5,
    ),
    # The full sweep for a GPU: hidden size 64-2048, batch 1-256, dtypes, and stacked, bidirectional and
    # packed variants at one size. Far longer than the gpu preset (run it in several 10-minute slices by
    # editing this list, or on a machine without that limit).
    "gpu-full": Preset(
        cases=(
            *(Case(cell, 1024, B, H, H, dtype=dtype)
              for cell, B, H, dtype in itertools.product(("lstm", "gru", "rnn_tanh"), (1, 16, 64, 256),
                                                         (64, 128, 256, 512, 1024, 2048), ("fp32", "fp16", "bf16"))),
            *(Case(cell, 1024, 16, 256, 256, layers=layers, bidirectional=bi, packed=packed, dtype="bf16")
              for cell, layers, bi, packed in itertools.product(("lstm", "gru"), (1, 2), (False, True), (False, True))),
        ),
        backends=("triton", "native", "torch"),
        warmup=2,
        reps=10,
    ),
    # The cell variants at the first CPU size: step by step ("torch"; the plain cell there is the hand-written
    # path), on "auto" (layer norm, zoneout and recurrent dropout on the hand-written recurrences, weight
    # dropout as "torch", the plain LSTM on torch.nn's kernel) and torch.nn's kernel (native runs only the
    # plain cell: its variant rows say "not run").
    "variants": Preset(
        cases=tuple(Case(cell, *CPU_SIZES[0], variant=v) for cell in ("lstm", "gru") for v in VARIANTS),
        backends=("torch", "auto", "native"),
        reps=5,
    ),
    "cpu": Preset(
        cases=tuple(
            Case(cell, *size)
            for cell, size in itertools.product(("lstm", "gru", "rnn_tanh"), CPU_SIZES)
        ),
        backends=("torch", "native"),
        reps=15,
    ),
}
