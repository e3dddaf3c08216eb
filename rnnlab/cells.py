"""RNNCell, LSTMCell and GRUCell: one timestep, drop-in replacements for their torch.nn counterparts.

Each subclasses the torch.nn cell (same constructor, parameters, initialisation and ``state_dict``) and
runs, with ``backend="torch"``, rnnlab's recurrence over a sequence of length one: the functions and
hand-written backward the layers run. ``backend="native"`` runs torch.nn's cell; ``"auto"`` picks the
native cell, which has less per-call overhead for a single step. Inside ``torch.autocast`` the
``"torch"`` cells run in the autocast dtype, as the layers do. Under the ``torch.func`` transforms and
forward-mode AD the cells run a step as the layers do there (recurrence.common.stepwise_under_transform).

``layer_norm`` and ``zoneout`` (and the LSTM's ``zoneout_cell``) work as on the layers
(:mod:`rnnlab.recurrence.variants`); with either on, a cell runs one step of the layers' step-by-step
recurrence (backend "auto" or "torch"). Zoneout mixes the new state with the ``hx`` given. Recurrent
dropout needs one mask for a whole sequence, which a cell called step by step cannot know: it is an
option of the layers only.
"""

from __future__ import annotations

import torch
from torch import nn

from . import recurrence
from .cell_options import CellOptions
from .checks import check_backend, check_bool, check_choice, check_int, check_variant_backend
from .errors import RNNShapeError
from .inputs import autocast_dtype, check_pair, check_tensor, refuse_symbolic_trace
from .recurrence.common import stepwise_scan, stepwise_under_transform

CellState = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


def _check_cell_args(owner: str, input_size, hidden_size, bias, backend) -> str:
    check_int(owner, "input_size", input_size, 1)
    check_int(owner, "hidden_size", hidden_size, 1)
    check_bool(owner, "bias", bias)
    return check_backend(owner, backend, fused=False)  # cells have no fused kernel: "triton" is refused there


class _Cell(CellOptions):
    """The forward pass shared by the cells."""

    _num_states = 1  # 2 for LSTM: (h, c)
    _mode: str  # the step of rnnlab.recurrence.variants: "LSTM", "GRU", "RNN_TANH", "RNN_RELU"

    def _cell_variant(self, **options) -> None:
        """Turn on the cell-variant options, with the layer-norm parameters ln_weight_ih, ..."""
        self._set_variant(options, [""], self.weight_ih.shape[0], self.hidden_size, self._num_states == 2)

    def forward(self, input: torch.Tensor, hx: CellState | None = None):
        """One step; arguments and outputs exactly as torch.nn's cell."""
        owner, like = self._get_name(), self.weight_ih
        refuse_symbolic_trace(owner, input)
        amp = autocast_dtype(like)
        check_tensor(owner, "input", input, like, amp is not None)
        if input.dim() not in (1, 2) or input.shape[-1] != self.input_size:
            raise RNNShapeError(
                f"{owner}: input must have shape (batch, {self.input_size}) or ({self.input_size},) for "
                f"an unbatched input; got {tuple(input.shape)}"
            )
        states = self._check_hx(hx, input, like, amp is not None)
        check_backend(owner, self.backend, fused=False)  # set after construction, "triton" too
        check_variant_backend(owner, self.variant, self.backend)
        stepwise = self.variant.stepwise or stepwise_under_transform(self.backend)
        if not stepwise and self.backend != "torch":
            return super().forward(input, hx)
        dtype = amp or like.dtype
        unbatched = input.dim() == 1
        x = input.reshape(1, -1, self.input_size).to(dtype)  # (T=1, B, I)
        if states is None:
            states = [x.new_zeros(x.shape[1], self.hidden_size) for _ in range(self._num_states)]
        else:
            states = [h.reshape(-1, self.hidden_size).to(dtype) for h in states]
        weights = [w if w is None else w.to(dtype) for w in self._weights()]
        if stepwise:  # through autograd: the options' specification, and for transforms
            norms = self._norms("", self._num_states == 2, dtype)
            _, out = stepwise_scan(self._mode, x, states, [*weights, None], norms, self.variant, None,
                                                False, self.training)
        else:
            out = self._step(x, states, *weights)  # the recurrences run with autocast off
        out = [h.squeeze(0) for h in out] if unbatched else out
        return tuple(out) if len(out) == 2 else out[0]

    def _check_hx(self, hx: object, input: torch.Tensor, like: torch.Tensor, autocast: bool
                  ) -> list[torch.Tensor] | None:
        if hx is None:
            return None
        owner = self._get_name()
        if self._num_states == 2:
            states, names = check_pair(owner, hx), ("hx[h_0]", "hx[c_0]")
        else:
            states, names = [hx], ("hx",)
        want = (*input.shape[:-1], self.hidden_size)
        for name, h in zip(names, states, strict=True):
            check_tensor(owner, name, h, like, autocast)
            if h.shape != want:
                raise RNNShapeError(f"{owner}: {name} must have shape {tuple(want)}; got {tuple(h.shape)}")
        return states

    def _weights(self) -> list[torch.Tensor | None]:
        """[w_ih, w_hh, b_ih, b_hh]; the biases None without bias."""
        return [self.weight_ih, self.weight_hh, *((self.bias_ih, self.bias_hh) if self.bias else (None, None))]


class RNNCell(_Cell, nn.RNNCell):
    """Elman RNN cell with tanh or relu, a drop-in for :class:`torch.nn.RNNCell`."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh",
                 device=None, dtype=None, *, backend: str = "auto", layer_norm: bool = False, zoneout: float = 0.0):
        owner = type(self).__name__
        backend = _check_cell_args(owner, input_size, hidden_size, bias, backend)
        check_choice(owner, "nonlinearity", nonlinearity, recurrence.NONLINEARITIES)
        super().__init__(input_size, hidden_size, bias, nonlinearity, device=device, dtype=dtype)
        self.backend = backend
        self._cell_variant(layer_norm=layer_norm, zoneout=zoneout)

    @property
    def _mode(self) -> str:
        return f"RNN_{self.nonlinearity.upper()}"  # as torch.nn's forward, from nonlinearity

    def _step(self, x, states, w_ih, w_hh, b_ih, b_hh):
        _, h = recurrence.rnn_scan(x, states[0], w_ih, w_hh, b_ih, b_hh, nonlinearity=self.nonlinearity)
        return [h]


class LSTMCell(_Cell, nn.LSTMCell):
    """LSTM cell, a drop-in for :class:`torch.nn.LSTMCell`."""

    _num_states = 2
    _mode = "LSTM"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None, *,
                 backend: str = "auto", layer_norm: bool = False, zoneout: float = 0.0, zoneout_cell: float = 0.0,
                 forget_bias: float = 0.0):
        backend = _check_cell_args(type(self).__name__, input_size, hidden_size, bias, backend)
        super().__init__(input_size, hidden_size, bias, device=device, dtype=dtype)
        self.backend = backend
        self._cell_variant(layer_norm=layer_norm, zoneout=zoneout, zoneout_cell=zoneout_cell)
        self._set_forget_bias(forget_bias, bias)

    def _step(self, x, states, w_ih, w_hh, b_ih, b_hh):
        _, h, c = recurrence.lstm_scan(x, *states, w_ih, w_hh, b_ih, b_hh)
        return [h, c]


class GRUCell(_Cell, nn.GRUCell):
    """GRU cell, a drop-in for :class:`torch.nn.GRUCell`."""

    _mode = "GRU"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None, *,
                 backend: str = "auto", layer_norm: bool = False, zoneout: float = 0.0):
        backend = _check_cell_args(type(self).__name__, input_size, hidden_size, bias, backend)
        super().__init__(input_size, hidden_size, bias, device=device, dtype=dtype)
        self.backend = backend
        self._cell_variant(layer_norm=layer_norm, zoneout=zoneout)

    def _step(self, x, states, w_ih, w_hh, b_ih, b_hh):
        _, h = recurrence.gru_scan(x, states[0], w_ih, w_hh, b_ih, b_hh)
        return [h]
