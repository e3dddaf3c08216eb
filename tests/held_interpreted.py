"""The held regime's kernels (kernels/held.py, Gluon) under the Triton interpreter, which does not run Gluon: each
kernel's Python function is rebound to globals where Gluon's calls are their triton.language equivalents with the
layouts dropped (a layout places values in registers; it does not change them), ``mma_v2`` is the product it
computes (fp32 accumulation of the operands as given) and a shared-memory buffer keeps what was stored. So the
kernels' indexing, masks, packed and reversed steps, input prefetch, exchange and calls of the cells' step code
run against the reference (the split kernels, whose programs wait on each other, with tests/threaded_interpreter.py);
what the layouts and the tensor-core instructions do is the compiler's and the GPU's to check (fit.py,
tests/held_binding.py, tests/test_cuda.py).
"""

from __future__ import annotations

import types

import triton
import triton.language as tl
from triton.runtime.jit import ConstexprFunction

from rnnlab.kernels import held

KERNELS = ("_lstm_fwd_held_kernel", "_gru_fwd_held_kernel", "_rnn_fwd_held_kernel", "_lstm_fwd_held_split_kernel",
           "_gru_fwd_held_split_kernel")


def _layout(*args, **kwargs):
    """Any Gluon layout: nothing the interpreter needs."""
    return None


def _mma(a, b, acc):
    """mma_v2(a, b, acc): a (M, K) @ b (K, N) + acc in fp32, as the tensor cores accumulate."""
    return acc + tl.sum(a.to(tl.float32)[:, :, None] * b.to(tl.float32)[None, :, :], axis=1)


class _Shared:
    """A program's shared-memory buffer (gl.allocate_shared_memory): what was stored last, read back by rows."""

    def __init__(self, dtype, shape, layout):
        self.value = None

    def store(self, value):
        self.value = value

    def slice(self, start, size):
        return _SharedRows(self, start, size)


class _SharedRows:
    """Rows start.. start + size of a _Shared (a multiple of size), as .slice gives them."""

    def __init__(self, shared, start, size):
        self.shared, self.start, self.size = shared, start, size

    def load(self, layout=None):
        value = self.shared.value  # (parts * size, N)
        parts = value.shape[0] // self.size
        blocks = tl.reshape(value, (parts, self.size, value.shape[1]))
        pick = tl.arange(0, parts)[:, None, None] == self.start // self.size
        return tl.sum(tl.where(pick, blocks, 0.0), axis=0)


class _Language:
    """triton.experimental.gluon.language as the kernels use it: triton.language's calls, looked up at each call
    (the interpreter swaps triton.language's builtins for its own while a kernel runs), without layouts."""

    constexpr, float32, int64 = tl.constexpr, tl.float32, tl.int64
    NVMMADistributedLayout = DotOperandLayout = SliceLayout = BlockedLayout = SwizzledSharedLayout = _layout

    @staticmethod
    def arange(start, end, layout=None):
        return tl.arange(start, end)

    @staticmethod
    def zeros(shape, dtype, layout=None):
        return tl.zeros(shape, dtype)

    @staticmethod
    def convert_layout(x, layout):
        return x

    @staticmethod
    def num_warps():
        return 4

    allocate_shared_memory = _Shared

    def __getattr__(self, name):
        return getattr(tl, name)


def interpreted_kernels() -> dict[str, object]:
    """The held kernels as interpreter functions, by name (held.py's), for monkeypatching held."""
    scope = dict(vars(held))
    scope.update(gl=_Language(), mma_v2=_mma, tl=tl)
    for name, value in vars(held).items():
        if isinstance(value, ConstexprFunction):  # the layouts' helpers
            scope[name] = _layout
        elif isinstance(getattr(value, "fn", None), types.FunctionType) and value.fn.__module__ == held.__name__:
            fn = value.fn
            scope[name] = kernel = triton.jit(types.FunctionType(fn.__code__, scope, fn.__name__, fn.__defaults__))
            # the interpreter recompiles the source and finds constexpr parameters by their annotations' text,
            # "tl.constexpr" (or "constexpr"), where Gluon's read "gl.constexpr"
            rewritten = kernel.rewrite()
            rewritten.__annotations__ = {k: v.replace("gl.", "tl.") for k, v in rewritten.__annotations__.items()}
    return {name: scope[name] for name in KERNELS}
