"""rnnlab-train end to end on the real config: each task with fast_dev_run, every experiment config,
a multirun, exact resume from a checkpoint, and the errors a user sees."""

import csv
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from rnnlab.data.text import load_corpus
from rnnlab.errors import ConfigError, DataError, user_error
from rnnlab.override_hints import misspelled_keys
from rnnlab.train import TASK_OF_DATA, build, sweep_value, train
from train_helpers import compose_config

CONF = Path(__file__).resolve().parents[1] / "conf"
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_language_model_fast_dev_run(tmp_path, cell):
    cfg = compose_config(tmp_path, "debug=fast_dev_run", f"model.cell={cell}")
    metrics = train(cfg)
    assert torch.isfinite(torch.tensor(metrics["test/loss"]))
    assert metrics["val/ppl"] > 1


def test_cell_options_reach_the_layer(tmp_path):
    """model.cell_options turns on layer norm, zoneout, recurrent and weight dropout in the experiment's layers;
    a run trains and its checkpoint holds the layer-norm gains."""
    cfg = compose_config(tmp_path, "debug=fast_dev_run", "model.cell=lstm", "model.cell_options.layer_norm=true",
                         "model.cell_options.zoneout=0.1", "model.cell_options.zoneout_cell=0.2",
                         "model.cell_options.recurrent_dropout=0.25", "model.cell_options.weight_dropout=0.3",
                         "model.cell_options.forget_bias=1.0", "model.init_range=0.1")
    task = instantiate(cfg.model, vocab_size=7)
    assert task.net.rnn.variant.describe() == ("layer_norm=True, zoneout=0.1, zoneout_cell=0.2, "
                                               "recurrent_dropout=0.25, weight_dropout=0.3")
    # init_range's uniform draw leaves the layer-norm gains at one and the forget-gate bias at forget_bias
    assert task.net.rnn.ln_weight_c_l0.eq(1).all() and task.net.rnn.bias_ih_l0[16:32].eq(1).all()
    assert torch.isfinite(torch.tensor(train(cfg)["test/loss"]))


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_config_instantiates(tmp_path, name):
    cfg = compose_config(tmp_path, f"experiment={name}", tiny=False)
    with open_dict(cfg):
        for key in OmegaConf.missing_keys(cfg.model):  # sizes that come from the data, e.g. model.vocab_size
            per_output = key.endswith(("target_mean", "target_std", "target_index"))
            OmegaConf.update(cfg, key, [0] if per_output else 4)
    data, task = instantiate(cfg.data), instantiate(cfg.model)
    assert TASK_OF_DATA[f"{type(data).__module__}.{type(data).__name__}"] == cfg.model._target_
    assert type(task).__name__ == cfg.model._target_.rsplit(".", 1)[1] and sum(p.numel() for p in task.parameters())
    assert instantiate(cfg.trainer, logger=False, enable_checkpointing=False).max_epochs == cfg.trainer.max_epochs


def _epoch_losses(run_dir: Path) -> dict[int, list[float]]:
    rows = list(csv.DictReader((next(run_dir.rglob("metrics.csv"))).open()))
    out: dict[int, list[float]] = {}
    for row in rows:
        if row.get("train/loss_step"):
            out.setdefault(int(row["epoch"]), []).append(float(row["train/loss_step"]))
    return out


def test_resume_continues_with_the_same_losses(tmp_path):
    common = ["model.dropout=0.3", "model.num_layers=2", "+trainer.limit_train_batches=6",
              "+trainer.limit_val_batches=2", "test=false"]
    full = compose_config(tmp_path / "full", *common, "trainer.max_epochs=2")
    train(full)
    first = compose_config(tmp_path / "part", *common, "trainer.max_epochs=1")
    best = train(first)["val/loss_best"]
    saved = torch.load(tmp_path / "part" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert float(saved["metrics.val_loss_best.min_value"]) == pytest.approx(best)  # resumes with the best so far
    resumed = compose_config(tmp_path / "resumed", *common, "trainer.max_epochs=2",
                             f"ckpt_path={tmp_path / 'part' / 'checkpoints' / 'last.ckpt'}")
    train(resumed)
    want = _epoch_losses(tmp_path / "full")[1]
    got = _epoch_losses(tmp_path / "resumed")[1]
    assert len(want) == 6
    assert got == pytest.approx(want, rel=1e-6, abs=1e-7)


def test_a_resumed_run_keeps_the_earlier_best_epoch_and_metrics(tmp_path):
    """Resumed into a new run folder (as the README's resume command does), a run kept only its own epochs: it
    tested its own best epoch and returned its value to a sweeper though an earlier epoch was better, and its
    metrics.csv and plot began at the resumed epoch. It now tests and returns what an uninterrupted run does, and its
    metrics.csv holds every epoch's row; the earlier run's folder is left as it was. optimized_mode=max on the falling
    val/loss makes the first epoch the best, before the resume, whatever the losses come to."""
    common = ["model=forecast", "data=synthetic", "model.hidden_size=16", "+trainer.limit_train_batches=8",
              "+trainer.limit_val_batches=4", "data.lookback=24", "data.horizon=8", "optimized_mode=max"]
    full = train(compose_config(tmp_path / "full", *common, "trainer.max_epochs=3", tiny=False))
    train(compose_config(tmp_path / "part", *common, "trainer.max_epochs=2", "test=false", tiny=False))
    kept = sorted(p.name for p in (tmp_path / "part" / "checkpoints").iterdir())
    ckpt = tmp_path / "part" / "checkpoints" / "last.ckpt"
    resumed = train(compose_config(tmp_path / "resumed", *common, "trainer.max_epochs=3", f"ckpt_path={ckpt}",
                                   tiny=False))
    val = {}
    for row in csv.DictReader(next((tmp_path / "resumed").rglob("metrics.csv")).open()):
        if row.get("val/loss"):
            val[int(row["epoch"])] = float(row["val/loss"])
    assert sorted(val) == [0, 1, 2]
    best_epoch = max(val, key=val.get)
    assert best_epoch < 2, f"the best epoch must come before the resume to test this; val/loss {val}"
    for key in ("val/loss_best", "test/mse"):
        assert resumed[key] == pytest.approx(full[key], rel=1e-6), key
    assert resumed["val/loss_best"] == pytest.approx(val[best_epoch], rel=1e-6)
    # the best epoch's checkpoint, copied; one last.ckpt (save_last wrote last-v1.ckpt beside last_checkpoint's)
    assert sorted(p.name for p in (tmp_path / "resumed" / "checkpoints").iterdir()) == [
        f"epoch_{best_epoch:03d}.ckpt", "last.ckpt"]
    assert sorted(p.name for p in (tmp_path / "part" / "checkpoints").iterdir()) == kept


def test_resuming_inside_an_epoch_is_warned_about(tmp_path):
    """A run stopped by trainer.max_steps inside an epoch leaves a last.ckpt there, which rnnlab's loaders cannot
    resume exactly; an epoch's end resumes quietly."""
    common = ["model=forecast", "data=synthetic", "model.hidden_size=8", "data.lookback=12", "data.horizon=4",
              "+trainer.limit_train_batches=4", "+trainer.limit_val_batches=1", "test=false"]
    for steps, inside in ((6, True), (4, False)):
        train(compose_config(tmp_path / f"run{steps}", *common, f"+trainer.max_steps={steps}", tiny=False))
        ckpt = tmp_path / f"run{steps}" / "checkpoints" / "last.ckpt"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            build(compose_config(tmp_path / "resumed", *common, f"ckpt_path={ckpt}", tiny=False))
        said = [str(w.message) for w in caught if "was saved inside epoch" in str(w.message)]
        assert said == ([f"ckpt_path {ckpt} was saved inside epoch 1 (after 2 of its batches); rnnlab's data loaders "
                         "cannot resume there, so this run leaves out the rest of that epoch's batches and does not "
                         "repeat an uninterrupted run. Resume from a checkpoint written at an epoch's end for that "
                         "(last.ckpt of a run that ended its epochs)"] if inside else [])


def test_resume_checks_the_checkpoint_against_the_run(tmp_path):
    """ckpt_path= is read before training: a folder, another task's checkpoint or weights of other shapes are short
    errors (they were tracebacks from inside Lightning), and the data is read as the checkpoint's model learned to
    (here its vocabulary, for a text cut elsewhere), as rnnlab-eval reads it."""
    train(compose_config(tmp_path / "run", "debug=fast_dev_run"))
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"

    def resume(*overrides: str, tiny: bool = True):
        return build(compose_config(tmp_path / "resumed", f"ckpt_path={ckpt}", *overrides, tiny=tiny))

    with pytest.raises(ConfigError, match=r"ckpt_path '.*checkpoints' is a folder; pass a .ckpt file in it"):
        build(compose_config(tmp_path / "resumed", f"ckpt_path={ckpt.parent}"))
    with pytest.raises(ConfigError, match=r"is a checkpoint of a rnnlab.tasks.LanguageModelTask run, and this run "
                                          r"trains a rnnlab.tasks.ForecastTask; resume with the config it was"):
        resume("model=forecast", "data=synthetic", tiny=False)
    with pytest.raises(ConfigError, match=r"its weights do not fit this run's model \(net.rnn.weight_ih_l0 is \(48, "
                                          r"8\) there, \(72, 8\) here; .*\); resume with the settings it was trained "
                                          r"with: model.hidden_size=24 \(there 16\)$"):
        resume("model.hidden_size=24")
    saved = torch.load(ckpt, weights_only=False)["tokenizer"]
    assert resume("data.max_chars=3000")[0].tokenizer.state_dict() == saved
    assert build(compose_config(tmp_path / "new", "data.max_chars=3000"))[0].tokenizer.state_dict() != saved


def test_last_checkpoint_is_the_last_epoch_when_the_metric_stops_improving(tmp_path):
    """last.ckpt follows the run, not the best epoch (which Lightning 2.6's save_last follows): with a learning rate of
    0 no epoch after the first improves val/loss."""
    cfg = compose_config(tmp_path, "model.optimizer.lr=0", "trainer.max_epochs=3", "+trainer.limit_train_batches=2",
                         "+trainer.limit_val_batches=1", "test=false")
    train(cfg)
    checkpoints = tmp_path / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["epoch_000.ckpt", "last.ckpt"]
    assert torch.load(checkpoints / "last.ckpt", weights_only=False)["epoch"] == 2
    train(compose_config(tmp_path / "debug", "debug=fast_dev_run"))  # no epoch ends: written at the end of training
    assert (tmp_path / "debug" / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.parametrize("trainer", ["default", "ddp_sim"])
def test_sweeper_gets_the_best_epoch_in_the_optimized_direction(tmp_path, trainer):
    """A run returns its best epoch's optimized_metric, in optimized_mode's direction, and model_checkpoint keeps that
    epoch: here val/ppl maximised (perplexity falls as the LM learns), so the first epoch's, not the last's. A spawned
    run (ddp_sim) too, whose checkpoint callback stays in its processes, and whose test processes make a new CSV
    writer, which emptied metrics.csv of the fit's rows."""
    cfg = compose_config(tmp_path, f"trainer={trainer}", "optimized_metric=val/ppl", "optimized_mode=max",
                         "trainer.max_epochs=3", "+trainer.limit_train_batches=4", "+trainer.limit_val_batches=1",
                         "+trainer.limit_test_batches=1")
    metrics = train(cfg)
    rows = list(csv.DictReader(next(tmp_path.rglob("metrics.csv")).open()))
    ppl = [float(row["val/ppl"]) for row in rows if row.get("val/ppl")]
    assert len(ppl) == 3 and ppl[0] > ppl[-1]
    assert sweep_value(cfg, metrics) == metrics["val/ppl_best"] == pytest.approx(max(ppl))
    assert "epoch_000.ckpt" in {p.name for p in (tmp_path / "checkpoints").iterdir()}
    with open_dict(cfg):
        cfg.optimized_mode = "maximise"
    with pytest.raises(ConfigError, match=r"optimized_mode must be 'min' or 'max' .*optimized_metric=val/ppl.*"
                                          r"got 'maximise'"):
        build(cfg)


def _cli(tmp_path, *overrides: str, flags: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rnnlab.train", *flags, f"paths.log_dir={tmp_path}", *overrides],
        capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path,
    )


def test_multirun_of_two_values(tmp_path):
    proc = _cli(tmp_path, "model.cell=gru,rnn_tanh", "debug=fast_dev_run", "data.max_chars=20000",
                "model.hidden_size=16", flags=("-m",))
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = sorted(p.parent for p in tmp_path.rglob("multiruns/*/*/.hydra"))
    assert len(runs) == 2
    assert "model.cell=rnn_tanh" in (runs[1] / ".hydra" / "overrides.yaml").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["model.celll=gru"], "rnnlab-train: the config has no key model.celll (did you mean model.cell?)"),
        (["model.cell=transformer"], "model.cell must be one of lstm, gru, rnn_tanh, rnn_relu; got 'transformer'"),
        (["data=text_folder"], "data.path"),
        (["data=ptb", "paths.data_dir=/nonexistent"], "Set data.path to a folder holding ptb.train.txt"),
        (["ckpt_path=/nonexistent.ckpt"], "ckpt_path '/nonexistent.ckpt' not found; pass the .ckpt file"),
        (["trainer.max_epochs=abc"], "trainer.max_epochs must be an int or null; got 'abc' (str)"),
        (["data.path=/nonexistent"], "data.path='/nonexistent' is not read by the stdlib corpus"),
        (["data.max_chars=0"], "data.max_chars must be an int >= 1, or null for the whole text; got 0"),
    ],
)
def test_bad_input_gives_a_short_error(tmp_path, args, message):
    proc = _cli(tmp_path, "debug=fast_dev_run", "data.max_chars=20000", *args)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(("override", "message"), [
    ("model.dropout=2",
     r"model.dropout must be a number in \[0, 1\]; got 2 \(int\): set model.dropout on the command line"),
    ("model.embedding_dim=0", r"model.embedding_dim must be an int >= 1; got 0"),
    ("model.init_range=-1", r"model.init_range must be a number >= 0 \(0: torch.nn's initialisation\); got -1"),
    ("model.sample_length=-5", r"model.sample_length must be an int >= 1; got -5"),
    ("model.sample_temperature=0", r"model.sample_temperature must be a finite number > 0; got 0"),
    ("model.optimizer.lr=abc", r"model.optimizer.lr must be a number >= 0; got 'abc'"),
    ("trainer.gradient_clip_val=-1",
     r"trainer.gradient_clip_val must be a number >= 0 or null \(0 and null: no clipping\); got -1 \(int\)"),
    ("trainer.devices=0", r"Lightning refuses the trainer.\* config: .*devices.*; set the trainer.\* key it names"),
    ("seed=abc", r"seed must be an int or null; got 'abc'"),
    ("+trainer.precision=bf16-true", r"trainer.precision=bf16-true converts the whole task to half precision, .*; use "
                                     r"trainer.precision=bf16-mixed, which keeps them in fp32"),
])
def test_settings_out_of_range_are_refused_by_key(tmp_path, override, message):
    """Values that Lightning or torch skipped silently (a negative clip, init_range or sample length), refused only
    after an epoch (a temperature of 0) or with a message naming no key, refused before anything runs."""
    with pytest.raises(ConfigError, match=message):
        train(compose_config(tmp_path, override))


def test_an_optimized_metric_the_task_does_not_log_is_a_config_error(tmp_path):
    cfg = compose_config(tmp_path, "optimized_metric=val/foo", "trainer.max_epochs=1", "+trainer.limit_train_batches=2",
                         "+trainer.limit_val_batches=1", "test=false")
    with pytest.raises(ConfigError, match=r"Lightning refuses the config: .*monitor='val/foo'.* could not find the "
                                          r"monitored key"):
        train(cfg)


def test_max_chars_cuts_every_corpus(tmp_path):
    """data.max_chars keeps the first characters of a text before its split (a folder's: of each split file), and
    only the stdlib corpus has a limit by default."""
    for split in ("train", "valid", "test"):
        (tmp_path / f"{split}.txt").write_text(f"{split} " * 100)
    assert [len(t) for t in load_corpus("folder", str(tmp_path), None, 30)] == [30, 30, 30]
    assert [len(t) for t in load_corpus("folder", str(tmp_path), None, None)] == [600, 600, 500]
    (tmp_path / "input.txt").write_text("a line\n" * 1000)
    train_text, valid, test = load_corpus("tinyshakespeare", str(tmp_path), None, 700)
    assert len(train_text + valid + test) == 700
    for data in ("tinyshakespeare", "ptb", "text_folder"):
        assert compose_config(tmp_path, f"data={data}", tiny=False).data.max_chars is None
    assert compose_config(tmp_path, tiny=False).data.max_chars == 1_000_000


def test_misspelled_keys_name_the_nearest_ones():
    """The hint rnnlab-train adds where Hydra refuses an override of a key the config lacks: the nearest keys of the
    config composed with the other choices (here the forecaster's), nothing where every key exists or the
    config does not compose (Hydra's own message covers that)."""
    hint = misspelled_keys(["model=forecast", "data=synthetic", "model.decodr=seq2seq", "data.lookbak=4",
                            "trainer.max_epochs=1", "--multirun"])
    assert hint == ("the config has no key model.decodr (did you mean model.decoder?), data.lookbak (did you mean "
                    "data.lookback?); a new key is added with +key=value, and rnnlab-train --cfg job prints every key")
    assert misspelled_keys(["model.hidden_size=8", "+model.new_key=1"]) is None
    assert misspelled_keys(["model=nonexistent", "model.hiden_size=8"]) is None


def test_empty_text_file_is_an_error(tmp_path):
    for split in ("train", "valid", "test"):
        (tmp_path / f"{split}.txt").write_text("a b c\n" if split != "valid" else "")
    cfg = compose_config(tmp_path, "data=text_folder", f"data.path={tmp_path}", "debug=fast_dev_run")
    with pytest.raises(DataError, match=r"valid.txt is empty"):
        train(cfg)


@pytest.mark.slow
def test_ddp_simulated_on_two_cpu_processes(tmp_path):
    """Trains, checkpoints and tests in spawned processes; metrics.csv keeps the fit's rows beside the test's (the
    test's processes made a new CSV writer, which emptied the file)."""
    cfg = compose_config(tmp_path, "trainer=ddp_sim", "trainer.max_epochs=1", "+trainer.limit_train_batches=4",
                         "+trainer.limit_val_batches=2", "+trainer.limit_test_batches=2")
    metrics = train(cfg)
    assert metrics["val/loss"] > 0 and metrics["test/loss"] > 0
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    rows = list(csv.DictReader(next(tmp_path.rglob("metrics.csv")).open()))
    assert [bool(row["val/loss"]) for row in rows if row["val/loss"] or row["test/loss"]] == [True, False]


def test_optuna_search_runs_trials(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    proc = _cli(tmp_path, "hparams_search=optuna", "hydra.sweeper.n_trials=2", "debug=fast_dev_run",
                "data.max_chars=20000", "model.hidden_size=16")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Best value:" in proc.stdout + proc.stderr


@pytest.mark.parametrize(("args", "expected"), [
    (["hparams_search=basic"], "model.optimizer.lr: 0.001,0.003"),
    (["hydra/launcher=slurm", "trainer=ddp"], "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"),
])
def test_sweep_and_cluster_configs_compose(tmp_path, args, expected):
    if "hydra/launcher=slurm" in args:
        pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    proc = _cli(tmp_path, *args, flags=("--cfg", "hydra"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert expected in proc.stdout


def test_tensorboard_logger(tmp_path):
    pytest.importorskip("tensorboard")
    cfg = compose_config(tmp_path, "logger=tensorboard", "trainer.max_epochs=1", "+trainer.limit_train_batches=2",
                         "+trainer.limit_val_batches=1", "test=false")
    train(cfg)
    assert list((tmp_path / "tensorboard").rglob("events.out.tfevents.*"))


def test_overfit_one_batch(tmp_path):
    cfg = compose_config(tmp_path, "debug=overfit", "trainer.max_epochs=40", "test=false",
                         "model.optimizer.lr=0.01")
    train(cfg)
    losses = [v for epoch in sorted(_epoch_losses(tmp_path)) for v in _epoch_losses(tmp_path)[epoch]]
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("overrides", [
    (),  # language modeling: each process reads its own streams in order
    ("model=forecast", "data=synthetic"),  # each process its data.sampling.ProcessShare, evaluation unpadded
])
def test_ddp_leaves_the_data_modules_shares_alone(tmp_path, overrides):
    """Under DDP Lightning does not swap the data modules' samplers for its distributed one, which would break the
    language model's streams and score some evaluation items twice."""
    cfg = compose_config(tmp_path, "trainer=ddp_sim", *overrides, tiny=not overrides)
    datamodule, _, trainer = build(cfg)
    loader = datamodule.train_dataloader()
    assert trainer._data_connector._requires_distributed_sampler(loader) is False


@pytest.mark.parametrize("gpus", [None, 4])
def test_slurm_launcher_asks_for_one_task_per_gpu(gpus):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    more = [f"hydra.launcher.gpus_per_node={gpus}"] if gpus else []
    with initialize_config_module(config_module="rnnlab.conf", version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm", "trainer=ddp", *more], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert (launcher.nodes, launcher.gpus_per_node, launcher.tasks_per_node) == (1, gpus or 1, gpus or 1)


@pytest.mark.parametrize(("args", "message"), [
    (["model=sentiment"], r"model=sentiment needs data=sentiment_csv or data=sst2; .*is for model=lm"),
    (["data=sst2"], r"model=lm needs data=ptb or data=stdlib_char or .*; .*is for model=sentiment"),
    (["model.hidden_size=-1"], r"model.hidden_size=-1 is not accepted \(GRU: hidden_size must be an int >= 1; "
                               r"got -1\); set model.hidden_size"),
    (["model.cell_options.zoneout=2"], r"model.cell_options.zoneout=2 is not accepted \(GRU: zoneout must be a "
                                       r"number in \[0, 1\]; got 2\); set model.cell_options.zoneout"),
    (["trainer.gradient_clip_val=true"], r"trainer.gradient_clip_val must be a number >= 0 or null \(0 and null: no "
                                         r"clipping\); got True \(bool\)"),
    (["trainer.log_every_n_steps=2.5"], r"trainer.log_every_n_steps must be an int or null; got 2.5 \(float\)"),
    (["model=forecast", "data=synthetic", "data.batch_size=abc"],
     r"data.batch_size must be an int >= 1; got 'abc' \(str\): set data.batch_size"),
])
def test_config_mistakes_name_the_key_to_change(tmp_path, args, message):
    with pytest.raises(ConfigError, match=message):
        build(compose_config(tmp_path, *args, tiny=False))


@pytest.mark.skipif(torch.cuda.is_available(), reason="refused only where torch sees no GPU")
def test_gpu_trainer_without_a_gpu_names_the_cpu_trainer(tmp_path):
    with pytest.raises(ConfigError, match=r"trainer.accelerator=gpu needs a CUDA GPU, and torch .* sees none; train "
                                          r"on the CPU with trainer=cpu"):
        build(compose_config(tmp_path, "trainer=gpu"))


def test_report_prints_each_metric_once_and_both_checkpoints(tmp_path, capsys):
    cfg = compose_config(tmp_path, "trainer.max_epochs=1", "+trainer.limit_train_batches=2",
                         "+trainer.limit_val_batches=1", "+trainer.limit_test_batches=1")
    train(cfg)
    report = capsys.readouterr().out.split("rnnlab-train finished.")[-1]
    assert f"checkpoint:  {tmp_path / 'checkpoints' / 'epoch_000.ckpt'} (last: {tmp_path / 'checkpoints'}" in report
    assert "train/loss = " in report and "train/loss_epoch" not in report


@pytest.mark.parametrize(("override", "message"), [
    ("model.cell_options.zoneout_cell=0.1", "model.cell_options.zoneout_cell is the LSTM's cell-state zoneout; "
                                            "model.cell=gru has none: set it to 0"),
    ("model.cell_options.forget_bias=1", "model.cell_options.forget_bias is the LSTM's forget-gate bias; "
                                         "model.cell=gru has none"),
    ("+model.cell_options.layernorm=true", "model.cell_options takes the keys layer_norm, zoneout, zoneout_cell, "
                                           "recurrent_dropout, weight_dropout, forget_bias; got layernorm"),
])
def test_cell_option_mistakes_name_the_key(tmp_path, override, message):
    with pytest.raises(InstantiationException) as info:
        build(compose_config(tmp_path, override))
    assert str(user_error(info.value)).startswith(message)


def test_tie_weights_error_names_the_keys(tmp_path):
    with pytest.raises(InstantiationException) as info:  # what rnnlab-train's main reports: user_error
        build(compose_config(tmp_path, "model.tie_weights=true"))
    assert str(user_error(info.value)).startswith("model.tie_weights=true needs model.embedding_dim == "
                                                  "model.hidden_size; got 8 and 16: set model.embedding_dim=16")


def test_fast_dev_run_keeps_the_trainer_devices(tmp_path):
    cfg = compose_config(tmp_path, "trainer=ddp_sim", "debug=fast_dev_run")
    assert (cfg.trainer.devices, cfg.trainer.fast_dev_run) == (2, True)


def test_gradient_norms_are_plotted_and_written(tmp_path):
    """The GradientNorms callback: ||dL/dh_t|| of one training batch for each of the bptt = 16 steps, every
    layer and direction, finite and non-zero."""
    train(compose_config(tmp_path, "debug=fast_dev_run", "model.num_layers=2"))
    assert (tmp_path / "plots" / "gradient_norms.png").read_bytes().startswith(b"\x89PNG")
    rows = list(csv.DictReader((tmp_path / "gradient_norms.csv").open()))
    assert {(r["layer"], r["index"]) for r in rows} == {("net.rnn", "0"), ("net.rnn", "1")}
    assert sorted({int(r["t"]) for r in rows}) == list(range(16))
    assert all(0 < float(r["geometric_mean_norm"]) < float("inf") for r in rows)


@pytest.mark.parametrize("gpus", [1, 3])
def test_resume_restores_the_gpu_random_states_this_machine_has(monkeypatch, gpus):
    """A checkpoint saved with two GPUs' random states, resumed where torch sees ``gpus``: each GPU present gets its
    saved state (torch.cuda.set_rng_state_all would fail past the last one), with a warning that the draws may
    differ."""
    from rnnlab.callbacks import RNGState

    callback, restored = RNGState(), {}
    callback.load_state_dict({**callback.state_dict(), "cuda": ["state0", "state1"]})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: restored.update({device: state}))
    with pytest.warns(UserWarning, match=rf"the random states of 2 GPU\(s\) and this machine has {gpus}; restoring "
                                         rf"the first {min(gpus, 2)}"):
        callback.on_train_start(None, None)
    assert restored == dict(enumerate(["state0", "state1"][:gpus]))
