"""Networks of rnnlab's experiments, built on rnnlab's recurrent layers."""

from .classifier import RNNClassifier
from .factory import CELLS, make_rnn
from .forecaster import RNNForecaster
from .language_model import RNNLanguageModel

__all__ = ["CELLS", "RNNClassifier", "RNNForecaster", "RNNLanguageModel", "make_rnn"]
