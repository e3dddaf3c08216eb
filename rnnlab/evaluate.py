"""rnnlab-eval: evaluate a checkpoint written by rnnlab-train on a split of its data.

    rnnlab-eval logs/train/runs/<time>/checkpoints/last.ckpt              # the test split
    rnnlab-eval CKPT --split val data.path=/elsewhere/ptb                 # overrides of the run's config
    rnnlab-eval CKPT paths.data_dir=/mnt/data                             # the data sets' folder elsewhere
    rnnlab-eval CKPT --plot-dir eval_plots                                # also the test plots, into eval_plots/

The overrides may change what is evaluated and how: data.*, paths.data_dir (which the data's data_dir follows,
as in training), trainer.accelerator and trainer.precision (the run's, by default); the model is the
checkpoint's. It keeps the vocabulary, labels and (a forecaster) column statistics it was trained with, so
other data is read through them. Plots (forecasts, confusion matrix) are written only with --plot-dir, never
into the training run's folder.
"""

from __future__ import annotations

import argparse
import sys

import hydra
import lightning as L
import torch
from hydra.errors import InstantiationException
from lightning.fabric.utilities.exceptions import MisconfigurationException

from .checkpoints import load_run, run_on_cpu
from .errors import ConfigError, DataError, user_error
from .train import DATA_RANGES, adopt_learned, check_precision, check_ranges, gpu_missing

EVAL_KEYS = ("data", "paths.data_dir", "trainer.accelerator", "trainer.precision")  # what overrides may change


def _eval_overrides(overrides: list[str]) -> tuple[list[str], str | None]:
    """``overrides`` for load_run, paths.data_dir also given to data.data_dir (which followed it when the run's
    config was resolved), and apart the trainer.precision given (None: none; a run's config may have no such key
    for load_run to take); refuses a key that evaluation does not read (EVAL_KEYS), which would change nothing."""
    keys = [o.split("=", 1)[0] for o in overrides]
    if refused := [o for o, key in zip(overrides, keys, strict=True)
                   if not any(key == k or key.startswith(f"{k}.") for k in EVAL_KEYS)]:
        raise ConfigError(f"rnnlab-eval changes only {', '.join(k + ('.*' if k == 'data' else '') for k in EVAL_KEYS)}"
                          f" of the run's config; {refused} would change nothing (the model is the checkpoint's): "
                          "drop them")
    if "data" in keys:
        raise ConfigError("rnnlab-eval changes the run's data config key by key (data.path=..., data.batch_size=...), "
                          "not as a whole: data=... would replace it; the model can only read data of its own kind")
    moved = [o.replace("paths.data_dir=", "data.data_dir=", 1) for o, key in zip(overrides, keys, strict=True)
             if key == "paths.data_dir" and "data.data_dir" not in keys]
    precision = [o.split("=", 1)[1] for o, key in zip(overrides, keys, strict=True) if key == "trainer.precision"]
    return ([o for o, key in zip(overrides, keys, strict=True) if key != "trainer.precision"] + moved,
            precision[-1] if precision else None)


def evaluate(ckpt_path: str, split: str = "test", overrides: list[str] | None = None,
             plot_dir: str | None = None) -> dict[str, float]:
    """Metrics of the checkpoint's model on ``split`` ("val" or "test") of its data; the test plots go to
    ``plot_dir`` (none when it is None)."""
    overrides, precision = _eval_overrides(overrides or [])
    model, cfg = load_run(ckpt_path, overrides)
    if plot_dir is not None and "plot_dir" not in model.hparams:
        raise ConfigError(f"--plot-dir: a {type(model).__name__}'s test draws no plots; drop --plot-dir")
    check_ranges("data", cfg.data, DATA_RANGES)
    datamodule = hydra.utils.instantiate(cfg.data)
    adopt_learned(datamodule, {name: getattr(model, name, None) for name in getattr(datamodule, "learned", ())})
    if "plot_dir" in model.hparams:
        model.hparams.plot_dir = plot_dir
    datamodule.prepare_data()
    datamodule.setup("fit")
    accelerator, precision = cfg.trainer.get("accelerator", "auto"), precision or cfg.trainer.get("precision")
    check_precision(precision)
    if gpu_missing(accelerator):
        print(f"rnnlab-eval: the run trained with trainer.accelerator={accelerator}; torch sees no GPU here, so it "
              "evaluates on the CPU, in fp32", file=sys.stderr)
        accelerator, precision = "cpu", None
    if accelerator == "cpu" or not torch.cuda.is_available():
        run_on_cpu(model, "rnnlab-eval")
    try:
        trainer = L.Trainer(accelerator=accelerator, devices=1, precision=precision, logger=False,
                            enable_checkpointing=False, enable_model_summary=False)
    except (MisconfigurationException, ValueError, ImportError) as err:  # ImportError: an accelerator's package
        raise ConfigError(f"Lightning refuses trainer.accelerator={accelerator} or trainer.precision={precision}: "
                          f"{err}") from err
    run = trainer.test if split == "test" else trainer.validate
    results = run(model, datamodule=datamodule, verbose=False)[0]
    return {k: float(v) for k, v in results.items()}


def main(argv: list[str] | None = None) -> int:
    """Console entry point of rnnlab-eval."""
    parser = argparse.ArgumentParser(prog="rnnlab-eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a .ckpt written by rnnlab-train")
    parser.add_argument("--split", choices=("val", "test"), default="test")
    parser.add_argument("--plot-dir", default=None, help="write the test plots here (default: no plots)")
    parser.add_argument("overrides", nargs="*", default=[], help="key=value changes to the run's config")
    args = parser.parse_intermixed_args(argv)
    if args.plot_dir and args.split != "test":
        parser.error(f"--plot-dir writes the test split's plots; with --split {args.split} there are none: drop "
                     "--plot-dir or use --split test")
    try:
        metrics = evaluate(args.checkpoint, args.split, args.overrides, args.plot_dir)
    except (ConfigError, DataError, InstantiationException) as err:
        cause = user_error(err)
        if cause is None:
            raise
        print(f"rnnlab-eval: error: {cause}", file=sys.stderr)
        return 2
    for key, value in sorted(metrics.items()):
        print(f"{key} = {value:.4f}")
    if args.plot_dir and args.split == "test":
        print(f"plots: {args.plot_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
