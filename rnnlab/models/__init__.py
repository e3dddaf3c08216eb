"""Networks of rnnlab's experiments, built on rnnlab's recurrent layers."""

from .factory import CELLS, make_rnn
from .language_model import RNNLanguageModel

__all__ = ["CELLS", "RNNLanguageModel", "make_rnn"]
