"""Markdown tables of benchmark results: time per backend, ratio to the native kernel, and what ran."""

from __future__ import annotations

from pathlib import Path

REFERENCE = "native"
CASE_FIELDS = ("cell", "T", "B", "I", "H", "layers", "bidirectional", "packed", "dtype", "variant")
OPTIONAL = {"variant": ""}  # fields that records written before they existed lack, with their value


def write_markdown(result: dict, path: Path) -> None:
    """Write ``result`` (as produced by run.py) as a Markdown table, one row per case and mode."""
    env = result["environment"]
    records = result["records"]
    backends = list(dict.fromkeys(r["backend"] for r in records))
    keys = list(dict.fromkeys(case_key(r) for r in records))
    by_key = {(case_key(r), r["backend"]): r for r in records}
    lines = [
        f"# Benchmark `{result['preset']}` on {env['device']}",
        "",
        f"{env['date']}, torch {env['torch']}, rnnlab {env['rnnlab']}, commit {env['git_commit']}. Median of "
        f"{max(r['reps'] for r in records)} runs in ms (p10-p90 in brackets; noisy: p90 above 1.3 times p10); "
        f"ratio = time / {REFERENCE} time (below 1: faster than {REFERENCE}). {_modes(records)}",
        "",
    ]
    header = [*CASE_FIELDS, "mode", *backends, *(f"{b} / {REFERENCE}" for b in backends if b != REFERENCE), "notes"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key in keys:
        cells = [str(v) for v in key]
        times = []
        for b in backends:
            r = by_key.get((key, b))
            if r is None:
                times.append("-")
            elif r["median_ms"] is None:
                times.append("not run")
            else:
                times.append(f"{r['median_ms']:.3f} [{r['p10_ms']:.3f}-{r['p90_ms']:.3f}]"
                             + (" noisy" if r.get("noisy") else ""))
        ref = by_key.get((key, REFERENCE))
        ratios = []
        for b in backends:
            if b == REFERENCE:
                continue
            r = by_key.get((key, b))
            ok = r and ref and r["median_ms"] is not None and ref["median_ms"] is not None
            ratios.append(f"{r['median_ms'] / ref['median_ms']:.2f}x" if ok else "-")
        # what ran (the fused kernels' regime, cuDNN's algorithm), or why it did not
        notes = "; ".join(f"{b}: {r['note']}" for b in backends if (r := by_key.get((key, b))) and r.get("note"))
        lines.append("| " + " | ".join(cells + times + ratios + [notes]) + " |")
    path.write_text("\n".join(lines) + "\n")


def _modes(records: list[dict]) -> str:
    """What the modes ran, from the records' ``training`` field: the fwd rows' modules in eval mode where every
    timed fwd record says so; records written before run.py kept the field (null) ran them in training mode."""
    fwd = {r.get("training") for r in records if r["mode"] == "fwd" and r["median_ms"] is not None}
    state = ("modules in eval mode" if fwd == {False} else "modules in training mode" if fwd <= {True, None}
             else "modules in eval or training mode (the records' training field)")
    return f"fwd: forward with gradients off, {state}; fwd+bwd: forward and backward."


def case_key(r: dict, mode: bool = True) -> tuple:
    """What names record ``r``'s case, a table row's leading columns: its CASE_FIELDS, then its mode
    unless ``mode`` is False."""
    return tuple(r[f] if f in r else OPTIONAL[f] for f in CASE_FIELDS) + ((r["mode"],) if mode else ())
