"""The matrix products of the recurrences, on the fastest exact fp32 kernel PyTorch offers.

On x86 CPUs PyTorch's ``torch.mm`` calls MKL, which does not use AVX-512 on AMD processors; oneDNN's
inner-product kernel (the one torch.nn.LSTM reaches through ``mkldnn_rnn``) runs about twice as fast
there (measured on the 2-core AMD EPYC CI machine: 455 vs 190 GFLOP/s for a 64x512x2048 product). It is
reached through ``torch.ops.mkldnn._linear_pointwise``, the op that TorchInductor's CPU backend uses, and
computes in fp32 without reduced precision. Everything else (CUDA, other dtypes, builds without oneDNN,
``torch.backends.mkldnn.flags(enabled=False)``) uses ``torch.mm``/``torch.addmm``.
"""

from __future__ import annotations

import contextlib

import torch

_ONEDNN = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)
_enabled = True


@contextlib.contextmanager
def use_onednn(enabled: bool):
    """Temporarily allow (True) or forbid (False) the oneDNN products, for tests and benchmarks."""
    global _enabled
    previous, _enabled = _enabled, enabled
    try:
        yield
    finally:
        _enabled = previous


def _onednn(x: torch.Tensor) -> bool:
    return (
        _enabled
        and _ONEDNN is not None
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
    )


def linear(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ w.T + bias`` as a new tensor. x: (M, K); w: (N, K) (any strides); bias: (N,) or None."""
    if _onednn(x):
        return _ONEDNN(x, w, bias, "none", [], "")
    return torch.mm(x, w.t()) if bias is None else torch.addmm(bias, x, w.t())


class StepWeight:
    """A weight multiplied at every timestep, prepared once per sequence (oneDNN: reordered into its
    blocked layout, which halves the time of a small product).

    ``w``: (N, K), any strides; ``rows``: the usual number of rows M of the products (a layout hint).
    """

    def __init__(self, w: torch.Tensor, rows: int):
        self.onednn = _onednn(w)
        self.w = torch.ops.mkldnn._reorder_linear_weight(w, rows) if self.onednn else w

    def __call__(self, x: torch.Tensor, acc: torch.Tensor | None = None) -> torch.Tensor:
        """``x @ w.T`` (+ ``acc``) as a new tensor. x: (M, K); acc: (M, N) or None."""
        if self.onednn:
            if acc is None:
                return _ONEDNN(x, self.w, None, "none", [], "")
            return _ONEDNN.binary(x, acc, self.w, None, "add")
        return torch.mm(x, self.w.t()) if acc is None else torch.addmm(acc, x, self.w.t())
