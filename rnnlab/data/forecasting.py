"""Time-series windows for forecasting: any CSV with a time column and value columns, ETTh1 (the
standard 12/4/4-month split), airline passengers (the tutorial's 67/33 train/test split, the last
training year held out for validation), and an embedded synthetic series.

Columns are standardised with the mean and standard deviation of the training split only (in rnnlab-eval,
those the model was trained with). A window is
``lookback`` steps of inputs and the next ``horizon`` steps of targets; a split owns the windows whose
targets start inside it (their inputs may reach back into the previous split, as in Informer's code).
``features`` follows Informer: "M" all columns in and out, "S" the target column in and out, "MS" all
columns in and the target out.
"""

from __future__ import annotations

import csv
import io
import math
from itertools import pairwise
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import DataError
from .files import read_text
from .sampling import ProcessShare, SplitLoaders, check_split_fractions
from .sources import SOURCES, locate

ETT_MONTH = 30 * 24  # hours in one of ETT's 30-day months
AIRLINE_VAL_MONTHS = 12  # airline: the last year of the tutorial's training part is held out for validation


def read_csv_table(path: Path, time_column: str | None) -> tuple[list[str], torch.Tensor]:
    """Column names and a (N, C) float64 tensor of every column but the time column."""
    reader = csv.reader(io.StringIO(read_text(path), newline=""))
    header = next(reader, None)
    if not header:
        raise DataError(f"{path} is empty; it needs a header row and one row per time step")
    rows = list(reader)
    if time_column is not None and time_column not in header:
        raise DataError(f"{path} has no time column {time_column!r} (columns: {header}); set data.time_column")
    keep = [i for i, name in enumerate(header) if name != time_column]
    values = []
    for n, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise DataError(f"{path} line {n}: {len(row)} fields, the header has {len(header)}")
        try:
            values.append([float(row[i]) for i in keep])
        except ValueError as err:
            raise DataError(f"{path} line {n}: a value is not a number ({err}); clean the file or drop the column"
                            ) from err
        bad = next((i for i, v in zip(keep, values[-1], strict=True) if not math.isfinite(v)), None)
        if bad is not None:
            raise DataError(f"{path} line {n}, column {header[bad]!r}: {row[bad]!r} is not a finite number; fill in "
                            "or drop the missing values")
    return [header[i] for i in keep], torch.tensor(values, dtype=torch.float64).reshape(len(values), len(keep))


def synthetic_series(steps: int = 4000, seed: int = 0) -> tuple[list[str], torch.Tensor]:
    """Three noisy seasonal series (daily and weekly periods of an hourly signal) and a target mixing them."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(steps, dtype=torch.float64)
    day, week = torch.sin(2 * math.pi * t / 24), torch.sin(2 * math.pi * t / 168)
    a = day + 0.1 * torch.randn(steps, generator=g, dtype=torch.float64)
    b = week + 0.002 * t + 0.1 * torch.randn(steps, generator=g, dtype=torch.float64)
    target = 0.6 * a + 0.8 * b + 0.1 * torch.randn(steps, generator=g, dtype=torch.float64)
    return ["a", "b", "target"], torch.stack((a, b, target), 1)


class Windows(Dataset):
    """(lookback, C_in) inputs and (horizon, C_out) targets starting at each index of ``starts``."""

    def __init__(self, data: torch.Tensor, inputs: list[int], outputs: list[int], lookback: int, horizon: int,
                 starts: range):
        self.x, self.y = data[:, inputs], data[:, outputs]
        self.lookback, self.horizon, self.starts = lookback, horizon, starts

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, k: int):
        i = self.starts[k]
        return self.x[i : i + self.lookback], self.y[i + self.lookback : i + self.lookback + self.horizon]


class ForecastData(SplitLoaders, L.LightningDataModule):
    """A multivariate series -> standardised windows ``(x (B, lookback, C_in), y (B, horizon, C_out))``. ``seed``
    orders the training batches; ``series_seed`` draws the synthetic series, apart, so that a sweep over the run's
    seed compares models on the same series."""

    # each column's mean and standard deviation over the training split: travel in checkpoints, so that evaluation
    # standardises other data as the model was trained (and its original-scale metrics are in that data's units)
    learned = ("column_mean", "column_std")

    def __init__(self, source: str = "synthetic", path: str | None = None, data_dir: str | None = None,
                 time_column: str | None = None, target_column: str = "target", features: str = "MS",
                 lookback: int = 96, horizon: int = 24, split_fractions=(0.7, 0.1), batch_size: int = 32,
                 seed: int = 0, series_seed: int = 0):
        super().__init__()
        if features not in ("M", "S", "MS"):
            raise DataError(f"data.features must be 'M', 'S' or 'MS'; got {features!r}")
        if lookback < 1 or horizon < 1:
            raise DataError(f"data.lookback and data.horizon must be >= 1; got {lookback} and {horizon}")
        check_split_fractions(split_fractions)
        self.save_hyperparameters()
        self.column_mean: list[float] | None = None
        self.column_std: list[float] | None = None
        self.columns: list[str] = []
        self.datasets: dict[str, Windows] = {}

    def _load(self) -> tuple[list[str], torch.Tensor, list[int]]:
        """Columns, values (N, C) and the split borders [0, a, b, N]."""
        hp = self.hparams
        if hp.source != "synthetic" and hp.series_seed != 0:
            raise DataError(f"data.series_seed={hp.series_seed} draws the synthetic series only; data.source="
                            f"{hp.source} reads its series from a file: drop data.series_seed")
        if hp.source == "synthetic":
            if hp.path is not None:
                raise DataError(f"data.path={hp.path!r} is not read by data.source=synthetic (a generated series); "
                                "drop data.path, or forecast your own series with data=forecast_csv data.path=FILE")
            columns, values = synthetic_series(seed=hp.series_seed)
        elif hp.source == "ett":
            columns, values = read_csv_table(locate(SOURCES["ett"], hp.path, hp.data_dir) / "ETTh1.csv", "date")
            return columns, values, [0, 12 * ETT_MONTH, 16 * ETT_MONTH, min(20 * ETT_MONTH, len(values))]
        elif hp.source == "airline":
            folder = locate(SOURCES["airline"], hp.path, hp.data_dir)
            columns, values = read_csv_table(folder / "airline-passengers.csv", "Month")
            a = int(len(values) * 0.67)  # the tutorial's 67/33 train/test split; its last training year validates
            return columns, values, [0, a - AIRLINE_VAL_MONTHS, a, len(values)]
        elif hp.source == "csv":
            if hp.path is None:
                raise DataError("data=forecast_csv needs data.path: a CSV file with a header row")
            file = Path(hp.path).expanduser()
            if not file.is_file():
                raise DataError(f"data.path={hp.path!r} is not a file; point it at a CSV file")
            columns, values = read_csv_table(file, hp.time_column)
        else:
            raise DataError(f"data.source must be synthetic, ett, airline or csv; got {hp.source!r}")
        a = int(len(values) * hp.split_fractions[0])
        b = int(len(values) * (hp.split_fractions[0] + hp.split_fractions[1]))
        return columns, values, [0, a, b, len(values)]

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        hp = self.hparams
        columns, values, borders = self._load()
        if hp.target_column not in columns:
            raise DataError(f"no target column {hp.target_column!r} among {columns}; set data.target_column")
        need = hp.lookback + hp.horizon
        if len(values) < need:
            raise DataError(f"the series has {len(values)} rows, fewer than data.lookback + data.horizon = {need}")
        if self.column_mean is None:
            train = values[borders[0] : borders[1]]  # training split only
            # the population's standard deviation, as sklearn's StandardScaler in the ETT papers' code
            self.column_mean = train.mean(0).tolist()
            self.column_std = train.std(0, correction=0).clamp_min(1e-8).tolist()
        elif len(self.column_mean) != len(columns):
            raise DataError(f"the model was trained on a series of {len(self.column_mean)} columns; this one has "
                            f"{len(columns)} ({columns}): evaluate it on data with the training series' columns")
        mean, std = (torch.tensor(v, dtype=values.dtype) for v in (self.column_mean, self.column_std))
        data = ((values - mean) / std).float()
        target = columns.index(hp.target_column)
        everything = list(range(len(columns)))
        inputs = [target] if hp.features == "S" else everything
        self.outputs = everything if hp.features == "M" else [target]
        self.inputs, self.columns = inputs, columns
        for name, (lo, hi) in zip(("train", "val", "test"), pairwise(borders), strict=True):
            first = max(lo - hp.lookback, 0) if name != "train" else lo
            starts = range(first, hi - need + 1)
            self.datasets[name] = Windows(data, inputs, self.outputs, hp.lookback, hp.horizon, starts)
        if not len(self.datasets["train"]):
            raise DataError(f"the training split has no window of {need} steps; lower data.lookback or data.horizon")
        if not len(self.datasets["val"]):
            raise DataError(f"the validation split has no window of {need} steps; raise data.split_fractions[1] "
                            f"(got {list(hp.split_fractions)}) or lower data.lookback or data.horizon")

    @property
    def dims(self) -> dict:
        return {
            "input_size": self.datasets["train"].x.shape[1], "output_size": len(self.outputs),
            "horizon": self.hparams.horizon, "target_index": [self.inputs.index(o) for o in self.outputs],
            "target_mean": [self.column_mean[i] for i in self.outputs],
            "target_std": [self.column_std[i] for i in self.outputs],
        }

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        data = self.datasets[split]
        sampler = ProcessShare(len(data), self.hparams.seed if shuffle else None)
        return DataLoader(data, batch_size=self.hparams.batch_size, sampler=sampler, generator=torch.Generator())
