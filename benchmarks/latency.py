"""Where a fused forward's time goes, per timestep, for the issue's inference target (at most 1 us a step
at H <= 256, B <= 16, bf16, T = 1024):

    python benchmarks/latency.py --out benchmarks/results/gpu-<device>/latency [--cells lstm gru]
        [--regime vector] [--warps 8] [--exchange flagged] [--units 8]

(``--regime``, ``--warps``, ``--exchange`` and ``--units``: the dispatch.force_regime, force_warps, force_exchange
and force_units overrides, to time a launch the dispatcher does not choose.)

For each case it times, on CUDA, one inference forward (gradients off) of a ``backend="triton"`` layer
four ways (over ``--reps`` calls, the median; ``kernel``: the mean):

- ``call``: the call as a user makes it, between two CUDA events (as run.py's ``fwd`` rows): the GPU's
  wait for the CPU to queue the work included;
- ``graph``: the same call captured once in a CUDA graph and replayed (no CPU work between the events);
- ``kernel``: the fused kernel alone, its device time under torch.profiler;
- ``queue``: the CPU's time to queue the call (wall clock, no synchronisation);
- ``exchange``: where the launch splits the hidden units over programs (the resident regime, or the vector or held
  regime split), those programs' exchange of the state alone, at the barrier, flagged or in a cluster, without the
  math (step_floor.py, held_floor.py): a floor under ``kernel``.

So ``call - graph`` is what the CPU adds, ``graph - kernel`` the work around the kernel (the input
projection, the output allocations, the final states' casts), and ``kernel - exchange`` what the math and
on-chip traffic take. Where ``queue`` itself goes, each case also records the CPU_TOP functions with the most
time of their own in a call (``cpu_top``: cProfile over ``--reps`` calls, the device synchronised between them;
cProfile inflates every function's time alike, so they rank, not time). Writes DIR/latency.json and
DIR/latency.md.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import itertools
import json
import pstats
import statistics
import time
from pathlib import Path

import torch
from presets import Case  # benchmarks/ is on sys.path when run as a script
from run import backend_note, build, environment, exit_status, failure_note, recording
from step_floor import exchange_call

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ("call", "graph", "kernel", "queue", "exchange")
CPU_TOP = 8  # functions a case's cpu_top lists


def _event_ms(fn, reps: int) -> float:
    """Median over ``reps`` of ``fn``'s device time between two CUDA events."""
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def _queue_ms(fn, reps: int) -> float:
    """Median over ``reps`` of the CPU's wall time to return from ``fn`` (the device synchronised between)."""
    times = []
    for _ in range(reps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    torch.cuda.synchronize()
    return statistics.median(times)


def cpu_top(fn, reps: int, sync=torch.cuda.synchronize, top: int = CPU_TOP) -> list[dict]:
    """The ``top`` functions with the most time of their own while the CPU runs ``fn``, profiled over ``reps``
    calls with ``sync()`` outside the profile after each (so a full queue never makes the CPU wait): their name
    (_where), and their own and cumulative time a call in microseconds."""
    profile = cProfile.Profile()
    for _ in range(reps):
        profile.enable()
        fn()
        profile.disable()
        sync()
    stats = pstats.Stats(profile).stats  # {(file, line, name): (primitive calls, calls, own time, cumulative, callers)}
    rows = sorted(stats.items(), key=lambda item: item[1][2], reverse=True)[:top]
    return [{"function": _where(*key), "self_us": own / reps * 1e6, "total_us": total / reps * 1e6}
            for key, (_, _, own, total, _) in rows]


def _where(file: str, line: int, name: str) -> str:
    """A profiled function's name: a built-in's as cProfile gives it, else its file (from the package folder on,
    site-packages or this checkout's) with the line."""
    if file == "~":
        return name
    for root in ("site-packages/", str(ROOT) + "/"):
        file = file.split(root, 1)[-1]
    return f"{file}:{line}({name})"


def _kernel_ms(fn, reps: int) -> float:
    """The fused kernels' device time a call (the kernels whose names start "_" and hold "_fwd"), averaged
    over ``reps`` calls under torch.profiler."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            fn()
        torch.cuda.synchronize()
    fused = [e for e in prof.key_averages() if e.key.startswith("_") and "_fwd" in e.key]
    if not fused:
        raise RuntimeError(f"no fused forward kernel in the profile: {[e.key for e in prof.key_averages()]}")
    return sum(e.self_device_time_total for e in fused) / 1e3 / reps


def _graphed(fn):
    """``fn`` captured in a CUDA graph (warmed up on a side stream first, as torch.cuda.graphs asks), as a
    function that replays it."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


def measure(case: Case, reps: int) -> dict:
    """The times of ``case`` (ms for the whole sequence and us a step; ``exchange`` only where the launch splits
    a batch tile over programs), or a record naming the error."""
    device = torch.device("cuda")
    record = {**case.record(), "backend": "triton", "mode": "fwd", "reps": reps}
    try:
        module, x = build(case, "triton", device, "fwd")
        x = x.detach()

        def call():
            with torch.no_grad():
                module(x)

        with recording() as ran:
            call()  # compiles
        times = {"call": _event_ms(call, reps), "queue": _queue_ms(call, reps), "kernel": _kernel_ms(call, reps)}
        times["graph"] = _event_ms(_graphed(call), reps)
        record["cpu_top"] = cpu_top(call, reps)
    except Exception as err:  # recorded, so one failing case does not cost the others
        return {**record, "note": failure_note(err)}
    note = backend_note(case, "triton", "fwd", device, ran)
    try:
        if (exchange := exchange_call(case.cell.split("_")[0], x, case.H)) is not None:
            exchange()  # compiles
            times["exchange"] = _event_ms(exchange, reps)
    except Exception as err:  # the floor is an extra: its failure keeps the case's other times
        note += f"; exchange: {failure_note(err)}"
    record.update({f"{k}_ms": v for k, v in times.items()})
    record.update({f"{k}_us_per_step": v * 1e3 / case.T for k, v in times.items()})
    record["note"] = note
    return record


def write_markdown(result: dict, path: Path) -> None:
    """``result``'s records as a table of microseconds a step."""
    env = result["environment"]
    lines = [
        f"# Forward latency on {env['device']}",
        "",
        f"{env['date']}, torch {env['torch']}, triton {env['triton']}, commit {env['git_commit']}. Inference "
        f"forward of a backend=\"triton\" layer, microseconds a timestep over {result['reps']} calls, the median "
        "(kernel: the mean): call (CUDA events around the call), graph (the call replayed from a CUDA graph), "
        "kernel (the fused kernel's device time), queue (the CPU's time to queue the call), exchange (the split "
        "programs' exchange of the state alone, no math, on the same launch; - where one program holds the layer)."
        + "".join(f" Forced {k}: {v}." for k, v in result.get("forced", {}).items() if v),
        "",
        "| cell | T | B | I | H | dtype | " + " | ".join(COLUMNS) + " | notes |",
        "|" + "---|" * (7 + len(COLUMNS)),
    ]
    for r in result["records"]:
        times = [f"{r[c + '_us_per_step']:.2f}" if c + "_us_per_step" in r else "-" for c in COLUMNS]
        cells = [r["cell"], r["T"], r["B"], r["I"], r["H"], r["dtype"], *times, r.get("note") or ""]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    profiled = [r for r in result["records"] if "cpu_top" in r]
    if profiled:
        lines += ["", f"Where the CPU's time to queue a call goes (`cpu_top`: the {CPU_TOP} functions with the most "
                  "time of their own, us a call under cProfile, which inflates them alike):", ""]
    for r in profiled:
        top = ", ".join(f"`{f['function']}` {f['self_us']:.0f}" for f in r["cpu_top"])
        lines.append(f"- {r['cell']} H={r['H']} B={r['B']}: {top}")
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="directory for latency.json and latency.md")
    parser.add_argument("--cells", nargs="+", choices=("lstm", "gru", "rnn_tanh"), default=["lstm", "gru"])
    parser.add_argument("--hidden", nargs="+", type=int, default=[64, 128, 256])
    parser.add_argument("--batch", nargs="+", type=int, default=[1, 16])
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--regime", choices=("vector", "persistent", "resident", "tiled", "held"),
                        help="force this regime (dispatch.force_regime) instead of the dispatcher's choice")
    parser.add_argument("--warps", type=int, help="force this many warps a program (dispatch.force_warps)")
    parser.add_argument("--exchange", choices=("barrier", "flagged", "cluster", "cluster-async"),
                        help="how split programs exchange h (dispatch.force_exchange; cluster: the held regime's)")
    parser.add_argument("--units", type=int, choices=(4, 8, 16),
                        help="hidden units a split vector-regime program takes (dispatch.force_units)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        parser.error("needs a CUDA device: it times CUDA events, graphs and kernels")
    args.out.mkdir(parents=True, exist_ok=True)
    from rnnlab.kernels.dispatch import force_exchange, force_regime, force_units, force_warps  # imports triton

    forced = {"regime": args.regime, "warps": args.warps, "exchange": args.exchange, "units": args.units}
    result = {"environment": environment(torch.device("cuda")), "reps": args.reps, "records": [], "forced": forced}
    for H, cell, B in itertools.product(args.hidden, args.cells, args.batch):
        with contextlib.ExitStack() as stack:
            overrides = ((force_regime, args.regime), (force_warps, args.warps), (force_exchange, args.exchange),
                         (force_units, args.units))
            for force, value in overrides:
                if value:
                    stack.enter_context(force(value))
            rec = measure(Case(cell, args.seq_len, B, H, H, dtype="bf16"), args.reps)
        result["records"].append(rec)
        print(f"{cell} H={H} B={B}: " + ", ".join(
            f"{c} {rec[c + '_us_per_step']:.2f}" for c in COLUMNS if c + "_us_per_step" in rec) + " us a step; "
            + (rec.get("note") or ""), flush=True)
        (args.out / "latency.json").write_text(json.dumps(result, indent=1) + "\n")
        write_markdown(result, args.out / "latency.md")
    return exit_status(result["records"])


if __name__ == "__main__":
    raise SystemExit(main())
