"""Sentence classification (many-to-one): cross-entropy, accuracy, F1 (of the second label, index 1, with two
classes; macro-averaged over the classes with more: torchmetrics' micro average would equal accuracy) and a
confusion-matrix plot.

Logs ``train/loss``, ``train/acc``, ``val/loss``, ``val/acc``, ``val/f1``, ``val/acc_best`` and the same
for ``test``; after testing, writes ``<output_dir>/plots/confusion_matrix.png``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import Accuracy, ConfusionMatrix, F1Score, MaxMetric, MeanMetric

from ..models.classifier import RNNClassifier
from .base import Task


class SentimentTask(Task):
    """Trains an :class:`~rnnlab.models.classifier.RNNClassifier` built from the ``model.*`` keys."""

    saved_lists = ("vocab", "labels")

    def __init__(self, vocab_size: int, num_classes: int, optimizer: Callable, scheduler: Callable | None = None,
                 cell: str = "lstm", embedding_dim: int = 128, hidden_size: int = 128, num_layers: int = 1,
                 bidirectional: bool = True, dropout: float = 0.0, pooling: str = "last", backend: str = "auto",
                 plot_dir: str | None = None, cell_options: Mapping | None = None):
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.net = RNNClassifier(vocab_size, num_classes, embedding_dim, hidden_size, num_layers, cell,
                                 bidirectional, dropout, pooling, backend, cell_options)
        task = "binary" if num_classes == 2 else "multiclass"
        metric = {"task": task, "num_classes": num_classes}
        f1 = {**metric, "average": "macro"} if task == "multiclass" else metric
        self.metrics = nn.ModuleDict({
            f"{stage}_{name}": make()
            for stage in ("train", "val", "test")
            for name, make in (("loss", MeanMetric), ("acc", lambda: Accuracy(**metric)),
                               ("f1", lambda: F1Score(**f1)))
        })
        self.val_acc_best = MaxMetric()
        self.val_acc_best.persistent(True)  # saved in checkpoints: a resumed run keeps the best
        self.confusion = ConfusionMatrix(**metric)
        self.vocab: list[str] = []  # set from the data module; saved_lists
        self.labels: list[str] = []

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.net(tokens, lengths)

    def _step(self, batch, stage: str) -> torch.Tensor:
        tokens, lengths, labels = batch
        logits = self.net(tokens, lengths)  # (B, C)
        loss = F.cross_entropy(logits, labels)
        preds = logits.argmax(-1)
        self.metrics[f"{stage}_loss"].update(loss, labels.numel())
        for name in ("acc", "f1"):
            self.metrics[f"{stage}_{name}"].update(preds, labels)
        if stage == "test":
            self.confusion.update(preds, labels)
        return loss

    def batch_loss(self, batch) -> torch.Tensor:
        tokens, lengths, labels = batch
        return F.cross_entropy(self.net(tokens, lengths), labels)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss = self._step(batch, "train")
        self.log("train/loss_step", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "test")

    def _log_epoch(self, stage: str) -> torch.Tensor:
        self.log(f"{stage}/loss", self.metrics[f"{stage}_loss"].compute(), prog_bar=stage != "train", sync_dist=True)
        self.metrics[f"{stage}_loss"].reset()
        acc = self.metrics[f"{stage}_acc"].compute()
        for name in ("acc", "f1"):
            self.log(f"{stage}/{name}", self.metrics[f"{stage}_{name}"].compute(), prog_bar=name == "acc",
                     sync_dist=True)
            self.metrics[f"{stage}_{name}"].reset()
        return acc

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self.log_best("val/acc_best", self.val_acc_best, self._log_epoch("val"))

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")
        matrix = self.confusion.compute().cpu()
        self.confusion.reset()
        if self.hparams.plot_dir and self.trainer.global_rank == 0:
            plot_confusion(matrix, self.labels or None, Path(self.hparams.plot_dir) / "confusion_matrix.png")



def plot_confusion(matrix: torch.Tensor, labels: list[str] | None, path: Path) -> Path:
    """Counts of (true, predicted) label pairs as an annotated heat map, its ticks named by ``labels`` (one per
    class, in class order; class indices where None: a model built without its data's labels)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = matrix.shape[0]
    fig, ax = plt.subplots(figsize=(1.2 * n + 2, 1.2 * n + 1.5))
    matrix = matrix.numpy()
    ax.imshow(matrix, cmap="Blues")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, int(matrix[i, j]), ha="center", va="center")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_xticks(range(n), labels)
    ax.set_yticks(range(n), labels)
    ax.set_title("test confusion matrix")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
