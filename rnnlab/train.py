"""rnnlab-train: compose a config with Hydra (conf/train.yaml), train, test, and say where outputs went.

    rnnlab-train                                   # the offline default: char-level GRU LM on Python's stdlib
    rnnlab-train experiment=lm_shakespeare_char paths.data_dir=/data model.cell=gru
    rnnlab-train -m model.cell=lstm,gru seed=1,2   # a multirun sweep
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
import lightning as L
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import MissingMandatoryValue

from .errors import ConfigError, DataError


def _instantiate_all(group: DictConfig | None) -> list:
    return [hydra.utils.instantiate(c) for c in (group or {}).values() if c is not None and "_target_" in c]


def build(cfg: DictConfig):
    """Data module, task and trainer from a composed config; the data's sizes go into ``cfg.model``."""
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    with open_dict(cfg):
        for key, value in datamodule.dims.items():
            cfg.model[key] = value
    model = hydra.utils.instantiate(cfg.model)
    if getattr(datamodule, "tokenizer", None) is not None:
        model.tokenizer = datamodule.tokenizer
    # the data and model config travel in every checkpoint, for rnnlab-eval and rnnlab-generate
    model.run_config = OmegaConf.to_container(cfg, resolve=True)
    # a data module that splits its data per process itself (language modeling: consecutive TBPTT chunks of
    # each rank's own streams) must not have Lightning swap its loaders' samplers for a shuffled one
    own_sharding = {"use_distributed_sampler": False} if getattr(datamodule, "shards_per_process", False) else {}
    trainer = hydra.utils.instantiate(
        cfg.trainer, callbacks=_instantiate_all(cfg.get("callbacks")), logger=_instantiate_all(cfg.get("logger"))
        or False, **own_sharding,
    )
    return datamodule, model, trainer


def train(cfg: DictConfig) -> dict[str, float]:
    """Train (and, with ``test: true``, test the best checkpoint); returns the final metrics."""
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    datamodule, model, trainer = build(cfg)
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path is not None and not Path(ckpt_path).is_file():
        raise ConfigError(f"ckpt_path={ckpt_path!r} is not a file; point it at a .ckpt (for example last.ckpt)")
    # rnnlab's checkpoints hold the optimizer factory and random states, not only tensors
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=False)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    if cfg.get("test"):
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        trainer.test(model, datamodule=datamodule, ckpt_path=best or None, weights_only=False)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")})
    if trainer.global_rank == 0:
        report(cfg, trainer, metrics)
    return metrics


def report(cfg: DictConfig, trainer: L.Trainer, metrics: dict[str, float]) -> None:
    """Print the final metrics and where the run's files are."""
    out = Path(cfg.paths.output_dir)
    lines = ["", "rnnlab-train finished."]
    lines += [f"  {k} = {v:.4f}" for k, v in sorted(metrics.items()) if "/" in k and not k.endswith("_step")]
    lines.append(f"  outputs:     {out}")
    ckpt = trainer.checkpoint_callback
    if ckpt is not None and ckpt.best_model_path:
        lines.append(f"  checkpoint:  {ckpt.best_model_path} (last: {ckpt.last_model_path})")
    for label, pattern in (("metrics:", "**/metrics.csv"), ("plots:", "plots/*.png"), ("samples:", "samples.txt")):
        found = sorted(out.glob(pattern))
        if found:
            lines.append(f"  {label:<12} {', '.join(str(p) for p in found)}")
    print("\n".join(lines))


@hydra.main(version_base="1.3", config_path="pkg://rnnlab.conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Console entry point of rnnlab-train."""
    try:
        metrics = train(cfg)
    except (ConfigError, DataError, InstantiationException) as err:
        cause = err.__cause__ if isinstance(err, InstantiationException) else err
        if not isinstance(cause, (ConfigError, DataError)):
            raise
        print(f"rnnlab-train: error: {cause}", file=sys.stderr)
        sys.exit(2)
    except MissingMandatoryValue as err:
        print(f"rnnlab-train: error: {err.msg.splitlines()[0]} (key {err.full_key}); set it on the command line",
              file=sys.stderr)
        sys.exit(2)
    return metrics.get(cfg.get("optimized_metric"))

if __name__ == "__main__":
    main()
