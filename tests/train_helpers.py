"""Compose rnnlab-train's real config for tests: tiny sizes, outputs under a temporary folder."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_module
from omegaconf import DictConfig, open_dict

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"  # the real data sets, where the machine has them

TINY = [
    "data.max_chars=20000", "data.batch_size=4", "data.eval_batch_size=4", "data.bptt=16",
    "model.embedding_dim=8", "model.hidden_size=16", "model.sample_length=20",
    "trainer.log_every_n_steps=1",
]


def compose_config(tmp_path, *overrides: str, tiny: bool = True) -> DictConfig:
    """The train config with ``overrides`` (plus tiny sizes), writing under ``tmp_path``."""
    with initialize_config_module(config_module="rnnlab.conf", version_base="1.3"):
        cfg = compose("train", overrides=[*(TINY if tiny else []), *overrides], return_hydra_config=False)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path)
        cfg.paths.log_dir = str(tmp_path / "logs")
    return cfg


def record_figures(monkeypatch) -> dict:
    """Every matplotlib figure saved from now on (still written to its file), by file name."""
    from matplotlib.figure import Figure

    saved = {}
    savefig = Figure.savefig

    def record(fig, path, **kwargs):
        saved[Path(path).name] = fig
        return savefig(fig, path, **kwargs)

    monkeypatch.setattr(Figure, "savefig", record)
    return saved
