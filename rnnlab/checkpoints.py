"""Load what rnnlab-train saved: the task (weights, tokenizer) and the run's config."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from .errors import ConfigError


def read_checkpoint(ckpt_path: str, name: str = "checkpoint") -> dict:
    """The contents of a checkpoint that rnnlab-train wrote, or a ConfigError saying what ``ckpt_path`` (the
    argument ``name``) is instead: missing, a folder, unreadable (truncated, foreign), or not rnnlab-train's."""
    path = Path(ckpt_path)
    if path.is_dir():
        raise ConfigError(f"{name} {ckpt_path!r} is a folder; pass a .ckpt file in it (for example its last.ckpt)")
    if not path.is_file():
        raise ConfigError(f"{name} {ckpt_path!r} not found; pass the .ckpt file that rnnlab-train wrote (a run's "
                          "checkpoints/last.ckpt, say)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # a truncated or foreign file
        raise ConfigError(f"{ckpt_path} is not a readable checkpoint ({type(err).__name__}: {err}); copy it again, or "
                          "use another checkpoint of the run (its last.ckpt or an epoch_*.ckpt)") from err
    if not isinstance(checkpoint, dict) or "rnnlab_config" not in checkpoint:
        raise ConfigError(f"{ckpt_path} was not written by rnnlab-train (it has no rnnlab_config)")
    return checkpoint


def load_run(ckpt_path: str, overrides: list[str] | None = None) -> tuple[object, DictConfig]:
    """The LightningModule in a checkpoint written by rnnlab-train, and its run config with ``overrides``
    (``key=value`` strings, e.g. ``data.path=/data/ptb``) applied."""
    path = Path(ckpt_path)
    checkpoint = read_checkpoint(ckpt_path)
    cfg = OmegaConf.create(checkpoint["rnnlab_config"])
    if overrides:
        bad = [o for o in overrides if "=" not in o]
        if bad:
            raise ConfigError(f"overrides must look like key=value; got {bad}")
        missing = object()
        unknown = [o for o in overrides if OmegaConf.select(cfg, o.split("=")[0], default=missing) is missing]
        if unknown:
            raise ConfigError(f"the run's config has no key for {unknown}; check the spelling (for example "
                              "data.path=..., data.batch_size=...)")
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(overrides))
    try:
        task_class = hydra.utils.get_class(cfg.model._target_)
        model = task_class.load_from_checkpoint(path, map_location="cpu", weights_only=False)
    except (ImportError, AttributeError, KeyError, TypeError, RuntimeError) as err:  # an edited or foreign file
        raise ConfigError(f"{ckpt_path} holds a run config, but its model ({cfg.model.get('_target_')}) does not "
                          f"load from it ({type(err).__name__}: {err}); use a checkpoint that rnnlab-train wrote, "
                          "unchanged, with this version of rnnlab") from err
    return model, cfg


def run_on_cpu(model: nn.Module, tool: str) -> None:
    """Switch a model's recurrent layers that trained on backend="triton", which runs on CUDA tensors (on the CPU
    only under TRITON_INTERPRET=1), to "auto" for a run on the CPU: the same weights on the CPU's paths. ``tool``
    (rnnlab-eval, rnnlab-generate) names the note that says so on stderr."""
    from .layers import GRU, LSTM, RNN

    fused = [m for m in model.modules() if isinstance(m, (RNN, LSTM, GRU)) and m.backend == "triton"]
    if not fused or os.environ.get("TRITON_INTERPRET") == "1":
        return
    for layer in fused:
        layer.backend = "auto"
    print(f"{tool}: the model trained with model.backend=triton, whose kernels run on CUDA tensors; here it runs on "
          "the CPU with backend=auto (the same weights)", file=sys.stderr)
