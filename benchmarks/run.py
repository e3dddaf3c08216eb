"""Time rnnlab's backends against each other, the way PyTorch's benchmarks/fastrnns does.

    python benchmarks/run.py --preset cpu --out benchmarks/results/cpu

Backends: ``triton``, ``native``, ``torch`` (the layers' ``backend`` argument) and ``compile`` (the
``torch`` path under ``torch.compile``). For every case of the preset and every backend it times the
forward pass (gradients off: "fwd") and a training step without the optimizer (forward, then backward
of a scalar touching the output and the final states: "fwd+bwd"), after warm-up runs (the first one,
which compiles, is recorded as first_call_ms), with a wall clock on the CPU and CUDA events on a GPU.
Writes DIR/results.json (one record per measurement plus the environment once), DIR/results.md (a table
with each backend's ratio to the native kernel: ATen/oneDNN on CPU, cuDNN on GPU) and DIR/<cell>_<mode>.png
(time per step against hidden size per backend).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch
from cudnn_algo import describe
from plot import write_plots
from presets import PRESETS, VARIANTS, Case  # benchmarks/ is on sys.path when run as a script
from report import write_markdown

import rnnlab
from rnnlab.layers import recorded_paths, triton_installed

CLASSES = {"lstm": rnnlab.LSTM, "gru": rnnlab.GRU, "rnn_tanh": rnnlab.RNN, "rnn_relu": rnnlab.RNN}
DTYPES = {"fp32": torch.float32, "fp64": torch.float64, "fp16": torch.float16, "bf16": torch.bfloat16}
# No TF32 (cuDNN's default allows it): fp32 rows compare fp32 arithmetic on cuDNN and the pure-PyTorch path, and the
# fused kernels' fp32 products take three-pass TF32 (about fp32's accuracy: environment's fused_fp32_products)
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
NOISY = 1.3  # a measurement whose p90 exceeds its p10 by more is flagged as noisy


def build(case: Case, backend: str, device: torch.device, mode: str):
    """The module and its input for one case, the module in eval mode for ``mode`` "fwd" (so torch.nn passes
    training=False to cuDNN, and cell-variant dropouts are off) and in training mode otherwise."""
    kwargs = {"num_layers": case.layers, "bidirectional": case.bidirectional,
              "backend": "torch" if backend == "compile" else backend, **VARIANTS[case.variant]}
    if case.cell.startswith("rnn_"):
        kwargs["nonlinearity"] = case.cell.split("_")[1]
    torch.manual_seed(0)
    dtype = DTYPES[case.dtype]
    module = CLASSES[case.cell](case.I, case.H, device=device, dtype=dtype, **kwargs)
    if backend == "compile":  # the pure-PyTorch path under torch.compile (Inductor), compiled on first call
        torch._dynamo.config.allow_rnn = True  # Dynamo refuses torch.nn.RNN/GRU/LSTM subclasses otherwise
        # a fresh start for each record: every record recompiles the layers' one forward (other sizes, grad
        # mode), and past Dynamo's recompile limit (8) it ran eagerly, under the label "compile"
        torch._dynamo.reset()
        module = torch.compile(module)
    module.train(mode != "fwd")
    x = torch.randn(case.T, case.B, case.I, device=device, dtype=dtype)
    if case.packed:  # lengths spread evenly between T/2 and T, the longest first; the packed data is the leaf
        lengths = torch.linspace(case.T, max(1, case.T // 2), case.B).long()
        packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths)
        return module, packed._replace(data=packed.data.requires_grad_())
    return module, x.requires_grad_()


def step(module, x, mode: str) -> None:
    if mode == "fwd":
        with torch.no_grad():
            module(x)
        return
    y, h = module(x)
    y = y.data if isinstance(y, torch.nn.utils.rnn.PackedSequence) else y
    states = h if isinstance(h, tuple) else (h,)
    loss = y.sum() + sum(s.sum() for s in states)
    loss.backward()


@contextlib.contextmanager
def recording():
    """What runs while the block runs, for backend_note: ``paths``, each layer call's path (rnnlab's
    recorded_paths: "native", "triton", "torch" or "stepwise"), and ``launches``, the fused kernels' launches,
    (backward, launch) in order (the dispatcher's recorded_launches; none where Triton is not installed)."""
    launches = contextlib.nullcontext([])
    if triton_installed():
        from rnnlab.kernels.dispatch import recorded_launches

        launches = recorded_launches()
    with recorded_paths() as paths, launches as kernel_launches:
        yield {"paths": paths, "launches": kernel_launches}


def backend_note(case: Case, backend: str, mode: str, device: torch.device, ran: dict) -> str | None:
    """What ran, from what ``recording`` saw during a call: the fused kernels' regime, or the cuDNN algorithm PyTorch
    picks (on CUDA); for ``auto``, first the path it took ("ran native", and the paths in call order where the
    layers took several)."""
    paths = list(dict.fromkeys(ran["paths"]))  # distinct, in call order
    path = paths[0] if len(paths) == 1 else backend
    note = None
    if path == "triton":
        note = _regime_note(ran["launches"])
    elif path == "native" and device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        note = describe(case, mode, (props.major, props.minor), props.multi_processor_count)
    if backend == "auto":
        ran_on = f"ran {' then '.join(paths)}"
        return ran_on if note is None else f"{ran_on}: {note}"
    return note


def _regime_note(launches: list) -> str | None:
    """The fused kernels' regime from the (backward, launch) pairs recorded during a call: the first forward's, with
    the backward's where it differs, how a split vector launch shares out the units, and how its programs meet."""
    forwards, backwards = ([launch for back, launch in launches if back == side] for side in (False, True))
    if not forwards:
        return None
    launch = forwards[0]
    note = f"{launch.regime} regime"
    if backwards and backwards[0].regime != launch.regime:
        note += f" (backward: {backwards[0].regime})"
    if launch.regime == "vector" and launch.meta["GRID_SYNC"]:  # split: programs a row, and their units
        note += f", {launch.grid[1]} programs of {launch.meta['BLOCK_U']} units"
    if launch.meta.get("FLAGGED"):
        return note + ", flagged exchange"
    if launch.cluster > 1:
        return note + f", clusters of {launch.cluster} programs"
    return note + (", grid barrier" if launch.meta.get("GRID_SYNC") else "")


def saved_memory(module, x) -> dict[str, int]:
    """Activation memory of one training forward: ``saved_bytes``, the bytes of the distinct storages autograd
    keeps for the backward (parameters excluded; the input, initial states and any reserve space included), and
    ``weight_copy_bytes``, those of a saved copy of the weights (a storage of the parameters' total bytes that is
    none of theirs: cuDNN's flat buffer, into which it copies weights PyTorch has not flattened, such as bf16
    ones, on every call). Seen through saved-tensor hooks, so it is the same measurement for every backend and
    device. The hooks keep the storages alive until the forward returns (a storage freed earlier could be
    reused, and counted once) but give autograd nothing to keep, so the graph is freed with the output."""
    params = {p.untyped_storage().data_ptr() for p in module.parameters()}
    weight_bytes = sum(p.numel() * p.element_size() for p in module.parameters())
    kept: dict[str, dict[int, torch.UntypedStorage]] = {"saved_bytes": {}, "weight_copy_bytes": {}}

    def pack(t: torch.Tensor) -> None:  # None: the backward, never run, would have nothing to unpack
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            kind = "weight_copy_bytes" if storage.nbytes() == weight_bytes else "saved_bytes"
            kept[kind][storage.data_ptr()] = storage

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda _: None):
        module(x)
    return {kind: sum(storage.nbytes() for storage in storages.values()) for kind, storages in kept.items()}


def time_case(case: Case, backend: str, mode: str, device: torch.device, warmup: int, reps: int) -> dict:
    """The median and the 10th and 90th percentiles (linearly interpolated) of ``reps`` timed runs in
    milliseconds, and on CUDA the peak memory allocated during them over what was allocated before them."""
    module, x = build(case, backend, device, mode)
    cuda = device.type == "cuda"
    t0 = time.perf_counter()
    with recording() as ran:
        step(module, x, mode)  # the first call compiles (Triton kernels, torch.compile graphs)
    if cuda:
        torch.cuda.synchronize()
    first_call_ms = (time.perf_counter() - t0) * 1e3
    for _ in range(warmup - 1):
        step(module, x, mode)
    leaf = x.data if isinstance(x, torch.nn.utils.rnn.PackedSequence) else x  # the input tensor
    times = []
    for rep in range(reps):
        module.zero_grad(set_to_none=True)
        leaf.grad = None  # an input gradient left from the last run would add an accumulation to the timing
        if cuda and rep == 0:  # the peak counts from here: the module and its input allocated, no gradients
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step(module, x, mode)
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            step(module, x, mode)
            times.append((time.perf_counter() - t0) * 1e3)
    peak = torch.cuda.max_memory_allocated() - base if cuda else None  # before saved_memory's untimed forward
    deciles = statistics.quantiles(times, n=10, method="inclusive")  # linear interpolation between runs
    median = statistics.median(times)
    return {
        **case.record(),
        "backend": backend,
        "mode": mode,
        "training": module.training,
        "median_ms": median,
        "us_per_step": median * 1000 / case.T,
        "p10_ms": deciles[0],
        "p90_ms": deciles[-1],
        "reps": reps,
        "first_call_ms": first_call_ms,
        **(saved_memory(module, x) if mode != "fwd" else {"saved_bytes": None, "weight_copy_bytes": None}),
        # CPU peak memory is not measured per run (no allocator statistics); null rather than a guess
        "peak_mem_bytes": peak,
        **({"note": note} if (note := backend_note(case, backend, mode, device, ran)) else {}),
    }


SETTINGS = ("RNNLAB_GRID_SYNC", "TRITON_INTERPRET", "TORCHINDUCTOR_FORCE_DISABLE_CACHES")


def environment(device: torch.device) -> dict:
    """Device, library versions, git commit (with "+uncommitted changes" where tracked files differ from it) and
    date, recorded once per result file."""
    try:
        git = functools.partial(subprocess.run, capture_output=True, text=True, check=True, cwd=Path(__file__).parent)
        commit = git(["git", "rev-parse", "HEAD"]).stdout.strip()
        if git(["git", "status", "--porcelain", "--untracked-files=no"]).stdout.strip():
            commit += "+uncommitted changes"
    except (OSError, subprocess.CalledProcessError):
        commit = None
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    name = f"{line.split(':', 1)[1].strip()}, {torch.get_num_threads()} threads"
                    break
        except OSError:
            pass
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    return {
        "device": name,
        "device_type": device.type,
        "torch": torch.__version__,
        "triton": triton_version,
        # settings that change what runs: the grid barrier, the interpreter, Inductor's caches
        "settings": {key: os.environ[key] for key in SETTINGS if key in os.environ},
        "allow_tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "allow_tf32_cudnn": torch.backends.cudnn.allow_tf32,
        "fused_fp32_products": "3xTF32 (tl.dot input_precision='tf32x3')",
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "loadavg": os.getloadavg(),  # the CPU's load over 1, 5 and 15 minutes as the run starts
        "rnnlab": rnnlab.__version__,
        "python": platform.python_version(),
        "git_commit": commit,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def not_run(case: Case, backend: str, mode: str, why: str) -> dict:
    """The record of a measurement that did not happen, saying why."""
    print(f"{case.label():40s} {mode:8s} {backend:7s}   {why}", flush=True)
    return {**case.record(), "backend": backend, "mode": mode, "median_ms": None, "us_per_step": None,
            "p10_ms": None, "p90_ms": None, "reps": 0, "first_call_ms": None, "saved_bytes": None,
            "weight_copy_bytes": None, "peak_mem_bytes": None, "training": None, "noisy": None, "note": why}


def failure_note(err: Exception) -> str:
    """Print ``err``'s traceback and return the note recording it: "failed: Type: first line"."""
    traceback.print_exc()
    lines = str(err).splitlines() or [""]
    return f"failed: {type(err).__name__}: {lines[0][:200]}"


def measure(case: Case, backend: str, mode: str, device: torch.device, preset) -> dict:
    """One timed record, or a not-run record naming the error (a backend that does not cover the case,
    a kernel that fails on this device): one failure does not cost the rest of a GPU session's run."""
    try:
        rec = time_case(case, backend, mode, device, preset.warmup, preset.reps)
    except NotImplementedError as err:
        return not_run(case, backend, mode, f"not run: {err}")
    except Exception as err:  # recorded in the results and printed with its traceback
        return not_run(case, backend, mode, failure_note(err))
    rec["noisy"] = rec["p90_ms"] > NOISY * rec["p10_ms"]
    if rec["noisy"]:
        print(f"warning: {case.label()} {mode} {backend} is noisy: p90 {rec['p90_ms'] / rec['p10_ms']:.2f}x p10",
              file=sys.stderr, flush=True)
    note = f"  {rec['note']}" if "note" in rec else ""
    print(f"{case.label():40s} {mode:8s} {backend:7s} {rec['median_ms']:9.3f} ms "
          f"(p10 {rec['p10_ms']:.3f}, p90 {rec['p90_ms']:.3f}){note}", flush=True)
    return rec


class Budget:
    """``--budget-s``: measurements may start until ``seconds`` have passed (None: no limit)."""

    def __init__(self, seconds: float | None):
        self.seconds = seconds
        self.deadline = None if seconds is None else time.monotonic() + seconds

    def spent(self, case: Case, backend: str, mode: str) -> dict | None:
        """The not-run record of a measurement that would start too late, or None if it may start."""
        if self.deadline is None or time.monotonic() <= self.deadline:
            return None
        return not_run(case, backend, mode, f"not run: the {self.seconds:g} s budget was spent")


def exit_status(records: list[dict]) -> int:
    """1 if any measurement failed (its note holds failure_note's "failed: ..."), else 0."""
    return int(any("failed: " in (rec.get("note") or "") for rec in records))


def write_results(result: dict, out: Path) -> None:
    """results.json and results.md from the records so far."""
    (out / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    write_markdown(result, out / "results.md")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), required=True)
    parser.add_argument("--out", type=Path, required=True, help="directory for results.json and results.md")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--backends", nargs="+", choices=("triton", "native", "torch", "auto", "compile"),
                        help="time these backends instead of the preset's")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="start no measurement after this many seconds; the rest are recorded as not run")
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    preset = PRESETS[args.preset]
    if args.backends:
        preset = dataclasses.replace(preset, backends=tuple(args.backends))
    budget = Budget(args.budget_s)
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"preset": args.preset, "environment": environment(device), "records": []}
    for case in preset.cases:
        for mode in preset.modes:
            for backend in preset.backends:
                rec = budget.spent(case, backend, mode) or measure(case, backend, mode, device, preset)
                result["records"].append(rec)
                write_results(result, args.out)  # after every record: a run cut short keeps what it measured
    plots = write_plots(result, args.out)
    print(f"wrote {args.out / 'results.json'}, {args.out / 'results.md'} and {len(plots)} plots")
    return exit_status(result["records"])


if __name__ == "__main__":
    raise SystemExit(main())
