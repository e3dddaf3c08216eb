"""What every rnnlab task shares: the optimizer and scheduler from the config, and the run config
carried in checkpoints (for rnnlab-eval and rnnlab-generate)."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn
from torchmetrics import Metric


class Task(L.LightningModule):
    """Base of rnnlab's LightningModules; subclasses set ``hparams.optimizer``/``scheduler`` (partials)."""

    run_config: dict | None = None  # the composed config of the run, set by rnnlab-train
    # list attributes learned from the training data (vocabulary, labels, column statistics), which rnnlab-train
    # sets from the data module's ``learned``: saved in checkpoints under their names, for rnnlab-eval
    saved_lists: tuple[str, ...] = ()

    def configure_optimizers(self):
        optimizer = self.hparams.optimizer(params=self.parameters())
        if self.hparams.get("scheduler") is None:
            return optimizer
        scheduler = self.hparams.scheduler(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val/loss"}}

    def batch_loss(self, batch) -> torch.Tensor:
        """The training loss of one batch, with no side effects (no metric updates, no carried state): what
        the gradient analysis (rnnlab.callbacks.GradientNorms) differentiates. Each task defines it."""
        raise NotImplementedError(f"{type(self).__name__} does not define batch_loss")

    def log_best(self, name: str, best: Metric, value: torch.Tensor) -> None:
        """Update the best-so-far metric ``best`` (MinMetric, MaxMetric) with this validation's ``value`` and log
        it as ``name``, while fitting only: not in the sanity check, nor in a validation that rnnlab-eval runs
        (trainer.validate), where it would show the training run's best beside this evaluation's numbers."""
        if self.trainer.state.fn != TrainerFn.FITTING or self.trainer.sanity_checking:
            return
        best.update(value)
        self.log(name, best.compute(), sync_dist=True)

    @staticmethod
    def example_inputs(batch) -> tuple:
        """The forward arguments in a batch: every element but the last (the targets)."""
        return tuple(batch[:-1])

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.run_config is not None:
            checkpoint["rnnlab_config"] = self.run_config
        for name in self.saved_lists:
            checkpoint[name] = getattr(self, name)

    @classmethod
    def learned_in(cls, checkpoint: dict) -> dict[str, object]:
        """The attributes learned from the training data as ``checkpoint`` saved them (none it lacks): what a task
        loaded from it holds, and what rnnlab-train gives a resumed run's data module, so that it reads the data
        as the checkpoint's model was trained to."""
        return {name: checkpoint[name] for name in cls.saved_lists if name in checkpoint}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.run_config = checkpoint.get("rnnlab_config")
        for name, value in ({name: [] for name in self.saved_lists} | self.learned_in(checkpoint)).items():
            setattr(self, name, value)
        # checkpoints from before the best-so-far metrics were saved start them afresh
        state = checkpoint.get("state_dict", {})
        for key, value in self.state_dict().items():
            if key.endswith(("_best.min_value", "_best.max_value")):
                state.setdefault(key, value)
