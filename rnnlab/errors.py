"""Exceptions raised for bad arguments and inputs.

torch.nn raises ``RuntimeError`` for many input mistakes (a wrong hidden-state shape, a dtype mismatch)
and ``ValueError``/``TypeError`` for others. rnnlab's errors subclass both the natural Python type and
``RuntimeError`` so that code written against torch.nn keeps catching them, while the messages always
name the argument, what was expected and what was received.
"""

from __future__ import annotations


class RNNShapeError(ValueError, RuntimeError):
    """A tensor has the wrong rank or size (``ValueError`` and ``RuntimeError``)."""


class _NamesArgument:
    """An error that may name the constructor argument it is about (``argument``; None when it is about a
    tensor passed to forward), so a caller such as rnnlab-train can point at its own key for it."""

    def __init__(self, message: str, argument: str | None = None):
        super().__init__(message)
        self.argument = argument


class RNNTypeError(_NamesArgument, TypeError, RuntimeError):
    """A tensor has the wrong dtype or device, or an argument the wrong type."""


class RNNDtypeError(RNNTypeError, ValueError):
    """A tensor has a dtype the parameters cannot take (``TypeError``; ``ValueError``, as torch.nn's layers raise,
    and ``RuntimeError``, as its cells do)."""


class RNNValueError(_NamesArgument, ValueError, RuntimeError):
    """An argument has a value outside the ones it accepts (``ValueError`` and ``RuntimeError``)."""


def describe(x: object) -> str:
    """Short human description of a value for error messages."""
    import torch

    if isinstance(x, torch.Tensor):
        return f"a {x.dtype} tensor of shape {tuple(x.shape)} on {x.device}"
    return f"{type(x).__name__} {x!r}"


class ConfigError(ValueError):
    """A configuration value is wrong; the message says which key to change and how."""


class DataError(ValueError):
    """A data set is missing, corrupt or malformed; the message says what to fix."""


def user_error(err: Exception) -> Exception | None:
    """The error a user fixes on the command line (rnnlab's ConfigError or DataError, also when Hydra wraps
    it in an InstantiationException), or None for anything else: a bug, to show with its traceback."""
    from hydra.errors import InstantiationException  # here, so that the layers' imports stay free of Hydra

    cause = err.__cause__ if isinstance(err, InstantiationException) else err
    return cause if isinstance(cause, (ConfigError, DataError)) else None
