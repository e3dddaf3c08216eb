"""Time the tiled regime's untuned choices on a GPU: column-tile width (BLOCK_H), the forward's reduction
slice (BLOCK_K; the backward's is dispatch.backward_k of it), software-pipelining stages and warps, at the
sizes where the tiled regime runs and lost to cuDNN (bf16, T = 1024: LSTM at H = 1024, GRU at 512 and
1024). The dispatcher's current choice comes first in each group; a choice that wins everywhere it fits
belongs in rnnlab.kernels.dispatch's TILED_* constants.

    python benchmarks/tune_tiled.py --out benchmarks/results/gpu-<device>/tune-tiled --budget-s 120

Writes results.json (one record per measurement, with its tiling) and results.md (time over the
current choice's in the same run), rewritten after every record.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
from pathlib import Path

import torch
from presets import Case, Preset  # benchmarks/ is on sys.path when run as a script
from run import Budget, environment, exit_status, measure

from rnnlab.kernels.dispatch import (
    TILED_BLOCK_H,
    TILED_BLOCK_K,
    TILED_STAGES,
    TILED_WARPS,
    force_regime,
    force_tiling,
)

SIZES = ("lstm:1024", "gru:1024", "gru:512")  # cell:hidden size
BATCHES = (16, 1, 64)
# (BLOCK_H, BLOCK_K, stages, warps): longer slices mean fewer per step (each one's loads wait on the last
# without pipelining), narrower tiles spread a step over more SMs, pipelining hides L2 latency. At
# H = 1024 in bf16 for sm_90 (fit.py, Triton 3.9) all but the last two compile without spills; they
# spill 72 bytes (the backward) and 120-576
CHOICES = ((32, 64, 1, 8), (16, 64, 1, 4), (16, 32, 1, 4), (32, 32, 2, 8), (16, 64, 2, 4), (32, 64, 1, 4))
TIMING = Preset(cases=(), backends=("triton",), warmup=2, reps=5)


def tilings() -> list[tuple[int, int, int, int]]:
    """The dispatcher's current tiling first, then the other candidates."""
    current = (TILED_BLOCK_H, TILED_BLOCK_K, TILED_STAGES, TILED_WARPS)
    return [current, *(choice for choice in CHOICES if choice != current)]


def write(result: dict, out: Path) -> None:
    """results.json, and results.md with each time over the current tiling's for the same case and mode."""
    (out / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    base = {}
    rows = ["| cell | H | B | mode | BLOCK_H | BLOCK_K | stages | warps | ms | / current |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for rec in result["records"]:
        key = (rec["cell"], rec["H"], rec["B"], rec["mode"])
        ms = rec["median_ms"]
        base.setdefault(key, ms)
        ratio = f"{ms / base[key]:.2f}x" if ms is not None and base[key] else "-"
        shown = f"{ms:.3f}" if ms is not None else rec.get("note", "not run")
        rows.append(f"| {' | '.join(str(v) for v in (*key, *rec['tiling']))} | {shown} | {ratio} |")
    env = result["environment"]
    head = (f"# Tiled-regime choices on {env['device']}\n\n{env['date']}, torch {env['torch']}, triton "
            f"{env['triton']}, commit {env['git_commit']}. bf16, I = H; median of {TIMING.reps} runs; "
            "the first row of each case and mode is the dispatcher's current choice.\n\n")
    (out / "results.md").write_text(head + "\n".join(rows) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="directory for results.json and results.md")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="start no measurement after this many seconds; the rest are recorded as not run")
    parser.add_argument("--sizes", nargs="+", default=SIZES, help=f"cell:hidden_size pairs (default {SIZES})")
    parser.add_argument("--batches", nargs="+", type=int, default=BATCHES)
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--device", default="cuda", help="cuda, or cpu under TRITON_INTERPRET=1 (a smoke test)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        parser.error(f"--device {args.device} runs the kernels only under TRITON_INTERPRET=1; the timings that "
                     "matter need a CUDA device")
    try:
        sizes = [(cell, int(H)) for cell, H in (size.split(":") for size in args.sizes)]
    except ValueError:
        parser.error(f"--sizes takes cell:hidden_size pairs such as lstm:1024; got {args.sizes}")
    budget = Budget(args.budget_s)
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"preset": "tune-tiled", "environment": environment(device), "records": []}
    for (cell, H), B in itertools.product(sizes, args.batches):
        case = Case(cell, args.seq_len, B, H, H, dtype="bf16")
        for mode, tiling in itertools.product(("fwd", "fwd+bwd"), tilings()):
            rec = budget.spent(case, "triton", mode)
            if rec is None:
                print(f"BLOCK_H, BLOCK_K, stages, warps = {tiling}", flush=True)
                with force_regime("tiled"), force_tiling(*tiling):
                    rec = measure(case, "triton", mode, device, TIMING)
            rec["tiling"] = list(tiling)
            result["records"].append(rec)
            write(result, args.out)
    print(f"wrote {args.out / 'results.json'} and {args.out / 'results.md'}")
    return exit_status(result["records"])


if __name__ == "__main__":
    raise SystemExit(main())
