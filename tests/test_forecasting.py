"""The forecasting task end to end: the embedded synthetic series, ETTh1 and airline when the shared data
is present, standardisation on the training split only, and the errors of a malformed CSV."""

import math
import warnings
from datetime import datetime, timedelta

import hydra
import pytest
import torch

from rnnlab import evaluate
from rnnlab.data.forecasting import ForecastData, read_csv_table, synthetic_series
from rnnlab.errors import ConfigError, DataError
from rnnlab.models.forecaster import RNNForecaster
from rnnlab.tasks.forecasting import ForecastTask
from rnnlab.train import train, warn_inert_options
from train_helpers import SHARED, compose_config, record_figures

SMALL = ["model.hidden_size=8", "data.lookback=12", "data.horizon=4"]


@pytest.mark.parametrize(
    ("decoder", "features", "residual"),
    [("direct", "MS", False), ("seq2seq", "M", False), ("seq2seq", "S", True), ("direct", "M", True)],
)
def test_synthetic_fast_dev_run(tmp_path, decoder, features, residual):
    cfg = compose_config(tmp_path, "model=forecast", "data=synthetic", f"model.decoder={decoder}",
                         f"data.features={features}", f"model.residual={residual}", "debug=fast_dev_run", *SMALL,
                         tiny=False)
    metrics = train(cfg)
    assert {"test/mse", "test/mae", "test/mse_orig", "test/rmse_orig", "test/mae_orig",
            "test/wape_orig"} <= metrics.keys()
    assert (tmp_path / "plots" / "forecast.png").is_file()


def test_options_that_cannot_act_at_a_look_back_of_one_step_are_warned_about(tmp_path):
    """A look-back of one step without a decoder (the airline experiment) runs the encoder one step from a zero
    state: recurrent and weight dropout and forget_bias leave the forecast as it is (checked here), and say so."""
    options = ["model.cell=lstm", "model.cell_options.weight_dropout=0.5", "model.cell_options.recurrent_dropout=0.5",
               "model.cell_options.forget_bias=1"]
    cfg = compose_config(tmp_path, "model=forecast", "data=synthetic", "data.lookback=1", *options, tiny=False)
    with pytest.warns(UserWarning, match=r"model.cell_options.recurrent_dropout=0.5, model.cell_options.weight_dropout"
                      r"=0.5, model.cell_options.forget_bias=1 has no effect: with data.lookback=1"):
        warn_inert_options(cfg)
    x = torch.randn(3, 1, 2, dtype=torch.float64)  # (B, lookback, C_in)
    forecasts = []
    for cell_options in ({}, dict(cfg.model.cell_options)):  # the same draws of every weight, in training mode
        torch.manual_seed(0)
        model = RNNForecaster(2, 1, horizon=2, hidden_size=4, backend="torch", cell_options=cell_options)
        forecasts.append(model.double().train()(x))
    torch.testing.assert_close(forecasts[0], forecasts[1], rtol=1e-12, atol=0)  # other code paths: not bit for bit
    for quiet in (["data.lookback=2"], ["model.decoder=seq2seq"]):
        cfg = compose_config(tmp_path, "model=forecast", "data=synthetic", "data.lookback=1", *options, *quiet,
                             tiny=False)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            warn_inert_options(cfg)


@pytest.mark.parametrize("decoder", ["direct", "seq2seq"])
def test_a_bf16_mixed_forecaster_is_tested_and_plotted(tmp_path, decoder):
    """Under bf16-mixed the forecast is bf16 where the output is not residual, which numpy (the plot) cannot take:
    the test stage failed after training, without test metrics."""
    cfg = compose_config(tmp_path, "model=forecast", "data=synthetic", f"model.decoder={decoder}",
                         "model.residual=false", "+trainer.precision=bf16-mixed", "debug=fast_dev_run", *SMALL,
                         tiny=False)
    metrics = train(cfg)
    assert math.isfinite(metrics["test/mse"]) and (tmp_path / "plots" / "forecast.png").is_file()


def test_the_forecast_plot_draws_the_target_column_in_its_units_and_names_it(tmp_path, monkeypatch):
    """With data.features=M every column is forecast; the plot draws the target column (the synthetic series' last,
    "target"), not the first output, in the original units and with its name on the y axes."""
    saved = record_figures(monkeypatch)
    cfg = compose_config(tmp_path, "model=forecast", "data=synthetic", "data.features=M", "debug=fast_dev_run",
                         *SMALL, tiny=False)
    train(cfg)
    data = hydra.utils.instantiate(cfg.data)
    data.setup()
    columns, values = synthetic_series()
    start, target = data.datasets["test"].starts[0], columns.index("target")  # the plot's first window
    ax = saved["forecast.png"].axes[0]
    history, actual, _ = (line.get_ydata() for line in ax.lines)
    torch.testing.assert_close(torch.tensor(history), values[start : start + 12, target].float())
    torch.testing.assert_close(torch.tensor(actual), values[start + 12 : start + 16, target].float())
    assert all("target" in a.get_ylabel() for a in saved["forecast.png"].axes)


@pytest.mark.parametrize("experiment", ["forecast_etth1", "forecast_airline"])
def test_experiment_fast_dev_run(tmp_path, experiment):
    if not (SHARED / "ett" / "ETTh1.csv").is_file():
        pytest.skip("shared ETTh1/airline data absent")
    cfg = compose_config(tmp_path, f"experiment={experiment}", f"paths.data_dir={SHARED}", "debug=fast_dev_run",
                         tiny=False)
    metrics = train(cfg)
    assert {"test/mse", "test/mse_naive", "test/rmse_orig_naive"} <= set(metrics)


class Fixed(torch.nn.Module):
    """A forecaster that returns the same forecast whatever its input."""

    def __init__(self, forecast: torch.Tensor):
        super().__init__()
        self.forecast = forecast

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forecast


def test_percentage_error_stays_finite_at_zero_targets():
    """WAPE on the original scale (sum of absolute errors over the sum of absolute actual values), where MAPE, divided
    by each actual value, ran to 8288 on ETTh1's zeros; no MAPE is logged."""
    task = ForecastTask(input_size=1, output_size=1, horizon=2, target_mean=[0.5], target_std=[2.0], target_index=[0],
                        optimizer=torch.optim.Adam)
    y = torch.tensor([[[-0.25], [0.0]], [[0.75], [1.0]]])  # (B, horizon, C): original values 0, 0.5, 2, 2.5
    task.net = Fixed(y + 0.5)  # each forecast off by 1 on the original scale
    task._evaluate((torch.zeros(2, 3, 1), y), "test")
    wape = task.metrics["test_wape_orig"].compute()
    assert wape.item() == pytest.approx(4 / 5)
    assert not any("mape" in key for key in task.metrics)


def test_a_test_on_loaders_of_ones_own_plots_the_first_output(tmp_path):
    """Without an rnnlab data module (trainer.test on a DataLoader) the task still tests and plots, drawing its
    first output, so named."""
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    task = ForecastTask(input_size=2, output_size=1, horizon=3, target_mean=[0.0], target_std=[1.0],
                        target_index=[1], optimizer=torch.optim.Adam, hidden_size=4, plot_dir=str(tmp_path))
    loader = DataLoader(TensorDataset(torch.randn(6, 5, 2), torch.randn(6, 3, 1)), batch_size=3)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    assert "test/mse" in trainer.test(task, dataloaders=loader, verbose=False)[0]
    assert (tmp_path / "forecast.png").is_file()


def test_the_persistence_baseline_is_scored_on_the_same_windows():
    """*/mse_naive and */rmse_orig_naive: the last observed value of each target column repeated over the horizon,
    against the same targets, standardised and in original units."""
    task = ForecastTask(input_size=2, output_size=1, horizon=2, target_mean=[0.5], target_std=[2.0], target_index=[1],
                        optimizer=torch.optim.Adam)
    x = torch.tensor([[[9.0, 0.0], [9.0, 1.0]], [[9.0, 0.0], [9.0, -1.0]]])  # (B, lookback, C_in): target column 1
    y = torch.tensor([[[1.0], [3.0]], [[-1.0], [-1.0]]])  # (B, horizon, 1)
    task.net = Fixed(y)
    task._evaluate((x, y), "test")
    assert task.metrics["test_mse_naive"].compute().item() == pytest.approx((0 + 4 + 0 + 0) / 4)
    assert task.metrics["test_mse_orig_naive"].compute().item() == pytest.approx(4 * 4 / 4)  # errors scaled by std 2
    assert task.metrics["test_mse"].compute().item() == 0


@pytest.mark.parametrize("decoder", ["direct", "seq2seq"])
def test_dropout_acts_in_a_one_layer_forecaster(decoder):
    """model.dropout reaches a one-layer forecaster (which has no layer between which the RNN's own dropout acts):
    on the recurrent outputs before the head, in training mode only."""
    torch.manual_seed(0)
    x = torch.randn(4, 6, 3)
    model = RNNForecaster(3, 2, horizon=3, hidden_size=16, dropout=0.5, decoder=decoder, backend="torch")
    assert not torch.equal(model(x), model(x))
    model.eval()
    torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)


def test_standardisation_uses_the_training_split_only():
    data = ForecastData(source="synthetic", lookback=8, horizon=2)
    data.setup()
    train_windows = data.datasets["train"]
    train_values = train_windows.x[: train_windows.starts[-1] + 10]  # standardised training rows
    assert abs(float(train_values[:, -1].mean())) < 0.05
    # the population's standard deviation (ddof 0), as sklearn's StandardScaler in the ETT papers' code
    train_rows = synthetic_series()[1][: train_windows.starts[-1] + 10]
    torch.testing.assert_close(torch.tensor(data.column_std, dtype=torch.float64), train_rows.std(0, correction=0))
    assert float(data.datasets["test"].x[-100:, -1].mean()) > 0.5  # the trend moves later data away


@pytest.mark.parametrize(
    ("content", "keys", "message"),
    [
        ("date,a,target\n1,1,2\n2,1,x\n", {}, r"s.csv line 3, column 'target': 'x' is not a number"),
        ("date,a,target\n", {}, r"s.csv has 0 rows, fewer than data.lookback"),
        ("date;a;target\n1;1;2\n", {}, r"s.csv line 1: the header 'date;a;target' is one column when split at each "
                                       r"comma; the file looks semicolon-separated"),
        ("date,a,target\n1,1,2\n\n2,1,2\n", {}, r"s.csv line 3: a blank line, where the header has 3"),
        ("date,a,b\n" + "".join(f"{i},1,2\n" for i in range(50)), {}, r"no target column 'target'.*data.target_column"),
        ("date,a,target\n" + "".join(f"{i},1,2\n" for i in range(10)), {}, r"10 rows, fewer than data.lookback"),
        ("when,a,target\n1,1,2\n", {}, r"no time column 'date'.*set data.time_column"),
        ("", {}, r"is empty"),
        ("date,a,target\n1,1,2\n2,nan,2\n", {}, r"line 3, column 'a': 'nan' is not a finite number"),
        ("date,a,target\n1,1,2\n2,1,-inf\n", {}, r"line 3, column 'target': '-inf' is not a finite number"),
    ],
)
def test_malformed_csv(tmp_path, content, keys, message):
    (tmp_path / "s.csv").write_text(content)
    data = ForecastData(source="csv", path=str(tmp_path / "s.csv"), time_column="date", lookback=12, horizon=4)
    with pytest.raises(DataError, match=message):
        data.setup()


def test_synthetic_series_refuses_a_path():
    """data.path with data.source=synthetic would be silently unread: an error that names the config that reads it."""
    with pytest.raises(DataError, match=r"data.path='x.csv' is not read by data.source=synthetic.*data=forecast_csv"):
        ForecastData(source="synthetic", path="x.csv").setup()


def test_the_synthetic_series_does_not_follow_the_run_seed():
    """The run's seed orders the batches; the series is drawn from series_seed, so a sweep over seed compares models
    on one series. A file's series refuses a series_seed it would not read."""
    first, second = (ForecastData(source="synthetic", seed=seed, lookback=8, horizon=2) for seed in (1, 2))
    first.setup(), second.setup()
    torch.testing.assert_close(first.datasets["test"].x, second.datasets["test"].x, rtol=0, atol=0)
    other = ForecastData(source="synthetic", series_seed=1, lookback=8, horizon=2)
    other.setup()
    assert not torch.equal(first.datasets["test"].x, other.datasets["test"].x)
    with pytest.raises(DataError, match=r"data.series_seed=1 draws the synthetic series only.*drop data.series_seed"):
        ForecastData(source="csv", path="x.csv", series_seed=1).setup()


def test_windows_align_inputs_and_targets():
    data = ForecastData(source="synthetic", lookback=5, horizon=3, features="S")
    data.setup()
    x, y = data.datasets["val"][0]
    series = data.datasets["val"].x[:, 0]
    start = data.datasets["val"].starts[0]
    torch.testing.assert_close(x[:, 0], series[start : start + 5])
    torch.testing.assert_close(y[:, 0], series[start + 5 : start + 8])


@pytest.mark.skipif(not (SHARED / "airline" / "airline-passengers.csv").is_file(), reason="shared airline data absent")
def test_airline_validates_on_the_last_training_year_not_the_test_years():
    data = ForecastData(source="airline", data_dir=str(SHARED), time_column="Month", target_column="Passengers",
                        features="S", lookback=1, horizon=1)
    data.setup()
    first_target = {split: data.datasets[split].starts[0] + 1 for split in ("val", "test")}
    last_target = {split: data.datasets[split].starts[-1] + 1 for split in ("train", "val")}
    assert (len(data.datasets["val"]), len(data.datasets["test"])) == (12, 48)
    assert last_target["train"] < first_target["val"] <= last_target["val"] < first_target["test"]


def test_empty_validation_split_is_an_error(tmp_path):
    (tmp_path / "s.csv").write_text("date,target\n" + "".join(f"{i},{i % 7}\n" for i in range(60)))
    data = ForecastData(source="csv", path=str(tmp_path / "s.csv"), time_column="date", lookback=4, horizon=2,
                        split_fractions=(0.8, 0.02))  # one row
    with pytest.raises(DataError, match=r"validation split has no window.*data.split_fractions\[1\]"):
        data.setup()


def _series(times: list[str] | None = None, header: str = "date,a,target") -> str:
    """A CSV of a time column (``times``; 0 to 199 by default) and two value columns."""
    times = times if times is not None else [str(i) for i in range(200)]
    return header + "\n" + "".join(f"{t},{math.sin(i / 5):.4f},{i / 100}\n" for i, t in enumerate(times))


@pytest.mark.parametrize(
    ("fractions", "message"),
    [
        ((0.7, 0.25), r"s.csv: the test split has no window: a window's data.horizon = 12 targets must lie inside it, "
                      r"which holds 10 rows; lower the sum of data.split_fractions \(got \[0.7, 0.25\]"),
        ((0.05, 0.5), r"s.csv: the training split has no window.*holds 10 rows; raise data.split_fractions\[0\]"),
    ],
)
def test_every_split_needs_a_window(tmp_path, fractions, message):
    """The test split's windows were not counted: 10 test rows for a horizon of 12 ran without test metrics."""
    (tmp_path / "s.csv").write_text(_series())
    data = ForecastData(source="csv", path=str(tmp_path / "s.csv"), time_column="date", lookback=12, horizon=12,
                        split_fractions=fractions)
    with pytest.raises(DataError, match=message):
        data.setup()


HOURS = [(datetime(2020, 1, 1) + timedelta(hours=i)).isoformat(" ") for i in range(200)]


@pytest.mark.parametrize(
    ("times", "message"),
    [
        (HOURS[::-1], r"s.csv line 3: 'date' '2020-01-09 06:00:00' comes before '2020-01-09 07:00:00' of the row "
                      r"before; a series' rows must be in strictly increasing time order"),
        ([str(i) for i in (*range(50), 49, *range(51, 200))], r"line 52: 'date' '49' repeats '49'"),
        ([str(i) for i in (*range(10), 11, 10, *range(12, 200))], r"line 13: 'date' '10' comes before '11'"),
        (["2020-03-29T01:00:00+00:00", "2020-03-29T02:30:00+02:00"],  # 00:30 UTC, before 01:00 UTC
         r"line 3: 'date' '2020-03-29T02:30:00\+02:00' comes before"),
    ],
)
def test_a_time_column_out_of_order_is_refused(tmp_path, times, message):
    """Reversed, shuffled or repeated time steps trained as if in order; where the time column reads as numbers or as
    ISO dates and times, the first row out of order is named."""
    (tmp_path / "s.csv").write_text(_series(times))
    with pytest.raises(DataError, match=message):
        ForecastData(source="csv", path=str(tmp_path / "s.csv"), time_column="date", lookback=12, horizon=4).setup()


def test_a_time_column_in_another_format_is_read_in_file_order(tmp_path):
    (tmp_path / "s.csv").write_text(_series([f"{i % 28 + 1}/{i // 28 + 1}/2020" for i in range(200)][::-1]))
    data = ForecastData(source="csv", path=str(tmp_path / "s.csv"), time_column="date", lookback=12, horizon=4)
    data.setup()
    assert data.columns == ["a", "target"]


def test_a_bom_tabs_and_blank_lines_at_the_end_are_read(tmp_path):
    """A byte-order mark hid the time column ("no time column 'date' (columns: ['\\ufeffdate', ...])"), and blank
    lines at the end were refused; a .tsv file is read tab-separated, as sentiment tables are."""
    (tmp_path / "s.tsv").write_text("\ufeff" + _series().replace(",", "\t") + "\n\n")
    columns, values = read_csv_table(tmp_path / "s.tsv", "date")
    assert columns == ["a", "target"] and values.shape == (200, 2)


@pytest.mark.parametrize("fractions", [None, (0.7, 0.1)])  # (0.7, 0.1): in the configs of older checkpoints
def test_a_truncated_ett_file_is_refused(tmp_path, fractions):
    """The ETT split's borders are fixed row counts: a file of 6000 rows failed in torch.stack."""
    (tmp_path / "ett").mkdir()
    (tmp_path / "ett" / "ETTh1.csv").write_text(_series(HOURS, header="date,HUFL,OT"))
    with pytest.raises(DataError, match=r"ETTh1.csv has 200 rows; the ett split needs at least 14400: the file looks "
                                        r"truncated; delete it to download it again"):
        ForecastData(source="ett", data_dir=str(tmp_path), target_column="OT", lookback=12, horizon=4,
                     split_fractions=fractions).setup()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data=etth1", "data.split_fractions=[0.5,0.2]"],
         r"data.source=ett splits ETTh1.csv as its benchmark does; data.split_fractions=\[0.5, 0.2\] would change "
         r"nothing: drop it"),
        (["data=airline", "data.split_fractions=[0.5,0.2]"], r"data.source=airline splits airline-passengers.csv"),
        (["data=etth1", "data.time_column=when"],
         r"data.source=ett reads ETTh1.csv with its time column 'date'; data.time_column='when' would change nothing"),
        (["data=synthetic", "data.time_column=date"], r"data.time_column='date' is not read by data.source=synthetic"),
    ],
)
def test_a_key_that_a_source_does_not_read_is_refused(tmp_path, overrides, message):
    """ETTh1's and airline's splits and time columns are their benchmarks' (the synthetic series has none): an
    override of them was silently ignored."""
    cfg = compose_config(tmp_path, "model=forecast", *overrides, f"paths.data_dir={tmp_path}", tiny=False)
    with pytest.raises(DataError, match=message):
        hydra.utils.instantiate(cfg.data).setup()


def test_eval_refuses_other_columns_or_another_target_than_the_models(tmp_path):
    """rnnlab-eval compared only the number of columns: with them reordered it scored silently wrong (each column
    standardised with another's statistics), and data.target_column=a was accepted for a model trained to forecast
    'target'. The names travel in the checkpoint; one saved before they did still evaluates."""
    (tmp_path / "a.csv").write_text(_series())
    (tmp_path / "b.csv").write_text(_series(header="date,target,a"))
    cfg = compose_config(tmp_path, "model=forecast", "data=forecast_csv", f"data.path={tmp_path / 'a.csv'}", *SMALL,
                         "trainer.max_epochs=1", "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=1",
                         "trainer.log_every_n_steps=1", "test=false", tiny=False)
    train(cfg)
    checkpoint = str(tmp_path / "checkpoints" / "last.ckpt")
    with pytest.raises(DataError, match=r"b.csv has the columns \['target', 'a'\]; the model was trained on \['a', "
                                        r"'target'\], in that order"):
        evaluate.evaluate(checkpoint, overrides=[f"data.path={tmp_path / 'b.csv'}"])
    with pytest.raises(ConfigError, match=r"trained to read \['a', 'target'\] and forecast \['target'\]; "
                                          r"data.target_column='a' and data.features='MS' read \['a', 'target'\] and "
                                          r"forecast \['a'\]: set them as in training"):
        evaluate.evaluate(checkpoint, overrides=["data.target_column=a"])
    with pytest.raises(ConfigError, match=r"data.features='S' read \['target'\]"):
        evaluate.evaluate(checkpoint, overrides=["data.features=S"])
    old = torch.load(checkpoint, weights_only=False)
    for name in ("columns", "input_columns", "output_columns"):
        del old[name]
    torch.save(old, tmp_path / "old.ckpt")
    assert "test/mse" in evaluate.evaluate(str(tmp_path / "old.ckpt"))
