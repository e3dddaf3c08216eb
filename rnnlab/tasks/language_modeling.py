"""Language modeling with truncated BPTT: the hidden state is carried from batch to batch (detached), as
in Zaremba et al. (2014), and reset at the start of every epoch and evaluation.

Logs ``train/loss`` (nats per token), ``val/loss``, ``val/ppl`` (perplexity), ``val/bpc`` (bits per
character, char level) and ``val/loss_best``; ``test/*`` likewise.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric, MinMetric

from ..data.text import Tokenizer
from ..models import RNNLanguageModel
from .base import Task


def detach_state(state):
    """A recurrent state (tensor or tuple of tensors) cut from the graph of the previous batch."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


class LanguageModelTask(Task):
    """Trains an :class:`~rnnlab.models.RNNLanguageModel` built from the architecture keys (the
    ``model.*`` keys of the config) to predict the next token."""

    def __init__(self, vocab_size: int, optimizer: Callable, scheduler: Callable | None = None,
                 cell: str = "gru", embedding_dim: int = 64, hidden_size: int = 256, num_layers: int = 1,
                 dropout: float = 0.0, tie_weights: bool = False, backend: str = "auto", init_range: float = 0.0,
                 sample_length: int = 200, sample_temperature: float = 0.8, sample_prompt: str = "",
                 cell_options: Mapping | None = None):
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.net = RNNLanguageModel(vocab_size, embedding_dim, hidden_size, num_layers, cell, dropout,
                                    tie_weights, backend, init_range, cell_options)
        self.tokenizer: Tokenizer | None = None  # set from the data module; stored in checkpoints
        self.metrics = nn.ModuleDict({
            "val_loss": MeanMetric(), "test_loss": MeanMetric(), "val_loss_best": MinMetric(),
        })
        self.metrics["val_loss_best"].persistent(True)  # saved in checkpoints: a resumed run keeps the best
        self._state = {}  # carried recurrent state per stage

    def forward(self, tokens: torch.Tensor, state=None):
        return self.net(tokens, state)

    def _loss(self, batch, stage: str) -> tuple[torch.Tensor, int]:
        x, y = batch  # (T, B) each
        logits, state = self.net(x, detach_state(self._state.get(stage)))
        self._state[stage] = state
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        return loss, y.numel()

    def batch_loss(self, batch) -> torch.Tensor:
        """The loss of one batch from a zero initial state (training carries the previous batch's)."""
        x, y = batch  # (T, B) each
        logits, _ = self.net(x)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))

    def on_train_epoch_start(self) -> None:
        self._state.pop("train", None)

    def on_validation_epoch_start(self) -> None:
        self._state.pop("val", None)

    def on_test_epoch_start(self) -> None:
        self._state.pop("test", None)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss, n = self._loss(batch, "train")
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=n,
                 sync_dist=True)  # the epoch's mean over every process, not process 0's alone
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        loss, n = self._loss(batch, "val")
        self.metrics["val_loss"].update(loss, n)

    def test_step(self, batch, batch_idx: int) -> None:
        loss, n = self._loss(batch, "test")
        self.metrics["test_loss"].update(loss, n)

    def _log_epoch(self, stage: str) -> float:
        loss = self.metrics[f"{stage}_loss"].compute()
        self.metrics[f"{stage}_loss"].reset()
        self.log(f"{stage}/loss", loss, prog_bar=True, sync_dist=True)
        self.log(f"{stage}/ppl", torch.exp(loss), sync_dist=True)
        if self.tokenizer is not None and self.tokenizer.level == "char":
            self.log(f"{stage}/bpc", loss / math.log(2), sync_dist=True)
        return loss

    def on_validation_epoch_end(self) -> None:
        self.log_best("val/loss_best", self.metrics["val_loss_best"], self._log_epoch("val"))

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.tokenizer is not None:
            checkpoint["tokenizer"] = self.tokenizer.state_dict()

    @classmethod
    def learned_in(cls, checkpoint: dict) -> dict[str, object]:
        return {"tokenizer": Tokenizer.from_state_dict(checkpoint["tokenizer"])} if "tokenizer" in checkpoint else {}

    def generate(self, prompt: str = "", length: int = 200, temperature: float = 1.0, top_k: int | None = None,
                 generator: torch.Generator | None = None) -> str:
        """Sample ``length`` tokens after ``prompt`` (an empty one starts where a line begins: after a newline at
        character level, after ``<eos>`` at word level); ``top_k`` keeps the k most likely tokens at each step."""
        if self.tokenizer is None:
            raise ValueError("this model has no tokenizer: train it through rnnlab-train or load a checkpoint")
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be a finite number > 0; got {temperature}: 1 samples the model's "
                             "distribution as it is, lower values more conservatively (0.8 by default in "
                             "rnnlab-generate)")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be >= 1 or None; got {top_k}")
        if unknown := self.tokenizer.unknown(prompt):
            shown = ", ".join(map(repr, unknown[:10])) + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else "")
            warnings.warn(f"the prompt has {len(unknown)} symbol(s) the model never saw in training ({shown}); each "
                          "is read as the unknown symbol", stacklevel=2)
        was_training = self.training
        self.eval()
        ids = self.tokenizer.encode(prompt, final_eos=False)
        if not len(ids):  # no symbol (at word level, spaces are none): start where a line begins, after "\n" or
            ids = self.tokenizer.encode("\n")  # <eos>, not the unknown symbol, whose embedding training never updates
        ids = ids.to(self.device)
        out = []
        with torch.no_grad():  # not a decorator: the warning above names the caller's line
            logits, state = self.net(ids.view(-1, 1))  # (T, 1, V)
            for _ in range(length):
                scores = logits[-1, 0] / temperature  # (V,)
                if top_k is not None:
                    kth = torch.topk(scores, min(top_k, scores.numel())).values[-1]
                    scores = scores.masked_fill(scores < kth, float("-inf"))
                nxt = torch.multinomial(torch.softmax(scores.float(), -1), 1, generator=generator)
                out.append(int(nxt))
                logits, state = self.net(nxt.view(1, 1), state)
        self.train(was_training)
        return self.tokenizer.continue_text(prompt, out)
