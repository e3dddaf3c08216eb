"""Embedding -> recurrent layers -> linear decoder over the vocabulary (Zaremba et al.'s model)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ..errors import ConfigError
from .factory import make_rnn


class RNNLanguageModel(nn.Module):
    """Next-token model. ``tie_weights`` shares the embedding and decoder matrices (needs
    ``embedding_dim == hidden_size``); ``dropout`` applies to the embedding, between layers and before the
    decoder; ``init_range`` > 0 draws every weight from U(-init_range, init_range) as Zaremba et al. do."""

    def __init__(self, vocab_size: int, embedding_dim: int = 64, hidden_size: int = 256, num_layers: int = 1,
                 cell: str = "gru", dropout: float = 0.0, tie_weights: bool = False, backend: str = "auto",
                 init_range: float = 0.0, cell_options: Mapping | None = None):
        super().__init__()
        if tie_weights and embedding_dim != hidden_size:
            raise ConfigError(
                f"model.tie_weights=true needs model.embedding_dim == model.hidden_size; got {embedding_dim} and "
                f"{hidden_size}: set model.embedding_dim={hidden_size} (or model.tie_weights=false)"
            )
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.rnn = make_rnn(cell, embedding_dim, hidden_size, num_layers, dropout, backend=backend,
                            cell_options=cell_options)
        self.dropout = nn.Dropout(dropout)
        self.decoder = nn.Linear(hidden_size, vocab_size)
        if tie_weights:
            self.decoder.weight = self.embedding.weight
        if init_range > 0:
            for name, p in self.named_parameters():
                if not name.startswith("rnn.ln_"):  # layer-norm gains and biases keep their 1 and 0
                    nn.init.uniform_(p, -init_range, init_range)
            self.rnn.apply_forget_bias()  # and an LSTM's forget_bias, if set, applies after the draw

    def forward(self, tokens: torch.Tensor, state=None):
        """tokens: (T, B) ids -> logits (T, B, vocab_size) and the final recurrent state."""
        x = self.dropout(self.embedding(tokens))  # (T, B, E)
        y, state = self.rnn(x, state)  # (T, B, H)
        return self.decoder(self.dropout(y)), state
