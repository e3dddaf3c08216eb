"""Time the dispatcher's launch choices that were made without a GPU, each against the current one, in
bf16 at T = 1024 with I = H:

- ``regime``: the inference forward (gradients off) in each regime that can run it (dispatch.force_regime)
  at B = 1 and 16: the vector regime (one program a batch row, W_hh in registers) against the persistent
  one and the resident one at H = 64 (on an H100 the whole forward 0.50-0.75x the persistent regime's); at
  H = 128 and 256 (B = 1: 8 and 16 programs; at B = 16, 128 and 256, which outnumber an H100's SMs at 256)
  the vector regime split over programs meeting at a grid barrier against the resident regime
  (benchmarks/latency.py's kernel times chose it there, dispatch.AUTO_SPLIT_VECTOR_H).
- ``warps``: warps a program in the vector (H = 64) and resident (H = 256) regimes (dispatch.force_warps),
  inference forward, B = 16, against the 1 us target. Fewer warps mean cheaper barriers for the layout
  conversions of each step, more warps more loads in flight.
- ``batch``: the resident regime's batch tiles of 16 and 32 rows (dispatch.force_batch_tile) at
  H = 1024 (LSTM and GRU), B = 32 (128 programs of 16 rows or 64 of 32: the dispatcher picks 16) and
  B = 64 (256 or 128: it picks 32 on an H100/H200, dispatch.batch_rows; 16 falls back to the tiled
  regime); forward and forward+backward.
- ``tiled``: the tiled regime's column-tile width (BLOCK_H), forward reduction slice (BLOCK_K; the
  backward's is dispatch.backward_k of it), software-pipelining stages and warps (dispatch.force_tiling),
  forward and forward+backward, forced at H = 1024, B = 64 (LSTM and GRU), where it ran before wide
  resident programs and where it still runs beyond them (larger batches, hidden sizes past 1024,
  proj_size).

The current choice comes first in each case and mode; one that wins everywhere it fits belongs in
rnnlab.kernels.dispatch (num_warps, RESIDENT_WARPS, the TILED_* constants, batch_rows).

    python benchmarks/tune.py --out benchmarks/results/gpu-<device>/tune --budget-s 120

Writes results.json (one record per measurement, with its choice) and results.md (time over the current
choice's in the same run), rewritten after every record; exits 1 if a measurement failed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
from contextlib import ExitStack
from pathlib import Path

import torch
from presets import Case, Preset  # benchmarks/ is on sys.path when run as a script
from run import Budget, environment, exit_status, measure

from rnnlab.kernels.dispatch import (
    BLOCK_B,
    REGIMES,
    TILED_BLOCK_H,
    TILED_STAGES,
    TILED_WARPS,
    WIDE_BLOCK_B,
    force_batch_tile,
    force_regime,
    force_tiling,
    force_warps,
    plan,
    resident_rows,
    tiled_block_k,
)

# group: (cell:hidden size pairs, batches, modes), in the order they run (gpu_check.sh gives tuning 120 s of
# measurements; each choice compiles anew, a few seconds, and the tiled group's 28 measurements take longest)
GROUPS = {"regime": (("lstm:64", "gru:64", "rnn_tanh:128", "lstm:128", "lstm:256", "gru:256"), (1, 16), ("fwd",)),
          "warps": (("lstm:64", "gru:64", "lstm:256"), (16,), ("fwd",)),
          "batch": (("lstm:1024", "gru:1024"), (32, 64), ("fwd", "fwd+bwd")),
          "tiled": (("lstm:1024", "gru:1024"), (64,), ("fwd", "fwd+bwd"))}
WARPS = (4, 8, 16)
# (BLOCK_H, BLOCK_K, stages, warps): longer slices mean fewer per step (each one's loads wait on the last
# without pipelining), narrower tiles spread a step over more SMs, pipelining hides L2 latency. At
# H = 1024 in bf16 for sm_90 (fit.py, Triton 3.9) all but the last two compile without spills; they
# spill 72 bytes (the backward) and 120-576
TILINGS = ((32, 32, 1, 8), (32, 64, 1, 8), (16, 64, 1, 4), (16, 32, 1, 4), (32, 32, 2, 8), (16, 64, 2, 4),
           (32, 64, 1, 4))
TIMING = Preset(cases=(), backends=("triton",), warmup=2, reps=5)


def choices(group: str, case: Case, device: torch.device) -> list[dict]:
    """The dispatcher's current choice for ``case`` first, then the other candidates of ``group``."""
    if group == "tiled":
        names = ("BLOCK_H", "BLOCK_K", "stages", "warps")
        current = (TILED_BLOCK_H, tiled_block_k(torch.bfloat16, False, False), TILED_STAGES, TILED_WARPS)
        return [dict(zip(names, tiling, strict=True)) for tiling in (current, *(t for t in TILINGS if t != current))]
    like = torch.empty(0, case.B, 1, dtype=torch.bfloat16, device=device)
    cell = case.cell.split("_")[0]
    if group == "regime":  # the groups' forwards run without gradients (inference)
        current = plan(cell, like, case.H, case.B, inference=True).regime
        return [{"regime": r} for r in (current, *(r for r in REGIMES if r != current and _runs(r, cell, like, case)))]
    if group == "batch":
        current = resident_rows(like, case.H, case.B)
        return [{"rows": r} for r in (current, *(r for r in (BLOCK_B, WIDE_BLOCK_B) if r != current))]
    launch = plan(cell, like, case.H, case.B, inference=True)
    current = launch.meta["num_warps"]
    if launch.regime == "tiled":  # force_warps leaves it alone (the tiled group tunes it): nothing to compare
        return [{"warps": current}]
    return [{"warps": w} for w in (current, *(w for w in WARPS if w != current))]


def _runs(regime: str, cell: str, like: torch.Tensor, case: Case) -> bool:
    """Whether ``regime`` can run ``case``'s inference forward (the tiled regime, which runs anything, only where
    the dispatcher would pick it)."""
    try:
        with force_regime(regime):
            plan(cell, like, case.H, case.B, inference=True)
    except NotImplementedError:
        return False
    return regime != "tiled"


def applied(group: str, choice: dict) -> ExitStack:
    """A context in which the fused kernels launch with ``choice``."""
    stack = ExitStack()
    if group == "tiled":
        stack.enter_context(force_regime("tiled"))
        stack.enter_context(force_tiling(*choice.values()))
    elif group == "batch":
        stack.enter_context(force_batch_tile(choice["rows"]))
    elif group == "regime":
        stack.enter_context(force_regime(choice["regime"]))
    else:
        stack.enter_context(force_warps(choice["warps"]))
    return stack


def write(result: dict, out: Path) -> None:
    """results.json, and results.md with each time over the current choice's for the same case and mode."""
    (out / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    base = {}
    rows = ["| group | cell | H | B | mode | choice | ms | / current |", "|---|---|---|---|---|---|---|---|"]
    for rec in result["records"]:
        key = (rec["group"], rec["cell"], rec["H"], rec["B"], rec["mode"])
        ms = rec["median_ms"]
        base.setdefault(key, ms)
        ratio = f"{ms / base[key]:.2f}x" if ms is not None and base[key] else "-"
        shown = f"{ms:.3f}" if ms is not None else rec.get("note", "not run")
        choice = " ".join(f"{name}={value}" for name, value in rec["choice"].items())
        rows.append(f"| {' | '.join(str(v) for v in key)} | {choice} | {shown} | {ratio} |")
    env = result["environment"]
    head = (f"# Launch choices on {env['device']}\n\n{env['date']}, torch {env['torch']}, triton "
            f"{env['triton']}, commit {env['git_commit']}. bf16, I = H; median of {TIMING.reps} runs; "
            "the first row of each case and mode is the dispatcher's current choice.\n\n")
    (out / "results.md").write_text(head + "\n".join(rows) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="directory for results.json and results.md")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="start no measurement after this many seconds; the rest are recorded as not run")
    parser.add_argument("--groups", nargs="+", choices=tuple(GROUPS), default=tuple(GROUPS))
    parser.add_argument("--sizes", nargs="+", help="cell:hidden_size pairs instead of each group's")
    parser.add_argument("--batches", nargs="+", type=int, help="batch sizes instead of each group's")
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--device", default="cuda", help="cuda, or cpu under TRITON_INTERPRET=1 (a smoke test)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        parser.error(f"--device {args.device} runs the kernels only under TRITON_INTERPRET=1; the timings that "
                     "matter need a CUDA device")
    budget = Budget(args.budget_s)
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"preset": "tune", "environment": environment(device), "records": []}
    for group in args.groups:
        sizes, batches, modes = GROUPS[group]
        try:
            sizes = [(cell, int(H)) for cell, H in (size.split(":") for size in args.sizes or sizes)]
        except ValueError:
            parser.error(f"--sizes takes cell:hidden_size pairs such as lstm:1024; got {args.sizes}")
        for (cell, H), B in itertools.product(sizes, args.batches or batches):
            case = Case(cell, args.seq_len, B, H, H, dtype="bf16")
            for mode, choice in itertools.product(modes, choices(group, case, device)):
                rec = budget.spent(case, "triton", mode)
                if rec is None:
                    print(f"{group}: {choice}", flush=True)
                    with applied(group, choice):
                        rec = measure(case, "triton", mode, device, TIMING)
                rec.update(group=group, choice=choice)
                result["records"].append(rec)
                write(result, args.out)
    print(f"wrote {args.out / 'results.json'} and {args.out / 'results.md'}")
    return exit_status(result["records"])


if __name__ == "__main__":
    raise SystemExit(main())
