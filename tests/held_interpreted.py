"""The held regime's kernels (kernels/held.py, Gluon) under the Triton interpreter, which does not run Gluon: each
kernel's Python function is rebound to globals where Gluon's calls are their triton.language equivalents with the
layouts dropped (a layout places values in registers; it does not change them), ``mma_v2`` is the product it
computes (fp32 accumulation of the operands as given) and a shared-memory buffer keeps what was stored. So the
kernels' indexing, masks, packed and reversed steps, input prefetch, exchange and calls of the cells' step code
run against the reference (the split kernels, whose programs wait on each other, with tests/threaded_interpreter.py);
what the layouts and the tensor-core instructions do is the compiler's and the GPU's to check (fit.py,
tests/held_binding.py, tests/test_cuda.py). The cluster exchanges' PTX (held.py: _cluster_put, _cluster_read) runs as
_ClusterPTX reads it: each program a shared memory and mbarriers of its own, the cluster's barrier a
threading.Barrier, so their addresses, slots, phases and waits are the kernels' own; launch_split runs a cluster
launch's grid as the GPU's launcher would.
"""

from __future__ import annotations

import threading
import types
from typing import ClassVar

import numpy as np
import triton
import triton.language as tl
from threaded_interpreter import TIMEOUT
from triton.runtime import interpreter as ti
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


class _MBarrier:
    """An mbarrier's state: arrivals a phase, arrivals and transaction bytes pending in the current one, phases
    completed."""

    def __init__(self, count: int):
        self.count = self.pending = count
        self.tx = self.completed = 0

    def update(self, arrivals: int, tx: int) -> None:
        """Arrive ``arrivals`` times and add ``tx`` bytes expected (negative: bytes come, complete_tx); a phase
        completes when neither arrivals nor bytes are pending."""
        self.pending -= arrivals
        self.tx += tx
        if self.pending == 0 and self.tx == 0:
            self.completed += 1
            self.pending = self.count


class _ClusterPTX:
    """gl.inline_asm_elementwise for the cluster exchanges' PTX (held.py), for programs in threads: a program's
    shared memory is SHARED bytes of its own (%dynamic_smem_size) with its mbarriers beside it; ``mapa`` +
    ``st.shared::cluster`` writes into the memory of the program with that rank in the caller's cluster (``size``
    programs of a one-dimensional grid in a row, as launch_split runs them), ``st.async`` likewise and counts its bytes
    off that program's mbarrier; ``barrier.cluster`` waits for the cluster's every program; ``mbarrier.init`` and
    ``arrive.expect_tx`` (by the threads whose predicate operand is 0: one) set a barrier up and arm it,
    ``try_wait.parity`` waits for a phase; ``fence`` does nothing here; ``ld.shared`` reads the caller's own memory.
    Anything else is refused."""

    SHARED = 1 << 16
    size = 1  # programs a cluster, set by launch_split
    lock = threading.Condition()
    memories: ClassVar[dict[int, np.ndarray]] = {}  # by program index: fp32 words
    mbarriers: ClassVar[dict[tuple[int, int], _MBarrier]] = {}  # by (program, address)
    barriers: ClassVar[dict[tuple[int, int], threading.Barrier]] = {}  # by (cluster, size)

    @classmethod
    def reset(cls) -> None:
        """Forget every program's memory and mbarriers and every cluster's barrier (a fresh launch history)."""
        cls.memories, cls.mbarriers, cls.barriers = {}, {}, {}

    @classmethod
    def memory(cls, program: int) -> np.ndarray:
        with cls.lock:
            return cls.memories.setdefault(program, np.full(cls.SHARED // 4, np.nan, dtype=np.float32))

    @classmethod
    def run(cls, asm, constraints, args, dtype, is_pure, pack):
        program = ti.interpreter_builder.grid_idx[0]
        values = np.broadcast_arrays(*[arg.handle.data for arg in args])
        result = np.zeros(values[0].shape, dtype=np.float32 if dtype == tl.float32 else np.int32)
        peer = program - program % cls.size  # + a rank: that program of the caller's cluster
        if "%dynamic_smem_size" in asm:
            result[...] = cls.SHARED
        elif "st.async" in asm:
            address, rank, barrier, value = values
            cls.memory(peer + int(rank.flat[0]))[address // 4] = value
            with cls.lock:
                cls.mbarriers[peer + int(rank.flat[0]), int(barrier.flat[0])].update(0, -4 * value.size)
                cls.lock.notify_all()
        elif "st.shared::cluster" in asm:
            address, rank, value = values
            cls.memory(peer + int(rank.flat[0]))[address // 4] = value
        elif "barrier.cluster" in asm:
            with cls.lock:
                barrier = cls.barriers.setdefault((program // cls.size, cls.size), threading.Barrier(cls.size))
            barrier.wait(TIMEOUT)
        elif "mbarrier.init" in asm:  # by the threads whose first operand is 0
            if (values[0] == 0).any():
                with cls.lock:
                    cls.mbarriers[program, int(values[1].flat[0])] = _MBarrier(1)
        elif "mbarrier.arrive.expect_tx" in asm:  # likewise, each of them arriving
            threads = int((values[0] == 0).sum())
            with cls.lock:
                cls.mbarriers[program, int(values[1].flat[0])].update(threads, threads * int(values[2].flat[0]))
                cls.lock.notify_all()
        elif "mbarrier.try_wait.parity" in asm:
            state = cls.mbarriers[program, int(values[0].flat[0])]
            with cls.lock:
                if not cls.lock.wait_for(lambda: state.completed % 2 != int(values[1].flat[0]), TIMEOUT):
                    raise TimeoutError("an mbarrier's phase never completed")
        elif asm.startswith("fence."):  # orders the caller's own accesses: nothing to emulate
            pass
        elif asm.startswith("ld.shared.f32"):
            result[...] = cls.memory(program)[values[0] // 4]
        else:
            raise NotImplementedError(f"no emulation of this inline PTX: {asm!r}")
        return tl.tensor(ti.TensorHandle(result, dtype), tl.block_type(dtype, list(result.shape)))


def launch_split(kernel, launch, *args, **kwargs) -> None:
    """held.launch_split under the interpreter: a cluster launch's grid (launch.grid's first axis launch.cluster times
    over, clusters in a row) with its programs' PTX emulated (_ClusterPTX); any other launch as it is."""
    _ClusterPTX.size = launch.cluster
    grid = (launch.grid[0] * launch.cluster, *launch.grid[1:])
    kernel[grid](*args, **{**launch.meta, **kwargs})


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
        return 8  # only the layouts (dropped) and the cluster exchange's check of the split launch's 8 warps read it

    allocate_shared_memory = _Shared
    inline_asm_elementwise = _ClusterPTX.run

    def __getattr__(self, name):
        return getattr(tl, name)


def interpreted_kernels(*others) -> dict[str, object]:
    """The held kernels as interpreter functions, by name (held.py's), for monkeypatching held; and ``others``,
    Gluon functions of other modules that call held.py's (benchmarks/held_floor.py's), in the same scope."""
    scope = dict(vars(held))
    scope.update(gl=_Language(), mma_v2=_mma, tl=tl)
    for name, value in vars(held).items():
        if isinstance(value, ConstexprFunction):  # the layouts' helpers, and exchange_bytes (a number, kept)
            scope[name] = value.fn if name == "exchange_bytes" else _layout
        elif isinstance(getattr(value, "fn", None), types.FunctionType) and value.fn.__module__ == held.__name__:
            scope[name] = _interpreted(value.fn, scope)
    return {**{name: scope[name] for name in KERNELS}, **{other.fn.__name__: _interpreted(other.fn, scope)
                                                          for other in others}}


def _interpreted(fn, scope: dict):
    """``fn`` (a Gluon function's Python function) as an interpreter function whose globals are ``scope``."""
    kernel = triton.jit(types.FunctionType(fn.__code__, scope, fn.__name__, fn.__defaults__))
    # the interpreter recompiles the source and finds constexpr parameters by their annotations' text, "tl.constexpr"
    # (or "constexpr"), where Gluon's read "gl.constexpr"
    rewritten = kernel.rewrite()
    rewritten.__annotations__ = {k: v.replace("gl.", "tl.") for k, v in rewritten.__annotations__.items()}
    return kernel
