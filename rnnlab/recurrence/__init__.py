"""The pure-PyTorch recurrences: rnnlab's reference path and the specification of every fast path.

Each function runs one direction of one layer over a time-major, padded sequence whose batch rows are
sorted by decreasing length (see :mod:`rnnlab.recurrence.schedule`), with a hand-written backward. Each is a
``torch.library`` custom op (``rnnlab::lstm_scan``, ``gru_scan``, ``rnn_scan``, and their ``_backward``s) with a
fake implementation, so ``torch.compile`` traces a layer whole (``fullgraph=True``) without unrolling its time
loop; plain inference calls the implementation directly.
The cell variants torch.nn lacks (layer norm, zoneout, recurrent dropout) run here too (``norms``,
``masks``), against their specification, a step-by-step recurrence through autograd in
:mod:`rnnlab.recurrence.variants` (which also takes double backward); the fused kernels run them from the
same random draws.
"""

from __future__ import annotations

import torch

from .common import normalised_inputs
from .gru import gru_forward
from .lstm import lstm_forward
from .rnn import NONLINEARITIES, rnn_forward
from .schedule import Schedule
from .variants import Masks

__all__ = ["NONLINEARITIES", "Schedule", "gru_scan", "lstm_scan", "rnn_scan"]


def lstm_scan(
    x: torch.Tensor,
    h0: torch.Tensor,
    c0: torch.Tensor,
    w_ih: torch.Tensor,
    w_hh: torch.Tensor,
    b_ih: torch.Tensor | None = None,
    b_hh: torch.Tensor | None = None,
    w_hr: torch.Tensor | None = None,
    batch_sizes: list[int] | None = None,
    reverse: bool = False,
    masks: Masks | None = None,
    norms: dict[str, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """LSTM over a sequence.

    x: (T, B, I); h0: (B, P); c0: (B, H); w_ih: (4H, I); w_hh: (4H, P); b_ih, b_hh: (4H,);
    w_hr: (P, H) or None (then P = H); batch_sizes: active rows per timestep (packed input) or None;
    masks: recurrent dropout's and zoneout's draws (:class:`rnnlab.recurrence.variants.Masks`) or None;
    norms: layer norm's gains and biases ({"ih", "hh"} (4H,), {"c", "c_bias"} (H,), as
    :func:`rnnlab.recurrence.variants.variant_scan` takes them) or None.
    Returns y (T, B, P) (zero at padded steps), h_n (B, P), c_n (B, H).
    """
    x, w_ih, norm = normalised_inputs(x, w_ih, norms, ("hh", "c", "c_bias"))
    return lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, reverse, masks, norm)


def gru_scan(
    x: torch.Tensor,
    h0: torch.Tensor,
    w_ih: torch.Tensor,
    w_hh: torch.Tensor,
    b_ih: torch.Tensor | None = None,
    b_hh: torch.Tensor | None = None,
    batch_sizes: list[int] | None = None,
    reverse: bool = False,
    masks: Masks | None = None,
    norms: dict[str, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GRU over a sequence.

    x: (T, B, I); h0: (B, H); w_ih: (3H, I); w_hh: (3H, H); b_ih, b_hh: (3H,); masks as :func:`lstm_scan`'s;
    norms: layer norm's gains {"ih", "hh"} (3H,) or None.
    Returns y (T, B, H) (zero at padded steps) and h_n (B, H).
    """
    x, w_ih, norm = normalised_inputs(x, w_ih, norms, ("hh",))
    return gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse, masks, norm)


def rnn_scan(
    x: torch.Tensor,
    h0: torch.Tensor,
    w_ih: torch.Tensor,
    w_hh: torch.Tensor,
    b_ih: torch.Tensor | None = None,
    b_hh: torch.Tensor | None = None,
    batch_sizes: list[int] | None = None,
    reverse: bool = False,
    nonlinearity: str = "tanh",
    masks: Masks | None = None,
    norms: dict[str, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Elman RNN over a sequence with ``nonlinearity`` "tanh" or "relu".

    x: (T, B, I); h0: (B, H); w_ih: (H, I); w_hh: (H, H); b_ih, b_hh: (H,); masks as :func:`lstm_scan`'s;
    norms: layer norm's gains {"ih", "hh"} (H,) or None.
    Returns y (T, B, H) (zero at padded steps) and h_n (B, H).
    """
    if nonlinearity not in NONLINEARITIES:
        raise ValueError(f"nonlinearity must be one of {NONLINEARITIES}; got {nonlinearity!r}")
    x, w_ih, norm = normalised_inputs(x, w_ih, norms, ("hh",))
    return rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse, nonlinearity, masks, norm)
