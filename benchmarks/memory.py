"""Activation memory per backend: the bytes autograd keeps from a training forward for its backward.

    python benchmarks/memory.py --preset quick --out benchmarks/results/cpu-memory

For each case of the preset (at its dtype), builds the layer of every backend and sums the distinct
storages that autograd saves during one forward (run.saved_memory: the input, initial states, stored
activations and any reserve space such as cuDNN's; parameters excluded, and a saved copy of them, such as
cuDNN's of bf16 weights, counted apart as weight_copy_bytes). No timing, so on a machine
without a GPU the fused kernels run under the Triton interpreter (TRITON_INTERPRET=1, set here before
they are imported) and their numbers are the same as on a GPU. Writes memory.json and memory.md with
each backend's bytes over the native kernel's (oneDNN/ATen on the CPU, cuDNN on a GPU).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

if not torch.cuda.is_available():  # before anything imports the kernels
    os.environ.setdefault("TRITON_INTERPRET", "1")

from plot import write_bars
from presets import PRESETS, Case
from report import CASE_FIELDS, case_key
from run import build, environment, exit_status, failure_note, saved_memory

BACKENDS = ("native", "torch", "triton")


def measure(preset: str, device: torch.device):
    """Yield one record per case and backend: the case's fields, backend, saved_bytes and weight_copy_bytes
    (None: not run)."""
    for case in PRESETS[preset].cases:
        for backend in BACKENDS:
            rec = {**case.record(), "backend": backend}
            try:
                rec.update(saved_memory(*build(case, backend, device, "fwd+bwd")))
            except NotImplementedError as err:  # e.g. the fused kernels on a CPU without the interpreter
                rec.update(saved_bytes=None, weight_copy_bytes=None, note=f"not run: {err}")
            except Exception as err:  # a failure on a GPU is recorded; the other cases still run
                rec.update(saved_bytes=None, weight_copy_bytes=None, note=failure_note(err))
            print(f"{case.label():40s} {backend:7s} {rec['saved_bytes']} (weight copy {rec['weight_copy_bytes']})",
                  flush=True)
            yield rec


def write_markdown(result: dict, path: Path) -> None:
    """A table: one row per case, MiB per backend, each one's ratio to the native kernel, and the MiB of any
    backend's saved copy of the weights."""
    env = result["environment"]
    header = [*CASE_FIELDS, *BACKENDS, *(f"{b} / native" for b in BACKENDS[1:]), "weight copy"]
    lines = [f"# Activation memory, preset `{result['preset']}`, on {env['device']}", "",
             f"{env['date']}, torch {env['torch']}, commit {env['git_commit']}. MiB that autograd keeps from a "
             "training forward for the backward (parameters excluded); ratio = backend / native; weight copy: MiB "
             "of a saved copy of the weights (cuDNN's flat buffer of bf16 weights), not in the backend's column.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    rows: dict[tuple, dict[str, dict]] = {}
    for rec in result["records"]:
        rows.setdefault(case_key(rec, mode=False), {})[rec["backend"]] = rec
    for key, recs in rows.items():
        sizes = {b: r["saved_bytes"] for b, r in recs.items()}
        mib = [f"{sizes[b] / 2**20:.2f}" if sizes.get(b) is not None else "not run" for b in BACKENDS]
        native = sizes.get("native")
        ratios = [f"{sizes[b] / native:.2f}x" if sizes.get(b) is not None and native else "-" for b in BACKENDS[1:]]
        copies = "; ".join(f"{b}: {r['weight_copy_bytes'] / 2**20:.2f}" for b, r in recs.items()
                           if r.get("weight_copy_bytes")) or "-"
        lines.append("| " + " | ".join([*map(str, key), *mib, *ratios, copies]) + " |")
    path.write_text("\n".join(lines) + "\n")


def write_plot(result: dict, path: Path) -> Path:
    """Bars of MiB per backend, one group per case."""
    groups: dict[str, dict[str, float | None]] = {}
    for rec in result["records"]:
        label = Case(**{f: rec[f] for f in CASE_FIELDS}).label()
        size = rec["saved_bytes"]
        groups.setdefault(label, {})[rec["backend"]] = None if size is None else size / 2**20
    env = result["environment"]
    return write_bars(groups, "MiB kept for the backward", f"Activation memory - {env['device']} - {env['date'][:10]}",
                      path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), required=True)
    parser.add_argument("--out", type=Path, required=True, help="directory for memory.json and memory.md")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    result = {"preset": args.preset, "environment": environment(device), "records": []}
    args.out.mkdir(parents=True, exist_ok=True)
    for rec in measure(args.preset, device):  # written after every record: a run cut short keeps what it measured
        result["records"].append(rec)
        (args.out / "memory.json").write_text(json.dumps(result, indent=1) + "\n")
        write_markdown(result, args.out / "memory.md")
    write_plot(result, args.out / "memory.png")
    print(f"wrote {args.out / 'memory.json'}, {args.out / 'memory.md'} and {args.out / 'memory.png'}")
    return exit_status(result["records"])


if __name__ == "__main__":
    raise SystemExit(main())
