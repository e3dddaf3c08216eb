"""Embedding -> recurrent layers -> pooling over time -> classifier (many-to-one)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from ..errors import ConfigError
from ..inputs import pad_packed
from .factory import make_rnn

POOLING = ("last", "mean", "max")


class RNNClassifier(nn.Module):
    """Classifies padded token sequences of varying length. ``pooling``: "last" (the final state of each
    direction, taken at each sentence's own last word through packing), "mean" or "max" over the words."""

    def __init__(self, vocab_size: int, num_classes: int, embedding_dim: int = 128, hidden_size: int = 128,
                 num_layers: int = 1, cell: str = "lstm", bidirectional: bool = True, dropout: float = 0.0,
                 pooling: str = "last", backend: str = "auto", cell_options: Mapping | None = None):
        super().__init__()
        if pooling not in POOLING:
            raise ConfigError(f"model.pooling must be one of {', '.join(POOLING)}; got {pooling!r}")
        self.pooling = pooling
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=0)
        self.rnn = make_rnn(cell, embedding_dim, hidden_size, num_layers, dropout, bidirectional, backend,
                            batch_first=True, cell_options=cell_options)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size * (2 if bidirectional else 1), num_classes)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """tokens: (B, T) ids, lengths: (B,) -> logits (B, num_classes)."""
        x = self.dropout(self.embedding(tokens))  # (B, T, E)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        y, h = self.rnn(packed)
        if self.pooling == "last":
            h = h[0] if isinstance(h, tuple) else h  # (L * D, B, H)
            d = 2 if self.rnn.bidirectional else 1
            pooled = torch.cat(list(h[-d:]), dim=-1)  # (B, D * H): the top layer's directions
        else:
            fill = 0.0 if self.pooling == "mean" else float("-inf")
            y = pad_packed(y, batch_first=True, padding_value=fill)  # (B, T, D * H)
            if self.pooling == "mean":
                pooled = y.sum(1) / lengths.to(y.device, y.dtype).unsqueeze(1)
            else:
                pooled = y.max(1).values
        return self.classifier(self.dropout(pooled))
