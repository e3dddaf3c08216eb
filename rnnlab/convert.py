"""Conversion between torch.nn recurrent modules and rnnlab's, weights included.

rnnlab's modules subclass torch.nn's and share their ``state_dict`` format, so ``load_state_dict`` works
in both directions; these helpers also build the module of the other kind with the same configuration,
and convert every recurrent submodule of a whole model in place.
"""

from __future__ import annotations

import dataclasses
import inspect
import warnings

from torch import nn

from . import cells, layers
from .cell_options import CellOptions
from .recurrence.variants import Variant

OPTIONS = tuple(field.name for field in dataclasses.fields(Variant))  # what from_torch's ``options`` may set

# torch.nn class -> rnnlab class, and the constructor arguments both share
_PAIRS: dict[type[nn.Module], tuple[type[nn.Module], tuple[str, ...]]] = {
    nn.RNN: (layers.RNN, ("input_size", "hidden_size", "num_layers", "nonlinearity", "bias", "batch_first",
                          "dropout", "bidirectional")),
    nn.LSTM: (layers.LSTM, ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout",
                            "bidirectional", "proj_size")),
    nn.GRU: (layers.GRU, ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout",
                          "bidirectional")),
    nn.RNNCell: (cells.RNNCell, ("input_size", "hidden_size", "bias", "nonlinearity")),
    nn.LSTMCell: (cells.LSTMCell, ("input_size", "hidden_size", "bias")),
    nn.GRUCell: (cells.GRUCell, ("input_size", "hidden_size", "bias")),
}


def _torch_base(module: nn.Module) -> type[nn.Module] | None:
    for base in _PAIRS:
        if type(module) is base or type(module) is _PAIRS[base][0]:
            return base
    return None


def _rebuild(module: nn.Module, cls: type[nn.Module], names: tuple[str, ...], **extra) -> nn.Module:
    param = next(module.parameters())
    kwargs = {name: getattr(module, name) for name in names}
    new = cls(**kwargs, device=param.device, dtype=param.dtype, **extra)
    missing, unexpected = new.load_state_dict(module.state_dict(), strict=False)
    if unexpected or any(not k.startswith("ln_") for k in missing):  # only layer-norm gains may be new
        new.load_state_dict(module.state_dict())  # raises torch's error, naming the keys
    for name, p in module.named_parameters():
        new.get_parameter(name).requires_grad_(p.requires_grad)  # frozen weights stay frozen
    new.train(module.training)
    return new


def _convert_all(module: nn.Module, make, caller: str, kind: str) -> nn.Module:
    """``make(module)``, or ``module`` with each submodule that ``make`` converts replaced in place; all or
    nothing: every replacement is built before any is swapped in, so an error leaves the model as it was. A
    module reached twice (shared, tied) is converted once, so it stays shared. Warns (from ``caller``) where
    nothing converted (a model passed by mistake, or converted already, with no ``kind`` module) or, instead, where a
    subclass of a recurrent class was left."""
    done: dict[int, nn.Module | None] = {}  # id of each module reached -> its replacement (None: kept)
    swaps: list[tuple[nn.Module, str, nn.Module]] = []
    left: list[str] = []

    def visit(m: nn.Module, path: str) -> nn.Module | None:
        if id(m) not in done:
            done[id(m)] = make(m)
            if done[id(m)] is None:
                if isinstance(m, tuple(_PAIRS)):  # a subclass, which _torch_base does not match
                    left.append(f"{path or 'the module given'} ({m._get_name()})")
                for name, child in list(m._modules.items()):  # named_children() would skip a repeated child
                    new = None if child is None else visit(child, f"{path}.{name}" if path else name)
                    if new is not None:
                        swaps.append((m, name, new))
        return done[id(m)]

    result = visit(module, "")
    for parent, name, new in swaps:
        setattr(parent, name, new)
    if not left and all(new is None for new in done.values()):
        warnings.warn(f"{caller}: {module._get_name()} holds no {kind} RNN, LSTM or GRU (layer or cell); nothing "
                      "was converted", stacklevel=3)
    if left:
        warnings.warn(f"{caller}: left {', '.join(left)} as they are: subclasses of the recurrent classes, which "
                      "converting would strip of their own code (methods, parametrizations); convert them by hand",
                      stacklevel=3)
    return module if result is None else result


def from_torch(module: nn.Module, backend: str | None = None, **options) -> nn.Module:
    """rnnlab's equivalent of a torch.nn RNN/LSTM/GRU (layer or cell), with a copy of its weights (and
    their ``requires_grad``, device, dtype and training mode).

    ``backend``: the converted modules' backend; None gives a torch.nn module "auto" and an rnnlab module
    its own. ``options``: cell-variant options for every converted module (``layer_norm``, ``zoneout``,
    ``zoneout_cell``, ``recurrent_dropout``, ``weight_dropout``; see rnnlab.recurrence.variants), for example
    ``from_torch(model, zoneout=0.1)``; one that a converted class does not take (cells take fewer than layers,
    only the LSTM's take ``zoneout_cell``) raises ValueError. New layer-norm gains start at one and trainable, even
    in a frozen model (to train only them); freeze them with ``requires_grad_(False)`` otherwise. An rnnlab
    module given keeps the options it has (and an LSTM its ``forget_bias``) unless they are given here, but
    not ``layer_norm=False`` on one with layer norm, which would drop its trained gains (ValueError).

    Given any other module, converts every recurrent submodule in place, all or nothing (an error leaves the
    model as it was; one shared by several parents stays shared), and returns the module, warning where it
    holds none. A subclass of these classes (a user's, a parametrized module) is left as it is, with a warning.
    Hooks registered on a converted module are not carried over.
    """
    if unknown := sorted(set(options) - set(OPTIONS) - {"forget_bias"}):
        raise ValueError(f"from_torch: no option {', '.join(unknown)}; the options are {', '.join(OPTIONS)}")
    if "forget_bias" in options:
        raise ValueError("from_torch: forget_bias is an initialisation, and the weights come from the module "
                         "converted; set its forget-gate biases instead")
    given = options | ({} if backend is None else {"backend": backend})

    def make(m: nn.Module) -> nn.Module | None:
        base = _torch_base(m)
        if base is None:
            return None
        cls, names = _PAIRS[base]
        takes = [name for name in inspect.signature(cls).parameters if name in OPTIONS]
        if refused := [name for name in options if name not in takes]:
            raise ValueError(f"from_torch: {cls.__name__} takes no {', '.join(refused)} (its options: "
                             f"{', '.join(takes)}); convert the {cls.__name__} modules apart without "
                             f"{'it' if len(refused) == 1 else 'them'}")
        own = {}
        if isinstance(m, CellOptions):
            own = dataclasses.asdict(m.variant) | {"forget_bias": m.forget_bias}
            own = {k: v for k, v in own.items() if v} | {"backend": m.backend}  # the options on
            if own.get("layer_norm") and not options.get("layer_norm", True):
                raise ValueError(f"from_torch: layer_norm=False would drop {m._get_name()}'s trained layer-norm "
                                 "parameters (to_torch refuses layer norm too); keep layer_norm, or build a new "
                                 "module without it")
        return _rebuild(m, cls, names, **(own | given))

    return _convert_all(module, make, "from_torch", "torch.nn or rnnlab")


def to_torch(module: nn.Module) -> nn.Module:
    """The plain torch.nn equivalent of an rnnlab layer or cell, with a copy of its weights (as
    :func:`from_torch`).

    Given any other module, converts every rnnlab recurrent submodule in place, all or nothing, and returns the
    module; subclasses are left, with a warning (as :func:`from_torch`). A layer or cell with cell-variant
    options on (layer norm, zoneout, recurrent or weight dropout) raises ValueError.
    """

    def make(m: nn.Module) -> nn.Module | None:
        base = _torch_base(m)
        if base is None:
            return None
        options = m.variant.describe() if isinstance(m, CellOptions) else ""
        if options:
            raise ValueError(
                f"to_torch: {m._get_name()} with {options} has no torch.nn equivalent (torch.nn computes the "
                "plain cell); turn those options off first if the plain cell is what you want"
            )
        return _rebuild(m, base, _PAIRS[base][1])

    return _convert_all(module, make, "to_torch", "rnnlab or torch.nn")
