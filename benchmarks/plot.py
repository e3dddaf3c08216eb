"""PNG plots of benchmark results: time per timestep against hidden size, one line per backend, one file
per cell and mode, one panel per batch size."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path


def write_plots(result: dict, out_dir: Path) -> list[Path]:
    """Write ``<cell>_<mode>.png`` files into ``out_dir`` and return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for rec in result["records"]:
        if rec["median_ms"] is not None:
            groups[rec["cell"], rec["mode"]].append(rec)
    written = []
    for (cell, mode), recs in sorted(groups.items()):
        batches = sorted({r["B"] for r in recs})
        fig, axes = plt.subplots(1, len(batches), figsize=(4.5 * len(batches), 3.6), squeeze=False)
        for ax, batch in zip(axes[0], batches, strict=True):
            for backend in sorted({r["backend"] for r in recs}):
                points = sorted((r["H"], r["us_per_step"]) for r in recs if r["B"] == batch and r["backend"] == backend)
                if points:
                    ax.plot(*zip(*points, strict=True), marker="o", label=backend)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("hidden size H")
            ax.set_ylabel("us per timestep (median)")
            ax.set_title(f"{cell} {mode}, B={batch}")
            ax.legend()
        env = result["environment"]
        fig.suptitle(f"{env['device']} - {env['date'][:10]}", fontsize=9)
        fig.tight_layout()
        path = out_dir / f"{cell}_{mode.replace('+', '_')}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written
