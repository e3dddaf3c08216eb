"""Validation of constructor arguments shared by rnnlab's cells and layers.

Every check raises before torch.nn's own constructor runs, with a message that names the argument, what
was expected and what was received (errors that are also ``RuntimeError``s, see rnnlab.errors).
"""

from __future__ import annotations

import math
import numbers

from .errors import RNNTypeError, RNNValueError
from .recurrence.variants import Variant

BACKENDS = ("auto", "torch", "native", "triton")


def check_int(owner: str, name: str, value: object, minimum: int) -> None:
    """``value`` must be an int >= ``minimum``: not a bool, nor a numpy integer (torch.nn's constructors refuse one
    for input_size and hidden_size; rnnlab's, for every size alike)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise RNNTypeError(f"{owner}: {name} must be an int >= {minimum}; got {type(value).__name__} {value!r}",
                           name)
    if value < minimum:
        raise RNNValueError(f"{owner}: {name} must be an int >= {minimum}; got {value}", name)


def check_bool(owner: str, name: str, value: object, exact: bool = False) -> None:
    """``value`` must be a bool (or 0/1, unless ``exact``: where torch.nn's constructor demands a bool, as the
    layers' ``bias`` and ``batch_first``)."""
    if not isinstance(value, bool) if exact else value not in (True, False):
        raise RNNTypeError(f"{owner}: {name} must be True or False; got {type(value).__name__} {value!r}", name)


def check_choice(owner: str, name: str, value: object, choices: tuple[str, ...]) -> str:
    """``value`` must be one of ``choices``."""
    if value not in choices:
        raise RNNValueError(f"{owner}: {name} must be one of {', '.join(map(repr, choices))}; got {value!r}", name)
    return str(value)


def check_probability(owner: str, name: str, value: object, below_one: bool = False) -> None:
    """``value`` must be a real number in [0, 1] (``below_one``: in [0, 1))."""
    upper = "1)" if below_one else "1]"
    if (isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1
            or (below_one and value == 1)):
        raise RNNValueError(f"{owner}: {name} must be a number in [0, {upper}; got {value!r}", name)


def check_finite(owner: str, name: str, value: object) -> None:
    """``value`` must be a finite real number (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise RNNValueError(f"{owner}: {name} must be a finite number; got {value!r}", name)


def check_no_projection(owner: str, proj_size: object) -> None:
    """RNN and GRU layers take no ``proj_size`` (None: not given); torch.nn's refuse any, 0 included, with a
    ValueError, as this does."""
    if proj_size is not None:
        raise RNNValueError(f"{owner}: proj_size is only supported for LSTM, as in torch.nn; got proj_size="
                            f"{proj_size!r}", "proj_size")


FUSED_LAYERS = ("LSTM", "GRU", "RNN")  # the layers with fused kernels (cells have none)


def check_backend(owner: str, backend: object, fused: bool) -> str:
    """A known backend; "triton" only for modules that have fused kernels (``fused``: the layers) and with
    Triton installed."""
    backend = check_choice(owner, "backend", backend, BACKENDS)
    if backend == "triton":
        if not fused:
            raise NotImplementedError(
                f"{owner}: backend='triton' has fused kernels only for the layers {', '.join(FUSED_LAYERS)}; "
                "use backend='torch' (the pure-PyTorch reference), 'native' (PyTorch's own kernel) or 'auto'"
            )
        try:
            import triton  # noqa: F401
        except ImportError as err:
            raise NotImplementedError(
                f"{owner}: backend='triton' needs the triton package (pip install triton); use 'torch' or 'native'"
            ) from err
    return backend


def check_layer_args(
    owner: str,
    input_size: object,
    hidden_size: object,
    num_layers: object,
    bias: object,
    batch_first: object,
    dropout: object,
    bidirectional: object,
    proj_size: object = 0,
) -> None:
    """The arguments common to RNN, LSTM and GRU layers."""
    check_int(owner, "input_size", input_size, 1)
    check_int(owner, "hidden_size", hidden_size, 1)
    check_int(owner, "num_layers", num_layers, 1)
    check_bool(owner, "bias", bias, exact=True)
    check_bool(owner, "batch_first", batch_first, exact=True)
    check_bool(owner, "bidirectional", bidirectional)
    check_probability(owner, "dropout", dropout)
    check_int(owner, "proj_size", proj_size, 0)
    if proj_size >= hidden_size:
        raise RNNValueError(
            f"{owner}: proj_size must be smaller than hidden_size ({hidden_size}), or 0 for no projection; "
            f"got {proj_size}", "proj_size"
        )


def check_variant(owner: str, options: dict[str, object]) -> None:
    """The options of a cell variant (fields of rnnlab.recurrence.variants.Variant, by name)."""
    for name, value in options.items():
        if name == "layer_norm":
            check_bool(owner, name, value)
        else:  # probabilities; a dropout of 1 would divide by zero
            check_probability(owner, name, value, below_one=name.endswith("dropout"))


def check_variant_backend(owner: str, variant: Variant, backend: str, fused: bool = False) -> None:
    """The backends that run ``variant``: layer norm, zoneout and recurrent dropout rnnlab's pure-PyTorch path
    ("auto" or "torch") and the fused kernels ("triton") where the module has them for its configuration
    (``fused``: the layers, without a projection; layer norm where the persistent regime runs, which the
    kernels check at the call); weight dropout any but torch.nn's kernel ("native"), which reads its own
    weights. Also checks ``backend`` itself, which may have been set after construction. Messages are built only
    when raising: this runs at every call."""
    check_choice(owner, "backend", backend, BACKENDS)
    if variant.stepwise and backend not in ("auto", "torch") and (backend != "triton" or not fused):
        if backend == "native":
            reason = "torch.nn's kernel computes the plain cell"
        else:
            reason = "the fused kernels take these options without proj_size only"
        also = " and the fused kernels (backend='triton')" if fused else ""
        raise NotImplementedError(
            f"{owner}: {variant.describe(stepwise_only=True)} runs on rnnlab's pure-PyTorch path (backend='torch' "
            f"or 'auto'){also}; got backend={backend!r}: {reason}. Turn the option off to use it"
        )
    if variant.weight_dropout and backend == "native":
        raise NotImplementedError(
            f"{owner}: weight_dropout={variant.weight_dropout!r} needs backend 'torch', 'triton' or 'auto'; got "
            "backend='native', whose kernel reads the module's own weights (no dropout mask can reach them)"
        )
