"""One layer's kernels (the fused ones, or with --backend native cuDNN's), isolated for a profiler such as Nsight
Compute: builds the layer, runs it twice to compile and warm up, then once more between
torch.cuda.profiler.start() and stop(), so ``ncu --profile-from-start off`` sees only that call
(scripts/gpu_profile.sh).

    ncu --profile-from-start off --section WarpStateStats python benchmarks/profile_step.py lstm 64 16

Prints the regime that ran and the call's time (CUDA events, unprofiled). ``--breakdown`` instead runs
that call under torch.profiler and prints its kernels by GPU time, the fused ones beside the GEMMs and
copies around them (no Nsight Compute needed):

    python benchmarks/profile_step.py lstm 1024 64 --mode fwd+bwd --breakdown
    python benchmarks/profile_step.py lstm 256 16 --mode fwd+bwd --breakdown --backend native   # what cuDNN ran
"""

from __future__ import annotations

import argparse

import torch
from presets import Case  # benchmarks/ is on sys.path when run as a script
from run import backend_note, build, recording, step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cell", choices=("lstm", "gru", "rnn_tanh", "rnn_relu"))
    parser.add_argument("hidden_size", type=int)
    parser.add_argument("batch", type=int)
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--dtype", choices=("bf16", "fp16", "fp32"), default="bf16")
    parser.add_argument("--mode", choices=("fwd", "fwd+bwd"), default="fwd")
    parser.add_argument("--breakdown", action="store_true", help="print the call's kernels by GPU time")
    parser.add_argument("--backend", choices=("triton", "native"), default="triton",
                        help="the fused kernels, or torch.nn's (cuDNN's: its kernels' names say which algorithm ran)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        parser.error("needs a CUDA device (the profiled kernels run there)")
    device = torch.device("cuda")
    case = Case(args.cell, args.seq_len, args.batch, args.hidden_size, args.hidden_size, dtype=args.dtype)
    module, x = build(case, args.backend, device, args.mode)
    with recording() as ran:
        step(module, x, args.mode)  # compiles
    step(module, x, args.mode)  # warms up
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    step(module, x, args.mode)
    end.record()
    torch.cuda.synchronize()
    ms = start.elapsed_time(end)
    if args.breakdown:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            step(module, x, args.mode)
            torch.cuda.synchronize()
        print(prof.key_averages().table(sort_by="self_device_time_total", row_limit=20, max_name_column_width=60))
    else:
        torch.cuda.profiler.start()
        step(module, x, args.mode)
        torch.cuda.synchronize()
        torch.cuda.profiler.stop()
    print(f"{case.label()} {args.mode}: {backend_note(case, args.backend, args.mode, device, ran)}; "
          f"{ms:.3f} ms unprofiled, {ms * 1000 / case.T:.2f} us a step")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
