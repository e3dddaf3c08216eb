"""Time-series windows for forecasting: any CSV with a time column and value columns, ETTh1 (the
standard 12/4/4-month split), airline passengers (the tutorial's 67/33 train/test split, the last
training year held out for validation), and an embedded synthetic series.

A CSV's time column is not a feature; where all its values read as numbers or as ISO 8601 dates and times
(``datetime.fromisoformat``: "2016-07-01 00:00:00", not "1949-01"), the rows must be in strictly increasing time
order, and a file out of order or with a time step twice is refused; other formats are read in file order,
unchecked. ETTh1's and airline's splits and time columns are fixed by their benchmarks: overriding
``split_fractions`` or ``time_column`` there is refused, not ignored.

Columns are standardised with the mean and standard deviation of the training split only (in rnnlab-eval,
those the model was trained with, which also refuses data whose columns, or input and output columns, differ
from the training data's). A window is
``lookback`` steps of inputs and the next ``horizon`` steps of targets; a split owns the windows whose
targets start inside it (their inputs may reach back into the previous split, as in Informer's code), and each of
the three splits must hold at least one window.
``features`` follows Informer: "M" all columns in and out, "S" the target column in and out, "MS" all
columns in and the target out.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from itertools import pairwise
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import ConfigError, DataError
from .files import read_csv
from .sampling import ProcessShare, SplitLoaders, check_split_fractions
from .sources import SOURCES, locate

ETT_MONTH = 30 * 24  # hours in one of ETT's 30-day months
AIRLINE_VAL_MONTHS = 12  # airline: the last year of the tutorial's training part is held out for validation
# the named series: their file, time column and the rows their fixed split needs (ETTh1: 12/4/4 months; airline:
# monthly, 1949-1960)
NAMED = {"ett": ("ETTh1.csv", "date", 20 * ETT_MONTH), "airline": ("airline-passengers.csv", "Month", 144)}
DEFAULT_SPLIT = (0.7, 0.1)  # a CSV's and the synthetic series' (train, val) fractions; the test split takes the rest
SPLIT_NAMES = {"train": "training", "val": "validation", "test": "test"}


def read_csv_table(path: Path, time_column: str | None) -> tuple[list[str], torch.Tensor]:
    """Column names and a (N, C) float64 tensor of every column but the time column, whose order is checked
    (``check_time_order``)."""
    header, rows = read_csv(path)
    if time_column is not None and time_column not in header:
        raise DataError(f"{path} has no time column {time_column!r} (columns: {header}); set data.time_column")
    keep = [i for i, name in enumerate(header) if name != time_column]
    values = [[number(path, line, header[i], row[i]) for i in keep] for line, row in rows]
    if time_column is not None:
        time = header.index(time_column)
        check_time_order(path, time_column, [(line, row[time]) for line, row in rows])
    return [header[i] for i in keep], torch.tensor(values, dtype=torch.float64).reshape(len(values), len(keep))


def number(path: Path, line: int, column: str, cell: str) -> float:
    """``cell`` read as a finite number, or an error that names the file, line and column."""
    try:
        value = float(cell)
    except ValueError:
        raise DataError(f"{path} line {line}, column {column!r}: {cell!r} is not a number; clean the file or drop "
                        "the column") from None
    if not math.isfinite(value):
        raise DataError(f"{path} line {line}, column {column!r}: {cell!r} is not a finite number; fill in or drop "
                        "the missing values")
    return value


def time_key(cell: str) -> float | datetime | None:
    """A time cell as a number, or as an ISO 8601 date and time (in UTC where it has an offset); None otherwise."""
    try:
        return float(cell)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(cell.strip())
    except ValueError:
        return None
    return moment.astimezone(timezone.utc).replace(tzinfo=None) if moment.tzinfo else moment


def check_time_order(path: Path, column: str, cells: list[tuple[int, str]]) -> None:
    """Refuse a time column whose values (``cells``: line number and value) do not increase strictly: rows out of
    order or a time step twice. A column whose values are not all numbers or all ISO dates is not checked."""
    keys = [time_key(cell) for _, cell in cells]
    if not keys or keys[0] is None or len({type(k) for k in keys}) != 1:
        return
    for (before, (_, previous)), (key, (line, cell)) in pairwise(zip(keys, cells, strict=True)):
        if not before < key:
            order = "repeats" if before == key else "comes before"
            raise DataError(f"{path} line {line}: {column!r} {cell!r} {order} {previous!r} of the row before; a "
                            "series' rows must be in strictly increasing time order: sort the file by "
                            f"{column!r} and remove repeated time steps")


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
    seed compares models on the same series. ``split_fractions`` None: a CSV's and the synthetic series' default
    (DEFAULT_SPLIT), the fixed split of ETTh1 and airline."""

    # each column's mean and standard deviation over the training split, and the names of the columns and of the
    # model's input and output columns: travel in checkpoints, so that evaluation standardises other data as the model
    # was trained (and its original-scale metrics are in that data's units) and refuses data it does not fit
    learned = ("column_mean", "column_std", "columns", "input_columns", "output_columns")

    def __init__(self, source: str = "synthetic", path: str | None = None, data_dir: str | None = None,
                 time_column: str | None = None, target_column: str = "target", features: str = "MS",
                 lookback: int = 96, horizon: int = 24, split_fractions=None, batch_size: int = 32,
                 seed: int = 0, series_seed: int = 0):
        super().__init__()
        if features not in ("M", "S", "MS"):
            raise DataError(f"data.features must be 'M', 'S' or 'MS'; got {features!r}")
        if lookback < 1 or horizon < 1:
            raise DataError(f"data.lookback and data.horizon must be >= 1; got {lookback} and {horizon}")
        if split_fractions is not None:
            check_split_fractions(split_fractions)
        self.save_hyperparameters()
        self.column_mean: list[float] | None = None
        self.column_std: list[float] | None = None
        self.columns: list[str] = []
        self.input_columns: list[str] = []
        self.output_columns: list[str] = []
        self.datasets: dict[str, Windows] = {}

    def _load(self) -> tuple[Path | str, list[str], torch.Tensor, list[int]]:
        """The series' file (or a description, for messages), its columns, values (N, C) and the split borders
        [0, a, b, N]."""
        hp = self.hparams
        if hp.source != "synthetic" and hp.series_seed != 0:
            raise DataError(f"data.series_seed={hp.series_seed} draws the synthetic series only; data.source="
                            f"{hp.source} reads its series from a file: drop data.series_seed")
        if hp.source in NAMED:
            return self._load_named()
        if hp.source == "synthetic":
            for key, value in (("path", hp.path), ("time_column", hp.time_column)):
                if value is not None:
                    raise DataError(f"data.{key}={value!r} is not read by data.source=synthetic (a generated series); "
                                    f"drop data.{key}, or forecast your own series with data=forecast_csv "
                                    "data.path=FILE")
            where, (columns, values) = "the synthetic series", synthetic_series(seed=hp.series_seed)
        elif hp.source == "csv":
            if hp.path is None:
                raise DataError("data=forecast_csv needs data.path: a CSV file with a header row")
            where = Path(hp.path).expanduser()
            if not where.is_file():
                raise DataError(f"data.path={hp.path!r} is not a file; point it at a CSV file")
            columns, values = read_csv_table(where, hp.time_column)
        else:
            raise DataError(f"data.source must be synthetic, ett, airline or csv; got {hp.source!r}")
        fractions = hp.split_fractions or DEFAULT_SPLIT
        a = int(len(values) * fractions[0])
        b = int(len(values) * (fractions[0] + fractions[1]))
        return where, columns, values, [0, a, b, len(values)]

    def _load_named(self) -> tuple[Path, list[str], torch.Tensor, list[int]]:
        """ETTh1 or airline (NAMED) with its benchmark's split, which data.split_fractions and data.time_column
        would not change: they are refused. A file shorter than the split needs is refused as truncated."""
        hp = self.hparams
        name, time_column, rows = NAMED[hp.source]
        if hp.time_column not in (None, time_column):
            raise DataError(f"data.source={hp.source} reads {name} with its time column {time_column!r}; "
                            f"data.time_column={hp.time_column!r} would change nothing: drop it")
        # DEFAULT_SPLIT too is let through: the configs of checkpoints saved before etth1.yaml and airline.yaml set
        # null carry it, and rnnlab-eval must still read them
        if hp.split_fractions is not None and tuple(hp.split_fractions) != DEFAULT_SPLIT:
            raise DataError(f"data.source={hp.source} splits {name} as its benchmark does; data.split_fractions="
                            f"{list(hp.split_fractions)} would change nothing: drop it, or split a copy of the file "
                            "your way with data=forecast_csv data.path=FILE data.split_fractions=[TRAIN,VAL]")
        file = locate(SOURCES[hp.source], hp.path, hp.data_dir) / name
        columns, values = read_csv_table(file, time_column)
        if len(values) < rows:
            raise DataError(f"{file} has {len(values)} rows; the {hp.source} split needs at least {rows}: the file "
                            "looks truncated; delete it to download it again (paths.data_dir), or replace it")
        if hp.source == "ett":
            return file, columns, values, [0, 12 * ETT_MONTH, 16 * ETT_MONTH, 20 * ETT_MONTH]
        a = int(len(values) * 0.67)  # the tutorial's 67/33 train/test split; its last training year validates
        return file, columns, values, [0, a - AIRLINE_VAL_MONTHS, a, len(values)]

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        hp = self.hparams
        where, columns, values, borders = self._load()
        if hp.target_column not in columns:
            raise DataError(f"{where} has no target column {hp.target_column!r} among {columns}; set "
                            "data.target_column")
        need = hp.lookback + hp.horizon
        if len(values) < need:
            raise DataError(f"{where} has {len(values)} rows, fewer than data.lookback + data.horizon = {need}")
        target = columns.index(hp.target_column)
        everything = list(range(len(columns)))
        self.inputs = [target] if hp.features == "S" else everything
        self.outputs = everything if hp.features == "M" else [target]
        names = ([columns[i] for i in self.inputs], [columns[i] for i in self.outputs])
        if self.column_mean is None:
            train = values[borders[0] : borders[1]]  # training split only
            # the population's standard deviation, as sklearn's StandardScaler in the ETT papers' code
            self.column_mean = train.mean(0).tolist()
            self.column_std = train.std(0, correction=0).clamp_min(1e-8).tolist()
        else:
            self._check_trained_columns(where, columns, *names)
        self.columns, (self.input_columns, self.output_columns) = columns, names
        mean, std = (torch.tensor(v, dtype=values.dtype) for v in (self.column_mean, self.column_std))
        data = ((values - mean) / std).float()
        for name, (lo, hi) in zip(SPLIT_NAMES, pairwise(borders), strict=True):
            first = max(lo - hp.lookback, 0) if name != "train" else lo
            starts = range(first, hi - need + 1)
            self.datasets[name] = Windows(data, self.inputs, self.outputs, hp.lookback, hp.horizon, starts)
            if not len(self.datasets[name]):
                raise self._empty_split(where, name, hi - lo)

    def _check_trained_columns(self, where: Path | str, columns: list[str], inputs: list[str],
                               outputs: list[str]) -> None:
        """Refuse data that a trained model's statistics (set before ``setup``, by rnnlab-eval) do not fit: another
        number or order of columns, or other input or output columns (data.target_column, data.features) than in
        training. Checkpoints saved before the names were are checked by the number of columns alone."""
        hp = self.hparams
        if len(self.column_mean) != len(columns):
            raise DataError(f"{where}: the model was trained on a series of {len(self.column_mean)} columns; this one "
                            f"has {len(columns)} ({columns}): evaluate it on data with the training series' columns")
        if self.columns and self.columns != columns:
            raise DataError(f"{where} has the columns {columns}; the model was trained on {self.columns}, in that "
                            "order, and standardises each with its own statistics: evaluate it on data with those "
                            "columns in that order")
        if self.input_columns and (self.input_columns, self.output_columns) != (inputs, outputs):
            raise ConfigError(f"the model was trained to read {self.input_columns} and forecast {self.output_columns}; "
                              f"data.target_column={hp.target_column!r} and data.features={hp.features!r} read "
                              f"{inputs} and forecast {outputs}: set them as in training")

    def _empty_split(self, where: Path | str, split: str, rows: int) -> DataError:
        """The error for ``split`` (``rows`` rows) holding no window: what a window needs of it (a training window
        lies inside it, a later split's targets do), and what to change: its fraction (not in a named series' fixed
        split) or the window's size."""
        hp = self.hparams
        if split == "train":
            needs = f"data.lookback + data.horizon = {hp.lookback + hp.horizon} steps"
            sizes = "data.lookback or data.horizon"
        else:
            needs, sizes = f"data.horizon = {hp.horizon} targets", "data.horizon"
        fix = f"lower {sizes}"
        if hp.source not in NAMED:
            change = {"train": "raise data.split_fractions[0]", "val": "raise data.split_fractions[1]",
                      "test": "lower the sum of data.split_fractions"}[split]
            fix = f"{change} (got {list(hp.split_fractions or DEFAULT_SPLIT)}; the test split takes the rest) or {fix}"
        return DataError(f"{where}: the {SPLIT_NAMES[split]} split has no window: a window's {needs} must lie inside "
                         f"it, which holds {rows} row{'s' * (rows != 1)}; {fix}")

    @property
    def dims(self) -> dict:
        """Sizes the model needs from the data: input and output columns, horizon, where the targets are among the
        inputs, and the targets' statistics."""
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
