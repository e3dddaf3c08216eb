"""Build an rnnlab recurrent layer from the config keys every experiment shares."""

from __future__ import annotations

from torch import nn

from ..errors import ConfigError
from ..layers import GRU, LSTM, RNN

CELLS = ("lstm", "gru", "rnn_tanh", "rnn_relu")


def make_rnn(cell: str, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0,
             bidirectional: bool = False, backend: str = "auto", batch_first: bool = False) -> nn.Module:
    """An rnnlab LSTM, GRU or RNN; ``cell`` is one of "lstm", "gru", "rnn_tanh", "rnn_relu"."""
    if cell not in CELLS:
        raise ConfigError(f"model.cell must be one of {', '.join(CELLS)}; got {cell!r}")
    kwargs = {"num_layers": num_layers, "dropout": dropout if num_layers > 1 else 0.0,
              "bidirectional": bidirectional, "backend": backend, "batch_first": batch_first}
    if cell == "lstm":
        return LSTM(input_size, hidden_size, **kwargs)
    if cell == "gru":
        return GRU(input_size, hidden_size, **kwargs)
    return RNN(input_size, hidden_size, nonlinearity=cell.split("_")[1], **kwargs)
