"""Recurrent forecasters: a many-to-one encoder with a linear head over the whole horizon ("direct"), or
an encoder-decoder that unrolls the horizon step by step on its own predictions ("seq2seq")."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ..errors import ConfigError
from .factory import make_rnn

DECODERS = ("direct", "seq2seq")


class RNNForecaster(nn.Module):
    """x: (B, lookback, input_size) -> (B, horizon, output_size). ``target_index``: where the outputs are
    among the inputs; "seq2seq" starts its decoder from their last observed values. ``residual`` predicts
    the change from the last observed values, so the model starts as the persistence forecast and need not
    reproduce levels outside the training range (a trending series). ``dropout`` applies between layers and to the
    recurrent outputs before the head (so it acts in a one-layer model too), as the language model's does."""

    def __init__(self, input_size: int, output_size: int, horizon: int, hidden_size: int = 64,
                 num_layers: int = 1, cell: str = "lstm", dropout: float = 0.0, decoder: str = "direct",
                 backend: str = "auto", target_index: list[int] | None = None, residual: bool = False,
                 cell_options: Mapping | None = None):
        super().__init__()
        if decoder not in DECODERS:
            raise ConfigError(f"model.decoder must be one of {', '.join(DECODERS)}; got {decoder!r}")
        self.decoder_kind, self.horizon, self.output_size, self.residual = decoder, horizon, output_size, residual
        self.target_index = list(target_index) if target_index is not None else list(range(output_size))
        self.dropout = nn.Dropout(dropout)
        self.encoder = make_rnn(cell, input_size, hidden_size, num_layers, dropout, backend=backend,
                                batch_first=True, cell_options=cell_options)
        if decoder == "direct":
            self.head = nn.Linear(hidden_size, horizon * output_size)
        else:
            self.decoder = make_rnn(cell, output_size, hidden_size, num_layers, dropout, backend=backend,
                                    batch_first=True, cell_options=cell_options)
            self.head = nn.Linear(hidden_size, output_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, lookback, input_size) -> the forecast (B, horizon, output_size)."""
        y, state = self.encoder(x)  # y: (B, lookback, H)
        last = x[:, -1:, self.target_index]  # (B, 1, output_size): the last observed values
        if self.decoder_kind == "direct":
            out = self.head(self.dropout(y[:, -1])).view(-1, self.horizon, self.output_size)
            return last + out if self.residual else out
        step, out = last, []
        for _ in range(self.horizon):
            h, state = self.decoder(step, state)  # (B, 1, H)
            change = self.head(self.dropout(h))  # (B, 1, output_size)
            step = step + change if self.residual else change
            out.append(step)
        return torch.cat(out, dim=1)
