"""rnnlab-train: compose a config with Hydra (conf/train.yaml), train, test, and say where outputs went.

    rnnlab-train                                   # the offline default: char-level GRU LM on Python's stdlib
    rnnlab-train experiment=lm_shakespeare_char paths.data_dir=/data model.cell=gru
    rnnlab-train -m model.cell=lstm,gru seed=1,2   # a multirun sweep
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.errors import InstantiationException
from lightning.fabric.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import MissingMandatoryValue

from .callbacks import metric_rows_kept
from .checkpoints import read_checkpoint
from .errors import ConfigError, DataError, RNNTypeError, RNNValueError, user_error
from .override_hints import misspelled_keys

CONF = Path(__file__).resolve().parent / "conf"
TASK_OF_DATA = {  # the task each data module feeds
    "rnnlab.data.language_modeling.LanguageModelData": "rnnlab.tasks.LanguageModelTask",
    "rnnlab.data.sentiment.SentimentData": "rnnlab.tasks.SentimentTask",
    "rnnlab.data.forecasting.ForecastData": "rnnlab.tasks.ForecastTask",
}
# what a key must be (in words) and the test of its number, by key: Lightning does not check these trainer.* values
# itself (trainer.max_epochs=abc failed an assert deep inside fit; it skipped a negative clip silently), a string in
# a data.* size reached the DataLoader, whose error named no key, and the model.* values were skipped silently (a
# negative init_range or sample_length), failed only after an epoch (sample_temperature) or named no key
COUNT = ("an int >= 1", lambda v: isinstance(v, int) and v >= 1)
TRAINER_RANGES = (
    dict.fromkeys(("max_epochs", "min_epochs", "max_steps", "min_steps", "check_val_every_n_epoch", "log_every_n_steps",
                   "accumulate_grad_batches", "num_sanity_val_steps", "reload_dataloaders_every_n_epochs"),
                  ("an int or null", lambda v: isinstance(v, int)))
    | dict.fromkeys(("val_check_interval", "overfit_batches", "limit_train_batches", "limit_val_batches",
                     "limit_test_batches", "limit_predict_batches"), ("a number or null", lambda v: True))
    | {"gradient_clip_val": ("a number >= 0 or null (0 and null: no clipping)", lambda v: v >= 0)}
)
DATA_RANGES = dict.fromkeys(("batch_size", "eval_batch_size", "bptt", "lookback", "horizon", "min_freq", "max_length"),
                            COUNT)
MODEL_RANGES = {
    "embedding_dim": COUNT,
    "dropout": ("a number in [0, 1]", lambda v: 0 <= v <= 1),
    "init_range": ("a number >= 0 (0: torch.nn's initialisation)", lambda v: v >= 0),
    "sample_length": COUNT,
    "sample_temperature": ("a finite number > 0", lambda v: 0 < v < float("inf")),
    "optimizer.lr": ("a number >= 0", lambda v: v >= 0),
}


def _target(group: str, name: str) -> str:
    """The ``_target_`` of config ``conf/<group>/<name>.yaml``, following its ``defaults`` parent."""
    node = OmegaConf.load(CONF / group / f"{name}.yaml")
    return node.get("_target_") or _target(group, node.defaults[0])


def _options(group: str, task: str) -> str:
    """The configs of ``group`` ("model" or "data") for ``task`` (a task's ``_target_``), as ``group=name``."""
    names = [p.stem for p in sorted((CONF / group).glob("*.yaml"))]
    found = [n for n in names if task in (_target(group, n), TASK_OF_DATA.get(_target(group, n)))]
    return " or ".join(f"{group}={n}" for n in found) or task


def check_task_matches_data(cfg: DictConfig) -> None:
    """Refuse a model group that cannot train on the selected data group, naming the data groups it needs."""
    task = TASK_OF_DATA.get(cfg.data.get("_target_"))
    if task is None or task == cfg.model.get("_target_"):
        return  # a matching pair, or a data module of the user's own
    raise ConfigError(
        f"{_options('model', cfg.model._target_)} needs {_options('data', cfg.model._target_)}; the selected "
        f"data ({cfg.data._target_}) is for {_options('model', task)}. Choose a matching data=... or model=..."
    )


def gpu_missing(accelerator: object) -> bool:
    """Whether a Lightning ``accelerator`` asks for a CUDA GPU ("gpu", "cuda") that torch does not see."""
    return accelerator in ("gpu", "cuda") and not torch.cuda.is_available()


def check_precision(precision: object) -> None:
    """Refuse a half-precision ``trainer.precision`` that converts the whole task ("16-true", "bf16-true"): its metrics'
    running sums and the forecaster's data statistics too, so that the logged numbers were off (SST-2's test loss by
    3%) and checkpoints kept rounded statistics. The mixed precisions keep them in fp32."""
    if str(precision) in ("16-true", "bf16-true"):
        raise ConfigError(f"trainer.precision={precision} converts the whole task to half precision, its metrics' "
                          "running sums and the forecaster's data statistics included, whose numbers it then rounds; "
                          f"use trainer.precision={str(precision).replace('true', 'mixed')}, which keeps them in fp32")


def check_trainer(trainer: DictConfig) -> None:
    """Refuse a trainer.* value outside its range (TRAINER_RANGES), a half precision that converts the whole task,
    and a GPU accelerator where torch sees no GPU (Lightning's own message names neither the key nor the way out)."""
    if gpu_missing(trainer.get("accelerator")):
        build = f"torch {torch.__version__}" + (" (a CPU build)" if torch.version.cuda is None else "")
        raise ConfigError(f"trainer.accelerator={trainer.accelerator} needs a CUDA GPU, and {build} sees none; "
                          "train on the CPU with trainer=cpu (or trainer.accelerator=cpu)")
    check_ranges("trainer", trainer, TRAINER_RANGES)
    check_precision(trainer.get("precision"))


def check_ranges(group: str, node: DictConfig, ranges: dict) -> None:
    """Refuse a ``group``.* value of ``node`` outside its range (``ranges``: key -> what it must be, in words, and
    the test of its number), naming the key; bools and strings are no numbers, and null is the key's default."""
    for key, (expected, fits) in ranges.items():
        value = OmegaConf.select(node, key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not fits(value)):
            raise ConfigError(f"{group}.{key} must be {expected}; got {value!r} ({type(value).__name__}): set "
                              f"{group}.{key} on the command line")


# cell options that act only through the recurrence: the state entering W_hh (recurrent and weight dropout) or the
# LSTM's cell state carried over (forget_bias)
RECURRENT_ONLY_OPTIONS = ("recurrent_dropout", "weight_dropout", "forget_bias")


def warn_inert_options(cfg: DictConfig) -> None:
    """Warn of cell options that cannot act: a forecaster with a look-back of one step and no decoder runs its
    recurrent layers for one step from a zero state, where W_hh and the forget gate see only zeros."""
    if cfg.data.get("lookback") != 1 or cfg.model.get("decoder") != "direct":
        return
    options = cfg.model.get("cell_options") or {}
    inert = [f"model.cell_options.{k}={options[k]}" for k in RECURRENT_ONLY_OPTIONS if options.get(k)]
    if inert:
        warnings.warn(f"{', '.join(inert)} has no effect: with data.lookback=1 and model.decoder=direct the recurrent "
                      "layers run one step from a zero state, so W_hh and the forget gate see only zeros; set "
                      "data.lookback above 1 or model.decoder=seq2seq for it to act", stacklevel=2)


def instantiate_model(cfg: DictConfig):
    """The task of ``cfg.model``; a layer's argument error becomes a ConfigError naming the model.* key."""
    try:
        return hydra.utils.instantiate(cfg.model)
    except InstantiationException as err:
        cause = err.__cause__
        if not isinstance(cause, (RNNValueError, RNNTypeError)):
            raise
        name = cause.argument  # the layer's constructor argument, which the task takes under the same key
        options = cfg.model.get("cell_options") or {}
        if name in options:  # the layer's cell-variant options come from model.cell_options
            key, value = f"cell_options.{name}", options[name]
        elif name is not None and name in cfg.model:
            key, value = name, cfg.model[name]
        else:
            raise ConfigError(f"a model.* key is out of range: {cause}; check the model.* keys") from cause
        raise ConfigError(f"model.{key}={value!r} is not accepted ({cause}); set model.{key} on the "
                          "command line") from cause


def resumable_task(cfg: DictConfig, checkpoint: dict) -> type:
    """The task class of ``cfg.model``, which must be the one that wrote ``checkpoint`` (ckpt_path's)."""
    saved = checkpoint["rnnlab_config"]["model"].get("_target_")
    if saved != cfg.model._target_:
        raise ConfigError(f"ckpt_path={cfg.ckpt_path} is a checkpoint of a {saved} run, and this run trains a "
                          f"{cfg.model._target_}; resume with the config it was trained with (its experiment=...)")
    return hydra.utils.get_class(saved)


def check_weights_fit(cfg: DictConfig, model: L.LightningModule, checkpoint: dict) -> None:
    """The weights in ``checkpoint`` (ckpt_path's) must have the names and shapes of ``model``'s, or the error
    names the first that differ and the model.* settings that differ from the checkpoint's run."""
    saved, own = checkpoint.get("state_dict", {}), model.state_dict()
    optional = ("_best.min_value", "_best.max_value")  # older checkpoints lack them (Task.on_load_checkpoint)
    wrong = [f"{k} is {tuple(saved[k].shape)} there, {tuple(v.shape)} here" for k, v in own.items()
             if k in saved and saved[k].shape != v.shape]
    wrong += [f"{k} only here" for k in own if k not in saved and not k.endswith(optional)]
    wrong += [f"{k} only there" for k in saved if k not in own]
    if not wrong:
        return
    run = OmegaConf.to_container(OmegaConf.create(checkpoint["rnnlab_config"]["model"]))
    now = OmegaConf.to_container(cfg.model, resolve=True)
    changed = [f"model.{k}={now.get(k)!r} (there {run.get(k)!r})" for k in sorted(set(run) | set(now))
               if run.get(k) != now.get(k) and not isinstance(now.get(k, run.get(k)), dict)]
    raise ConfigError(f"ckpt_path={cfg.ckpt_path}: its weights do not fit this run's model ({'; '.join(wrong[:3])}); "
                      f"resume with the settings it was trained with{': ' + ', '.join(changed) if changed else ''}")


def warn_mid_epoch(checkpoint: dict, ckpt_path: str) -> None:
    """Warn that a checkpoint saved inside an epoch (every_n_train_steps, or a run stopped by trainer.max_steps)
    cannot resume exactly: rnnlab's data loaders start every epoch from its first batch, so the resumed run leaves
    out the rest of that epoch's batches (Lightning's own warning about it says neither)."""
    batches = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_loop.batch_progress", {})
    if batches.get("is_last_batch", True):
        return
    done = batches.get("current", {}).get("completed")
    warnings.warn(f"ckpt_path {ckpt_path} was saved inside epoch {checkpoint.get('epoch')} (after {done} of its "
                  "batches); rnnlab's data loaders cannot resume there, so this run leaves out the rest of that "
                  "epoch's batches and does not repeat an uninterrupted run. Resume from a checkpoint written at an "
                  "epoch's end for that (last.ckpt of a run that ended its epochs)", stacklevel=2)


def adopt_learned(datamodule: L.LightningDataModule, learned: dict[str, object]) -> None:
    """Give ``datamodule``, before its setup, what a trained task learned from its training data (``learned``:
    vocabulary, labels, column statistics by name; empty ones, from older checkpoints, left out), so that it reads
    other data as the model was trained to: for rnnlab-eval and a resumed run."""
    for name in getattr(datamodule, "learned", ()):
        if learned.get(name):
            setattr(datamodule, name, learned[name])


def _instantiate_all(group: DictConfig | None) -> list:
    return [hydra.utils.instantiate(c) for c in (group or {}).values() if c is not None and "_target_" in c]


def build(cfg: DictConfig):
    """Data module, task and trainer from a composed config; the data's sizes go into ``cfg.model``."""
    if (mode := cfg.get("optimized_mode")) not in ("min", "max"):
        raise ConfigError(f"optimized_mode must be 'min' or 'max' (whether optimized_metric="
                          f"{cfg.get('optimized_metric')} improves downwards or upwards); got {mode!r}")
    check_task_matches_data(cfg)
    check_trainer(cfg.trainer)
    check_ranges("data", cfg.data, DATA_RANGES)
    check_ranges("model", cfg.model, MODEL_RANGES)
    warn_inert_options(cfg)
    resumed = None if cfg.get("ckpt_path") is None else read_checkpoint(cfg.ckpt_path, "ckpt_path")
    datamodule = hydra.utils.instantiate(cfg.data)
    if resumed is not None:
        warn_mid_epoch(resumed, cfg.ckpt_path)
        adopt_learned(datamodule, resumable_task(cfg, resumed).learned_in(resumed))
    datamodule.prepare_data()
    datamodule.setup("fit")
    with open_dict(cfg):
        for key, value in datamodule.dims.items():
            cfg.model[key] = value
    model = instantiate_model(cfg)
    if resumed is not None:
        check_weights_fit(cfg, model, resumed)
    for name in getattr(datamodule, "learned", ()):  # vocabulary, labels: saved in checkpoints by the task
        setattr(model, name, getattr(datamodule, name))
    # the data and model config travel in every checkpoint, for rnnlab-eval and rnnlab-generate
    model.run_config = OmegaConf.to_container(cfg, resolve=True)
    # a data module that splits its data per process itself (language modeling: consecutive TBPTT chunks of
    # each rank's own streams; the others: data.sampling.ProcessShare, which scores every evaluation item once) must
    # not have Lightning swap its loaders' samplers for its distributed one
    own_sharding = {"use_distributed_sampler": False} if getattr(datamodule, "shards_per_process", False) else {}
    try:
        trainer = hydra.utils.instantiate(
            cfg.trainer, callbacks=_instantiate_all(cfg.get("callbacks")), logger=_instantiate_all(cfg.get("logger"))
            or False, **own_sharding,
        )
    except InstantiationException as err:
        if not isinstance(err.__cause__, (MisconfigurationException, ValueError)):
            raise
        raise ConfigError(f"Lightning refuses the trainer.* config: {err.__cause__}; set the trainer.* key it names "
                          "on the command line") from err.__cause__
    return datamodule, model, trainer


def train(cfg: DictConfig) -> dict[str, float]:
    """Train (and, with ``test: true``, test the best checkpoint); returns the final metrics, with the best epoch's
    ``optimized_metric`` as ``<optimized_metric>_best`` where the checkpoint callback kept one."""
    if (seed := cfg.get("seed")) is not None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"seed must be an int or null; got {seed!r}: set seed on the command line")
        L.seed_everything(seed, workers=True)
    datamodule, model, trainer = build(cfg)
    try:  # rnnlab's checkpoints hold the optimizer factory and random states, not only tensors
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=False)
    except MisconfigurationException as err:  # such as an optimized_metric the task does not log, after an epoch
        raise ConfigError(f"Lightning refuses the config: {err}") from err
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    # read before testing: loading the best checkpoint restores the callback's state as it was then
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback is not None else ""
    if (score := _best_score(trainer, cfg.get("optimized_metric"), best)) is not None:
        metrics[f"{cfg.optimized_metric}_best"] = score
    last = _last_checkpoint(trainer)
    if cfg.get("test"):
        with metric_rows_kept(trainer):
            trainer.test(model, datamodule=datamodule, ckpt_path=best or None, weights_only=False)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")})
    if trainer.global_rank == 0:
        report(cfg, metrics, best, last)
    return metrics


def _best_score(trainer: L.Trainer, metric: str | None, best: str) -> float | None:
    """The best epoch's value of ``metric`` as the checkpoint callback that monitors it kept (the epoch that
    ``test: true`` evaluates), or None without one. A spawned run (trainer=ddp_sim) sends back only the callback's
    best path, not its score, which is then read from the state that checkpoint saved of the callback."""
    for callback in trainer.checkpoint_callbacks:
        if metric is None or callback.monitor != metric:
            continue
        if callback.best_model_score is not None:
            return float(callback.best_model_score)
        if best and best == callback.best_model_path and Path(best).is_file():  # a local file, not a URL
            saved = torch.load(best, map_location="cpu", weights_only=False, mmap=True)["callbacks"]  # rnnlab's own
            scores = [state["best_model_score"] for state in saved.values() if state.get("monitor") == metric]
            if scores and scores[0] is not None:
                return float(scores[0])
    return None


def sweep_value(cfg: DictConfig, metrics: dict[str, float]) -> float | None:
    """What a run returns to a sweeper: the best epoch's ``optimized_metric`` (``train``'s ``*_best``, the task's
    own or the checkpoint callback's), else its last value, else None."""
    name = cfg.get("optimized_metric")
    return metrics.get(f"{name}_best", metrics.get(name))


def _last_checkpoint(trainer: L.Trainer) -> str:
    """The run's last.ckpt (callbacks.last_checkpoint's), or "" without one. Found on disk, not in the callback's
    state, which a spawned run (trainer=ddp_sim) does not send back to this process."""
    for callback in trainer.checkpoint_callbacks:
        if callback.dirpath and (path := Path(callback.dirpath, "last.ckpt")).is_file():
            return str(path)
    return ""


def report(cfg: DictConfig, metrics: dict[str, float], best: str, last: str) -> None:
    """Print the final metrics (an epoch mean once, not also as ``*_epoch``) and where the run's files are."""
    out = Path(cfg.paths.output_dir)
    lines = ["", "rnnlab-train finished."]
    lines += [f"  {k} = {v:.4f}" for k, v in sorted(metrics.items())
              if "/" in k and not k.endswith("_step") and not (k.endswith("_epoch") and k[:-6] in metrics)]
    lines.append(f"  outputs:     {out}")
    if best or last:
        lines.append(f"  checkpoint:  {best or last}" + (f" (last: {last})" if best and last else ""))
    for label, pattern in (("metrics:", "**/metrics.csv"), ("plots:", "plots/*.png"), ("samples:", "samples.txt")):
        found = sorted(out.glob(pattern))
        if found:
            lines.append(f"  {label:<12} {', '.join(str(p) for p in found)}")
    print("\n".join(lines))


@hydra.main(version_base="1.3", config_path="pkg://rnnlab.conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """rnnlab-train's Hydra main: train, and return the sweep value."""
    try:
        metrics = train(cfg)
    except (ConfigError, DataError, InstantiationException) as err:
        cause = user_error(err)
        if cause is None:
            raise
        print(f"rnnlab-train: error: {cause}", file=sys.stderr)
        sys.exit(2)
    except MissingMandatoryValue as err:
        print(f"rnnlab-train: error: {err.msg.splitlines()[0]} (key {err.full_key}); set it on the command line",
              file=sys.stderr)
        sys.exit(2)
    return sweep_value(cfg, metrics)


def cli() -> None:
    """Console entry point of rnnlab-train: Hydra's main; where it failed (exit status 1), the nearest keys to
    overrides of keys the config lacks, which Hydra refuses while composing, before ``main`` runs."""
    try:
        main()
    except SystemExit as exit_:
        if exit_.code == 1 and (hint := misspelled_keys(sys.argv[1:])):
            print(f"rnnlab-train: {hint}", file=sys.stderr)
        raise


if __name__ == "__main__":
    cli()
