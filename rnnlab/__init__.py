"""rnnlab: recurrent networks for PyTorch.

Drop-in replacements for torch.nn's recurrent layers and cells, backed by a hand-written pure-PyTorch
recurrence (the reference) and, on GPUs, fused kernels.
"""

from . import analysis
from .cells import GRUCell, LSTMCell, RNNCell
from .convert import from_torch, to_torch
from .errors import RNNShapeError, RNNTypeError
from .layers import GRU, LSTM, RNN

__version__ = "0.1.0"

__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "GRUCell",
    "LSTMCell",
    "RNNCell",
    "RNNShapeError",
    "RNNTypeError",
    "analysis",
    "from_torch",
    "to_torch",
]
