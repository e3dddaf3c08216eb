"""Time-series forecasting: MSE training loss on standardised values; MSE and MAE on the standardised scale
(``*/mse``, ``*/mae``, as papers on ETT report) and on the original scale (``*/mse_orig``, ``*/rmse_orig``,
``*/mae_orig``), with the weighted absolute percentage error there (``*/wape_orig``: the sum of absolute errors
over the sum of absolute actual values); the persistence forecast (every step of the horizon the last observed
value), scored on the same windows, as the baseline to beat (``*/mse_naive``, ``*/rmse_orig_naive``); after testing,
a plot of the target column's forecasts against its actual values, in its original units, at
``<plot_dir>/forecast.png``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanAbsoluteError, MeanSquaredError, MinMetric, WeightedMeanAbsolutePercentageError

from ..models.forecaster import RNNForecaster
from .base import Task

# Each metric's name and the scales it is measured on ("": standardised, "_orig": original). Not MAPE, which divides
# each error by its own actual value: standardised values sit around 0, and ETTh1's test months hold 89 zeros in OT,
# so a persistence forecast measured 8288 (828,800 %) at a MAE of 0.42; WAPE divides by the sum instead.
METRICS = {"mse": (MeanSquaredError, ("", "_orig")), "mae": (MeanAbsoluteError, ("", "_orig")),
           "wape": (WeightedMeanAbsolutePercentageError, ("_orig",))}
NAIVE = ("mse_naive", "mse_orig_naive")  # the persistence forecast's errors, standardised and original


class ForecastTask(Task):
    """Trains an :class:`~rnnlab.models.forecaster.RNNForecaster` built from the ``model.*`` keys."""

    saved_lists = ("column_mean", "column_std", "columns", "input_columns", "output_columns")

    def __init__(self, input_size: int, output_size: int, horizon: int, target_mean: list[float],
                 target_std: list[float], target_index: list[int], optimizer: Callable,
                 scheduler: Callable | None = None, cell: str = "lstm", hidden_size: int = 64, num_layers: int = 1,
                 dropout: float = 0.0, decoder: str = "direct", residual: bool = False, backend: str = "auto",
                 plot_dir: str | None = None, cell_options: Mapping | None = None):
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.net = RNNForecaster(input_size, output_size, horizon, hidden_size, num_layers, cell, dropout, decoder,
                                 backend, target_index, residual, cell_options)
        self.register_buffer("mean", torch.tensor(target_mean))
        self.register_buffer("std", torch.tensor(target_std))
        self.metrics = nn.ModuleDict({
            f"{stage}_{name}{scale}": make()
            for stage in ("val", "test") for name, (make, scales) in METRICS.items() for scale in scales
        } | {f"{stage}_{name}": MeanSquaredError() for stage in ("val", "test") for name in NAIVE})
        # the data's per-column standardisation, its columns' names and those of the inputs and outputs (set from the
        # data module; saved_lists; a checkpoint saved before the names were loads them as [], unchecked)
        self.column_mean: list[float] = []
        self.column_std: list[float] = []
        self.columns: list[str] = []
        self.input_columns: list[str] = []
        self.output_columns: list[str] = []
        self.val_mse_best = MinMetric()
        self.val_mse_best.persistent(True)  # saved in checkpoints: a resumed run keeps the best
        self._plot: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def batch_loss(self, batch) -> torch.Tensor:
        x, y = batch  # (B, lookback, C_in), (B, horizon, C_out)
        return F.mse_loss(self.net(x), y)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss = self.batch_loss(batch)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(batch[0]),
                 sync_dist=True)  # the epoch's mean over every process, not process 0's alone
        return loss

    def _evaluate(self, batch, stage: str) -> torch.Tensor:
        x, y = batch  # (B, lookback, C_in), (B, horizon, C_out)
        pred = self.net(x)
        scaled = {"": (pred, y), "_orig": (pred * self.std + self.mean, y * self.std + self.mean)}
        for name, (_, scales) in METRICS.items():
            for scale in scales:
                self.metrics[f"{stage}_{name}{scale}"].update(*scaled[scale])
        naive = x[:, -1:, self.hparams.target_index].expand_as(y).contiguous()  # the last observed values, repeated
        self.metrics[f"{stage}_mse_naive"].update(naive, y)
        self.metrics[f"{stage}_mse_orig_naive"].update(naive * self.std + self.mean, scaled["_orig"][1])
        return pred

    def validation_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        pred = self._evaluate(batch, "test")
        if batch_idx == 0:
            self._plot = (batch[0], batch[1], pred)

    def _log_epoch(self, stage: str) -> torch.Tensor:
        values = {}
        for key, metric in self.metrics.items():
            if key.startswith(f"{stage}_"):
                values[key] = metric.compute()
                metric.reset()
                self.log(f"{stage}/{key[len(stage) + 1:]}", values[key], prog_bar=key == f"{stage}_mse",
                         sync_dist=True)
        for suffix in ("", "_naive"):
            self.log(f"{stage}/rmse_orig{suffix}", values[f"{stage}_mse_orig{suffix}"].sqrt(), sync_dist=True)
        self.log(f"{stage}/loss", values[f"{stage}_mse"], sync_dist=True)
        return values[f"{stage}_mse"]

    def on_validation_epoch_end(self) -> None:
        self.log_best("val/mse_best", self.val_mse_best, self._log_epoch("val"))

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")
        if self._plot is not None and self.hparams.plot_dir and self.trainer.global_rank == 0:
            column, k = self._plotted_column()
            x, y, pred = (t.detach().cpu().float() for t in self._plot)  # bf16 under bf16-mixed: numpy has none
            mean, std = self.mean[k].item(), self.std[k].item()
            history, actual, forecast = (t * std + mean for t in (x[..., self.hparams.target_index[k]], y[..., k],
                                                                  pred[..., k]))
            plot_forecasts(history, actual, forecast, column, Path(self.hparams.plot_dir) / "forecast.png")

    def _plotted_column(self) -> tuple[str, int]:
        """The name of the column the forecast plot draws and its index among the outputs: the data module's target
        column (all columns are outputs with data.features=M), or without an rnnlab data module (a test on loaders
        of one's own) the first output."""
        data = self.trainer.datamodule
        if data is None or not hasattr(data, "outputs"):
            return "output 0", 0
        column = data.hparams.target_column
        return column, data.outputs.index(data.columns.index(column))


def plot_forecasts(history: torch.Tensor, actual: torch.Tensor, forecast: torch.Tensor, column: str, path: Path,
                   windows: int = 4) -> Path:
    """Up to ``windows`` test windows of one column (``column``, its name, labels the y axes): the input history,
    the actual future and the forecast, in the column's original units. history: (B, lookback); actual, forecast:
    (B, horizon)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(windows, len(history))
    fig, axes = plt.subplots(n, 1, figsize=(8, 2.2 * n), squeeze=False)
    lookback, horizon = history.shape[1], actual.shape[1]
    for k, ax in enumerate(axes[:, 0]):
        i = k * (len(history) // n)
        ax.plot(range(lookback), history[i].numpy(), color="gray", label="input")
        future = range(lookback, lookback + horizon)
        ax.plot(future, actual[i].numpy(), color="black", label="actual")
        ax.plot(future, forecast[i].numpy(), color="tab:red", linestyle="--", label="forecast")
        ax.set_ylabel(f"{column}\n(window {i})")
    axes[0, 0].set_title(f"test forecasts of {column} (original units)")
    axes[0, 0].legend(loc="upper left")
    axes[-1, 0].set_xlabel("time step")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
