"""End-to-end training throughput of rnnlab-train's experiments per backend.

    python benchmarks/throughput.py --out benchmarks/results/cpu-throughput [--batches 30] [--backends torch native]

Composes the real config of each experiment (the offline ones by default: the stdlib language model and
the synthetic forecaster), sets ``model.backend``, trains ``--batches`` batches after ``--warmup`` and
reports samples and tokens (timesteps x batch) per second. Each measurement runs in a fresh process
(one after another, the allocator and kernel caches left by a previous backend shifted results by up to
20%). Writes throughput.json and throughput.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from omegaconf import open_dict
from plot import write_bars
from run import environment

from rnnlab.train import build

# name -> overrides of rnnlab-train's config (the offline default and the embedded synthetic series)
EXPERIMENTS = {
    "lm_stdlib_char_gru": [],
    "lm_stdlib_char_lstm": ["model.cell=lstm"],
    "forecast_synthetic_lstm": ["model=forecast", "data=synthetic"],
}


class Clock(L.Callback):
    """Times training batches after ``warmup`` of them, from the start of the first timed batch to the end
    of the last (the device synchronised at both; the end of fit is not counted); counts samples and
    timesteps."""

    def __init__(self, warmup: int):
        self.warmup, self.seen, self.samples, self.tokens, self.start, self.end = warmup, 0, 0, 0, None, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.seen == self.warmup:
            self.start = _now(pl_module.device)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.seen += 1
        if self.start is not None:
            x = batch[0]  # (T, B) tokens for the language model, (B, T, C) windows for forecasting
            self.samples += x.shape[1] if x.dim() == 2 else x.shape[0]
            self.tokens += x.shape[0] * x.shape[1]
            self.end = _now(pl_module.device)

    def rates(self) -> dict:
        seconds = self.end - self.start
        return {"seconds": seconds, "samples_per_s": self.samples / seconds, "tokens_per_s": self.tokens / seconds}


def _now(device: torch.device) -> float:
    """perf_counter() once the work queued on ``device`` has finished."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def measure(name: str, backend: str, batches: int, warmup: int, out: Path) -> dict:
    with initialize_config_module(config_module="rnnlab.conf", version_base="1.3"):
        cfg = compose("train", overrides=[*EXPERIMENTS[name], f"model.backend={backend}"])
    with open_dict(cfg):
        cfg.paths.output_dir = str(out / "runs" / f"{name}-{backend}")
        cfg.callbacks = None
        cfg.logger = None
        cfg.trainer.max_epochs = 1
        cfg.trainer.limit_train_batches = batches + warmup
        cfg.trainer.limit_val_batches = 0
        cfg.trainer.enable_checkpointing = False
        cfg.trainer.enable_progress_bar = False
    L.seed_everything(0, verbose=False)
    datamodule, model, _ = build(cfg)
    clock = Clock(warmup)
    trainer = instantiate(cfg.trainer, callbacks=[clock], logger=False)
    trainer.fit(model, datamodule=datamodule)
    return {"experiment": name, "backend": backend, "batches": batches, **clock.rates()}


def write_plot(result: dict, path: Path) -> Path:
    """Bars of timesteps (tokens) per second per backend, one group per experiment."""
    groups: dict[str, dict[str, float | None]] = {}
    for rec in result["records"]:
        groups.setdefault(rec["experiment"], {})[rec["backend"]] = rec["tokens_per_s"]
    env = result["environment"]
    return write_bars(groups, "timesteps x batch per second", f"Training throughput - {env['device']} - "
                      f"{env['date'][:10]}", path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--backends", nargs="+", default=["torch", "native", "auto"])
    parser.add_argument("--experiments", nargs="+", default=list(EXPERIMENTS), choices=list(EXPERIMENTS))
    parser.add_argument("--one", nargs=2, metavar=("EXPERIMENT", "BACKEND"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.one:  # a single measurement, in this process, printed as JSON on the last line
        print(json.dumps(measure(*args.one, args.batches, args.warmup, args.out)))
        return 0
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    records = []
    for name in args.experiments:
        for backend in args.backends:
            command = [sys.executable, __file__, "--out", str(args.out), "--batches", str(args.batches),
                       "--warmup", str(args.warmup), "--one", name, backend]
            proc = subprocess.run(command, capture_output=True, text=True, check=True)
            rec = json.loads(proc.stdout.strip().splitlines()[-1])
            records.append(rec)
            print(f"{name:26s} {backend:7s} {rec['samples_per_s']:9.1f} samples/s {rec['tokens_per_s']:11.1f} tokens/s",
                  flush=True)
    result = {"environment": environment(device), "records": records}
    (args.out / "throughput.json").write_text(json.dumps(result, indent=1) + "\n")
    env = result["environment"]
    lines = [f"# Training throughput on {env['device']}", "",
             f"{env['date']}, torch {env['torch']}, commit {env['git_commit']}; {args.batches} timed batches after "
             f"{args.warmup} warm-up batches, default experiment configs.", "",
             "| experiment | backend | samples/s | tokens/s |", "|---|---|---|---|"]
    lines += [f"| {r['experiment']} | {r['backend']} | {r['samples_per_s']:.1f} | {r['tokens_per_s']:.0f} |"
              for r in records]
    (args.out / "throughput.md").write_text("\n".join(lines) + "\n")
    write_plot(result, args.out / "throughput.png")
    print(f"wrote {args.out / 'throughput.json'}, {args.out / 'throughput.md'} and {args.out / 'throughput.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
