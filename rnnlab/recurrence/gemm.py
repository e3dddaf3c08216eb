"""The matrix products of the recurrences, on the fastest exact fp32 kernel PyTorch offers.

On x86 CPUs PyTorch's ``torch.mm`` calls MKL, which does not use AVX-512 on AMD processors; oneDNN's
inner-product kernel (the one torch.nn.LSTM reaches through ``mkldnn_rnn``) runs about twice as fast
there (measured on a 2-core AMD EPYC: 455 vs 190 GFLOP/s for a 64x512x2048 product), so on AMD
processors the products go to oneDNN. On Intel's MKL is the better choice (measured on a 2-core Xeon
with AVX-512: 156 vs 173 GFLOP/s at 64x512x2048, but 76 vs 42-51 at the recurrences' 16x128x512, and a
GRU training step at (T, B, I, H) = (100, 32, 128, 256) 52 ms with MKL vs 77 ms with oneDNN). oneDNN is
reached through ``torch.ops.mkldnn._linear_pointwise``, the op that TorchInductor's CPU backend uses, and
computes in fp32 without reduced precision. Everything else (CUDA, other dtypes, builds without oneDNN,
code traced by torch.compile,
``torch.backends.mkldnn.flags(enabled=False)``) uses ``torch.mm``/``torch.addmm``, and so do small
products: oneDNN's call costs about 10 us more than MKL's, which pays off from about 2^20 multiply-adds
(measured: even at 16x128x512, ahead from 4x256x1024), and reordering a weight costs about 100 us, which
pays off over a sequence, not over a few steps.
"""

from __future__ import annotations

import contextlib

import torch

_ONEDNN = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)


def _amd_cpu() -> bool:
    """Whether this machine's CPU is AMD's (Linux: /proc/cpuinfo; elsewhere assumed not)."""
    try:
        with open("/proc/cpuinfo") as info:
            return any("AuthenticAMD" in line for line in info if line.startswith("vendor_id"))
    except OSError:
        return False


_enabled = _amd_cpu()  # where oneDNN beats MKL (see the module docstring)
MIN_ONEDNN_MACS = 2**20  # multiply-adds of one product below which MKL is faster
MIN_PACKED_STEPS = 8  # products per sequence below which reordering the weight does not pay


@contextlib.contextmanager
def use_onednn(enabled: bool):
    """Temporarily allow (True) or forbid (False) the oneDNN products, for tests and benchmarks (by default
    they are allowed on AMD processors only)."""
    global _enabled
    previous, _enabled = _enabled, enabled
    try:
        yield
    finally:
        _enabled = previous


def _onednn(x: torch.Tensor, macs: int) -> bool:
    return (
        _enabled
        and not torch.compiler.is_compiling()  # under torch.compile, Inductor picks its own GEMMs
        and macs >= MIN_ONEDNN_MACS
        and _ONEDNN is not None
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
    )


def linear(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ w.T + bias`` as a new tensor. x: (M, K); w: (N, K) (any strides); bias: (N,) or None."""
    if _onednn(x, x.shape[0] * x.shape[1] * w.shape[0]):
        return _ONEDNN(x, w, bias, "none", [], "")
    return _aten_linear(x, w, bias)


def _aten_linear(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return torch.mm(x, w.t()) if bias is None else torch.addmm(bias, x, w.t())


class StepWeight:
    """A weight multiplied at every timestep, prepared once per sequence (oneDNN: reordered into its
    blocked layout, which halves the time of a small product).

    ``w``: (N, K), any strides; ``bias``: (N,) or None; ``rows``: the usual number of rows M of the
    products; ``steps``: how many products the sequence needs.
    """

    def __init__(self, w: torch.Tensor, rows: int, steps: int, bias: torch.Tensor | None = None):
        self.onednn = steps >= MIN_PACKED_STEPS and _onednn(w, rows * w.numel())
        self.w = torch.ops.mkldnn._reorder_linear_weight(w, rows) if self.onednn else w
        self.bias = bias

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``x @ w.T + bias`` as a new tensor. x: (M, K)."""
        if self.onednn:
            return _ONEDNN(x, self.w, self.bias, "none", [], "")
        return _aten_linear(x, self.w, self.bias)

    def addmm_(self, acc: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``acc += x @ w.T (+ bias)`` in place; returns ``acc``. x: (M, K); acc: (M, N).

        (oneDNN's fused "add" post-op measured slower than a product followed by ``add_``.)
        """
        if self.onednn or self.bias is not None:
            return acc.add_(self(x))
        return acc.addmm_(x, self.w.t())
