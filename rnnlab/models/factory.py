"""Build an rnnlab recurrent layer from the config keys every experiment shares."""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from ..errors import ConfigError
from ..layers import GRU, LSTM, RNN

CELLS = ("lstm", "gru", "rnn_tanh", "rnn_relu")
# model.cell_options: the layers' cell-variant options (rnnlab.recurrence.variants) and the LSTM's
# forget-gate bias; LSTM_ONLY for model.cell=lstm only
CELL_OPTIONS = ("layer_norm", "zoneout", "zoneout_cell", "recurrent_dropout", "weight_dropout", "forget_bias")
LSTM_ONLY = {"zoneout_cell": "the LSTM's cell-state zoneout", "forget_bias": "the LSTM's forget-gate bias"}


def make_rnn(cell: str, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0,
             bidirectional: bool = False, backend: str = "auto", batch_first: bool = False,
             cell_options: Mapping | None = None) -> nn.Module:
    """An rnnlab LSTM, GRU or RNN; ``cell`` is one of "lstm", "gru", "rnn_tanh", "rnn_relu";
    ``cell_options``: keyword arguments among CELL_OPTIONS (layer norm, zoneout, recurrent and weight
    dropout, the LSTM's forget-gate bias)."""
    if cell not in CELLS:
        raise ConfigError(f"model.cell must be one of {', '.join(CELLS)}; got {cell!r}")
    options = dict(cell_options or {})
    unknown = sorted(set(options) - set(CELL_OPTIONS))
    if unknown:
        raise ConfigError(f"model.cell_options takes the keys {', '.join(CELL_OPTIONS)}; got {', '.join(unknown)}")
    for key, what in LSTM_ONLY.items():
        if cell != "lstm" and options.pop(key, 0):
            raise ConfigError(f"model.cell_options.{key} is {what}; model.cell={cell} has none: set it to 0")
    kwargs = {"num_layers": num_layers, "dropout": dropout if num_layers > 1 else 0.0,
              "bidirectional": bidirectional, "backend": backend, "batch_first": batch_first, **options}
    if cell == "lstm":
        return LSTM(input_size, hidden_size, **kwargs)
    if cell == "gru":
        return GRU(input_size, hidden_size, **kwargs)
    return RNN(input_size, hidden_size, nonlinearity=cell.split("_")[1], **kwargs)
