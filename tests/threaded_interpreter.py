"""The Triton interpreter with every program of a launch in a thread of its own, so that kernels whose programs wait on
each other (a grid barrier, flagged words) run on the CPU: the interpreter itself runs one program after another, in
which a barrier never opens. ``threaded_programs(monkeypatch)`` swaps its grid loop for threads, makes the program
index per thread and serialises atomics; a program that waits longer than ``TIMEOUT`` s stops the launch with an
error rather than a hang, as every waiting program does once one has failed. What this checks is the kernels' logic
(indexing, exchange slots, step tags, who waits for what) under one interleaving of many; the GPU's memory model is
the GPU's to check.
"""

from __future__ import annotations

import inspect
import itertools
import threading
import time

from triton.runtime import interpreter as ti

TIMEOUT = 300.0  # seconds a launch may take before it counts as a deadlock


class _PerThread:
    """A descriptor that keeps an attribute (the interpreter's program index) per thread."""

    def __init__(self):
        self.local = threading.local()

    def __get__(self, obj, cls=None):
        return getattr(self.local, "value", None)

    def __set__(self, obj, value):
        self.local.value = value


class _Launch:
    """One launch's shared state: a lock for atomics and the time after which a waiting program gives up."""

    lock = threading.Lock()
    deadline = float("inf")


def _checked(method, serialise: bool):
    """An interpreter builder method that raises once the launch is past its deadline (a program spinning on a
    barrier or a flag that never comes), under the atomics' lock if ``serialise``."""

    def run(self, *args, **kwargs):
        if time.monotonic() > _Launch.deadline:
            raise TimeoutError(f"a program waited over {TIMEOUT} s: the launch deadlocked")
        if not serialise:
            return method(self, *args, **kwargs)
        with _Launch.lock:
            return method(self, *args, **kwargs)

    return run


def _threaded_call(self, *args_dev, **kwargs):
    """GridExecutor.__call__ with the programs in threads (the rest as the interpreter's own)."""
    argspec = inspect.getfullargspec(self.fn)
    kwargs = {k: v for k, v in kwargs.items() if k in argspec.args or k in argspec.kwonlyargs}
    args_hst, kwargs_hst = self._init_args_hst(args_dev, kwargs)
    for hook in getattr(self, "pre_run_hooks", ()):  # Triton 3.4's GridExecutor has none
        hook(*args_hst, **kwargs_hst)
    patch_scope = ti._patch_lang(self.fn)  # None in Triton 3.4, whose patches stay
    try:
        args = inspect.getcallargs(self.fn, *args_hst, **kwargs_hst)
        args = {name: arg if name in self.constexprs else ti._implicit_cvt(arg) for name, arg in args.items()}
        grid = self.grid(args) if callable(self.grid) else self.grid
        grid = tuple(grid) + (1,) * (3 - len(grid))
        ti.interpreter_builder.set_grid_dim(*grid)
        errors: list[BaseException] = []

        def program(index):
            try:
                ti.interpreter_builder.set_grid_idx(*index)
                self.fn(**args)
            except BaseException as err:  # reported by the launching thread
                errors.append(err)
                _Launch.deadline = 0.0  # the programs waiting on this one stop too

        _Launch.deadline = time.monotonic() + TIMEOUT
        threads = [threading.Thread(target=program, args=(index,), daemon=True)
                   for index in itertools.product(*map(range, grid))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        _Launch.deadline = float("inf")
        if errors:
            raise ti.InterpreterError(repr(errors[0])) from errors[0]
    finally:
        if patch_scope is not None:
            patch_scope.restore()
    self._restore_args_dev(args_dev, args_hst, kwargs, kwargs_hst)


def threaded_programs(monkeypatch) -> None:
    """Run every interpreted launch's programs concurrently until ``monkeypatch`` undoes it."""
    builder = type(ti.interpreter_builder)
    monkeypatch.setattr(ti.GridExecutor, "__call__", _threaded_call)
    monkeypatch.setattr(builder, "grid_idx", _PerThread(), raising=False)
    for name in ("create_atomic_rmw", "create_atomic_cas"):
        monkeypatch.setattr(builder, name, _checked(getattr(builder, name), serialise=True))
    for name in ("create_load", "create_masked_load"):  # the polls of flagged words
        monkeypatch.setattr(builder, name, _checked(getattr(builder, name), serialise=False))
