"""Lightning callbacks of rnnlab's experiments: model summary, exact resume of random state, the best epoch's
checkpoint and the logged metrics kept across a resume, text samples during language-model training, plots of the
logged metrics and of the gradient's flow through time."""

from __future__ import annotations

import contextlib
import csv
import random
import shutil
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.strategies import FSDPStrategy
from lightning.pytorch.utilities import move_data_to_device

from .analysis import geometric_mean_norms, plot_gradient_norms, record_states
from .summary import summarize


class KerasSummary(L.Callback):
    """Print a Keras-style summary (output shape and parameters per layer) on one training batch."""

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_rank != 0:
            return
        batch = next(iter(trainer.datamodule.train_dataloader()))
        inputs = [x.to(pl_module.device) for x in pl_module.example_inputs(batch)]
        print(summarize(pl_module, *inputs))


class RNGState(L.Callback):
    """Store Python, NumPy and torch random states in checkpoints and restore them when training resumes,
    after the sanity check, so a resumed run draws the same dropout masks as an uninterrupted one."""

    def __init__(self):
        self._pending: dict | None = None

    def state_dict(self) -> dict:
        return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}

    def load_state_dict(self, state: dict) -> None:
        self._pending = state

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._pending is None:
            return
        random.setstate(self._pending["python"])
        np.random.set_state(self._pending["numpy"])
        torch.set_rng_state(self._pending["torch"])
        if self._pending["cuda"] and torch.cuda.is_available():
            saved, count = self._pending["cuda"], torch.cuda.device_count()
            if len(saved) != count:  # resumed on another machine: set_rng_state_all would fail past the last GPU
                warnings.warn(f"RNGState: the checkpoint holds the random states of {len(saved)} GPU(s) and this "
                              f"machine has {count}; restoring the first {min(len(saved), count)}, so the resumed "
                              "run's draws on the GPU may differ from an uninterrupted run's", stacklevel=2)
            for index, state in enumerate(saved[:count]):
                torch.cuda.set_rng_state(state, index)
        self._pending = None


class ResumableCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint, which also keeps the best epochs of the run it resumes from when this run writes
    to another folder (rnnlab-train's resume does: a new run folder). Lightning's own then forgets their scores, so
    the resumed run tested its own best epoch and returned it to a sweeper, though an earlier one was better. Their
    checkpoints are copied here, so that replacing them later leaves the earlier run's folder as it was."""

    @property
    def state_key(self) -> str:
        """ModelCheckpoint's key: checkpoints written with Lightning's own class restore into this one, and back."""
        return super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)

    def load_state_dict(self, state_dict: dict) -> None:
        earlier = state_dict.get("dirpath")
        if earlier in (None, self.dirpath):
            return super().load_state_dict(state_dict)
        kept = state_dict.get("best_k_models") or {}  # path -> score; none without a monitored metric
        if missing := [path for path in kept if not Path(path).is_file()]:
            warnings.warn(f"ResumableCheckpoint: the earlier run's best checkpoints {missing} are gone, so this run "
                          "keeps its best epoch among its own epochs only", stacklevel=2)
            kept = {}
        here = {path: str(Path(self.dirpath, Path(path).name)) for path in kept}
        if here and rank_zero_only.rank == 0:
            Path(self.dirpath).mkdir(parents=True, exist_ok=True)
            for path, copy in here.items():
                shutil.copy2(path, copy)
        super().load_state_dict({
            **state_dict, "dirpath": self.dirpath, "best_k_models": {here[p]: score for p, score in kept.items()},
            "best_model_score": state_dict["best_model_score"] if kept else None,
            "best_model_path": here.get(state_dict["best_model_path"], ""),
            "kth_best_model_path": here.get(state_dict.get("kth_best_model_path"), ""),
            "kth_value": state_dict["kth_value"] if kept else self.kth_value,
            # its save_last file here, which it then rewrites (else it wrote last-v1.ckpt beside the last.ckpt
            # another callback writes)
            "last_model_path": str(Path(self.dirpath, Path(last).name)) if (last := state_dict.get("last_model_path"))
            else "",
        })


class MetricHistory(L.Callback):
    """Keep the rows the CSV logger wrote (metrics.csv) in checkpoints, and write them back first in a resumed
    run's metrics.csv, which then covers the whole run, as its plot does (MetricPlots); Lightning's logger writes a
    new file in the resumed run's folder, or empties the old one there."""

    def __init__(self):
        self._rows: list[dict] = []  # the rows of the runs this one resumes from
        self._trainer: L.Trainer | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def state_dict(self) -> dict:
        writer = _csv_writer(self._trainer)
        if writer is None:
            return {"rows": self._rows}
        # and the rows not yet flushed to the file: Lightning's values, written as its writer would
        pending = [{k: str(v) for k, v in row.items() if v is not None} for row in writer.metrics]
        return {"rows": self._rows + read_metric_rows(Path(writer.metrics_file_path)) + pending}

    def load_state_dict(self, state: dict) -> None:
        self._rows = state["rows"]

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        writer = _csv_writer(trainer)
        if writer is None or not self._rows:
            return
        path = Path(writer.metrics_file_path)
        # the header the writer appends under (and rewrites when new keys come)
        writer.metrics_keys = write_metric_rows(path, self._rows + read_metric_rows(path), writer.metrics_keys)
        self._rows = []  # now in the file, which the next checkpoint reads


def _csv_logger(trainer: L.Trainer | None) -> CSVLogger | None:
    """``trainer``'s CSV logger in this process where it writes (rank 0), or None."""
    if trainer is None or trainer.global_rank != 0:
        return None
    return next((logger for logger in trainer.loggers if isinstance(logger, CSVLogger)), None)


def _csv_writer(trainer: L.Trainer | None):
    """The experiment writer of ``trainer``'s CSV logger in this process (rank 0's), or None."""
    logger = _csv_logger(trainer)
    return None if logger is None else logger.experiment


def read_metric_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV logger's metrics.csv (none if it is missing), each without its empty cells."""
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return [{k: v for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


def write_metric_rows(path: Path, rows: list[dict[str, str]], keys: list[str] = ()) -> list[str]:
    """Write ``rows`` as metrics.csv at ``path`` under the sorted union of ``keys`` and theirs; returns that header."""
    header = sorted(set(keys).union(*rows))
    with path.open("w", newline="") as f:
        out = csv.DictWriter(f, fieldnames=header)
        out.writeheader()
        out.writerows(rows)
    return header


@contextlib.contextmanager
def metric_rows_kept(trainer: L.Trainer):
    """Keep metrics.csv's rows across a stage that starts the file anew: a spawning strategy's (trainer=ddp_sim)
    test processes each make a new CSV writer, which empties the file the fit's processes wrote."""
    logger = _csv_logger(trainer)  # its log_dir: in this process, its experiment would be a new writer too
    path = None if logger is None else Path(logger.log_dir, "metrics.csv")
    before = [] if path is None else read_metric_rows(path)
    yield
    if before and (after := read_metric_rows(path))[: len(before)] != before:
        write_metric_rows(path, before + after)


class TextSamples(L.Callback):
    """After each validation, sample text from a language model, print it and append it to
    ``<output_dir>/samples.txt``; a private generator leaves the training random state untouched."""

    def __init__(self, output_dir: str, seed: int = 0):
        self.path = Path(output_dir) / "samples.txt"
        self.seed = seed

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.global_rank != 0 or not hasattr(pl_module, "generate"):
            return
        hp = pl_module.hparams
        gen = torch.Generator(device=pl_module.device).manual_seed(self.seed + trainer.current_epoch)
        text = pl_module.generate(hp.sample_prompt, hp.sample_length, hp.sample_temperature, generator=gen)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(f"=== epoch {trainer.current_epoch} ===\n{text}\n\n")
        print(f"\n--- sample after epoch {trainer.current_epoch} ---\n{text}\n---")


class MetricPlots(L.Callback):
    """At the end of training, plot every logged loss and metric against the step into
    ``<output_dir>/plots/metrics.png`` from the CSV logger's ``metrics.csv``."""

    def __init__(self, output_dir: str):
        self.output_dir = Path(output_dir)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_rank != 0:
            return
        files = sorted(self.output_dir.rglob("metrics.csv"))
        if files:
            plot_metrics(files[-1], self.output_dir / "plots" / "metrics.png")


class GradientNorms(L.Callback):
    """At the end of training, how the gradient of one training batch's loss reaches each step's hidden
    state (rnnlab.analysis): ||dL/dh_t|| per recurrent layer and direction, its geometric mean over the batch, into
    ``<output_dir>/plots/gradient_norms.png`` and ``<output_dir>/gradient_norms.csv`` (columns layer,
    direction index, t, geometric_mean_norm). Evaluation mode (no dropout or zoneout draws); not under FSDP, whose
    shards one process cannot run alone."""

    def __init__(self, output_dir: str):
        self.output_dir = Path(output_dir)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_rank != 0 or isinstance(trainer.strategy, FSDPStrategy):
            return
        batch = move_data_to_device(next(iter(trainer.datamodule.train_dataloader())), pl_module.device)
        was_training = pl_module.training
        pl_module.eval()
        try:
            with torch.enable_grad(), record_states(pl_module) as states:
                loss = pl_module.batch_loss(batch)
            norms = states.gradient_norms(loss)
        finally:
            pl_module.train(was_training)
        plot_gradient_norms(norms, self.output_dir / "plots" / "gradient_norms.png")
        with (self.output_dir / "gradient_norms.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["layer", "index", "t", "geometric_mean_norm"])
            for name, n in norms.items():  # (L * D, T, B)
                for index, curve in enumerate(geometric_mean_norms(n).tolist()):
                    writer.writerows([name, index, t, value] for t, value in enumerate(curve))


def plot_metrics(csv_path: Path, png_path: Path) -> Path:
    """One panel per metric family (loss, ppl, ...) with train and val curves against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, list[tuple[float, float]]] = {}
    with csv_path.open() as f:
        for row in csv.DictReader(f):
            for key, value in row.items():
                if key in ("epoch", "step") or not value or key.endswith("_step"):
                    continue
                series.setdefault(key.removesuffix("_epoch"), []).append((float(row["step"]), float(value)))
    families = sorted({k.split("/")[-1] for k in series})
    fig, axes = plt.subplots(1, max(1, len(families)), figsize=(4.5 * max(1, len(families)), 3.5), squeeze=False)
    for ax, family in zip(axes[0], families, strict=False):
        for key in sorted(k for k in series if k.split("/")[-1] == family):
            steps, values = zip(*series[key], strict=True)
            ax.plot(steps, values, marker="." if len(steps) < 50 else None, label=key)
        ax.set_title(family)
        ax.set_xlabel("step")
        ax.legend()
    fig.tight_layout()
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return png_path
