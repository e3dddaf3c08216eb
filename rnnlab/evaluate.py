"""rnnlab-eval: evaluate a checkpoint written by rnnlab-train on a split of its data.

    rnnlab-eval logs/train/runs/<time>/checkpoints/last.ckpt              # the test split
    rnnlab-eval CKPT --split val data.path=/elsewhere/ptb                 # overrides of the run's config
"""

from __future__ import annotations

import argparse
import sys

import hydra
import lightning as L

from .checkpoints import load_run
from .errors import ConfigError, DataError


def evaluate(ckpt_path: str, split: str = "test", overrides: list[str] | None = None) -> dict[str, float]:
    """Metrics of the checkpoint's model on ``split`` ("val" or "test") of its data."""
    model, cfg = load_run(ckpt_path, overrides)
    datamodule = hydra.utils.instantiate(cfg.data)
    if getattr(model, "tokenizer", None) is not None:
        datamodule.tokenizer = model.tokenizer  # the ids the model was trained on
    datamodule.prepare_data()
    datamodule.setup("fit")
    trainer = L.Trainer(accelerator=cfg.trainer.get("accelerator", "auto"), devices=1, logger=False,
                        enable_checkpointing=False, enable_model_summary=False)
    run = trainer.test if split == "test" else trainer.validate
    results = run(model, datamodule=datamodule, verbose=False)[0]
    return {k: float(v) for k, v in results.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rnnlab-eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a .ckpt written by rnnlab-train")
    parser.add_argument("--split", choices=("val", "test"), default="test")
    parser.add_argument("overrides", nargs="*", help="key=value changes to the run's config")
    args = parser.parse_args(argv)
    try:
        metrics = evaluate(args.checkpoint, args.split, args.overrides)
    except (ConfigError, DataError) as err:
        print(f"rnnlab-eval: error: {err}", file=sys.stderr)
        return 2
    for key, value in sorted(metrics.items()):
        print(f"{key} = {value:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
