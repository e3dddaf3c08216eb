"""PNG plots of benchmark results: time per timestep against hidden size, one file per cell and mode, one
panel per batch size, one line per backend and configuration (sequence length, input size, layers,
directions, packing, dtype and cell variant, named in the legend where a panel holds more than one); and grouped bar
charts for the activation-memory and throughput results."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

# what sets a line apart besides the backend: every case field but H (the x axis) and B (the panel), each
# with how a legend names its value
LINE_FIELDS = {"T": "T={}".format, "I": "I={}".format, "layers": "{}L".format,
               "bidirectional": lambda v: "bi" if v else "uni", "packed": lambda v: "packed" if v else "padded",
               "dtype": str, "variant": lambda v: v or "plain"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_bars(groups: dict[str, dict[str, float | None]], ylabel: str, title: str, path: Path) -> Path:
    """A grouped bar chart at ``path``: one group per key of ``groups`` (a case, an experiment), one bar per
    backend in it (missing values, measurements that did not run, are left out)."""
    plt = _pyplot()
    backends = list(dict.fromkeys(b for values in groups.values() for b in values))
    width = 0.8 / len(backends)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(groups)), 3.8))
    for k, backend in enumerate(backends):
        points = [(i, values[backend]) for i, values in enumerate(groups.values()) if values.get(backend) is not None]
        ax.bar([i + (k - (len(backends) - 1) / 2) * width for i, _ in points], [v for _, v in points], width,
               label=backend)
    ax.set_xticks(range(len(groups)), list(groups), fontsize=7, rotation=15)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def panel_lines(recs: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """One panel's lines: (H, us per step) points by label, the backend and the LINE_FIELDS values that differ
    between the panel's lines."""
    lines: dict[tuple, list[tuple[int, float]]] = defaultdict(list)
    for r in recs:
        lines[r["backend"], tuple(r[f] for f in LINE_FIELDS)].append((r["H"], r["us_per_step"]))
    names = list(LINE_FIELDS.values())
    varying = [i for i in range(len(names)) if len({line[1][i] for line in lines}) > 1]
    return {" ".join([backend, *(names[i](config[i]) for i in varying)]): points
            for (backend, config), points in sorted(lines.items(), key=lambda item: str(item[0]))}


def write_plots(result: dict, out_dir: Path) -> list[Path]:
    """Write ``<cell>_<mode>.png`` files into ``out_dir`` and return their paths."""
    plt = _pyplot()

    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for rec in result["records"]:
        if rec["median_ms"] is not None:
            groups[rec["cell"], rec["mode"]].append(rec)
    written = []
    for (cell, mode), recs in sorted(groups.items()):
        batches = sorted({r["B"] for r in recs})
        fig, axes = plt.subplots(1, len(batches), figsize=(4.5 * len(batches), 3.6), squeeze=False)
        for ax, batch in zip(axes[0], batches, strict=True):
            for label, points in panel_lines([r for r in recs if r["B"] == batch]).items():
                ax.plot(*zip(*sorted(points), strict=True), marker="o", label=label)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("hidden size H")
            ax.set_ylabel("us per timestep (median)")
            ax.set_title(f"{cell} {mode}, B={batch}")
            ax.legend(fontsize=7)
        env = result["environment"]
        fig.suptitle(f"{env['device']} - {env['date'][:10]}", fontsize=9)
        fig.tight_layout()
        path = out_dir / f"{cell}_{mode.replace('+', '_')}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written
