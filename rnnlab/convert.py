"""Conversion between torch.nn recurrent modules and rnnlab's, weights included.

rnnlab's modules subclass torch.nn's and share their ``state_dict`` format, so ``load_state_dict`` works
in both directions; these helpers also build the module of the other kind with the same configuration,
and convert every recurrent submodule of a whole model in place.
"""

from __future__ import annotations

import dataclasses
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
    """_convert's result for ``module``, warning (from ``caller``) where it held no ``kind`` module to convert: a
    model passed by mistake, or converted already."""
    converted = []

    def counted(m: nn.Module) -> nn.Module | None:
        new = make(m)
        if new is not None:
            converted.append(new)
        return new

    result = _convert(module, counted)
    if not converted:
        warnings.warn(f"{caller}: {module._get_name()} holds no {kind} RNN, LSTM or GRU (layer or cell); nothing "
                      "was converted", stacklevel=3)
    return result


def _convert(module: nn.Module, make, done: dict[int, nn.Module] | None = None) -> nn.Module:
    """``make(module)``, or ``module`` with each child converted; a module reached twice (shared, tied) is
    converted once, so it stays shared."""
    done = {} if done is None else done
    if id(module) in done:
        return done[id(module)]
    converted = make(module)
    if converted is None:
        for name, child in list(module._modules.items()):  # named_children() would skip a repeated child
            if child is not None:
                setattr(module, name, _convert(child, make, done))
        converted = module
    done[id(module)] = converted
    return converted


def from_torch(module: nn.Module, backend: str = "auto", **options) -> nn.Module:
    """rnnlab's equivalent of a torch.nn RNN/LSTM/GRU (layer or cell), with a copy of its weights (and
    their ``requires_grad``, device, dtype and training mode).

    ``options``: cell-variant options for every converted module (``layer_norm``, ``zoneout``, and where
    the class takes them ``zoneout_cell``, ``recurrent_dropout``, ``weight_dropout``; see
    rnnlab.recurrence.variants), for example ``from_torch(model, zoneout=0.1)``; new layer-norm gains start
    at one. An rnnlab module given keeps the options it has unless they are given here.

    Given any other module, converts every recurrent submodule in place (one shared by several parents
    stays shared) and returns the module (warning where it holds none). Hooks registered on a converted module
    are not carried over.
    """
    if unknown := sorted(set(options) - set(OPTIONS) - {"forget_bias"}):
        raise ValueError(f"from_torch: no option {', '.join(unknown)}; the options are {', '.join(OPTIONS)}")

    def make(m: nn.Module) -> nn.Module | None:
        base = _torch_base(m)
        if base is None:
            return None
        cls, names = _PAIRS[base]
        if "forget_bias" in options:
            raise ValueError("from_torch: forget_bias is an initialisation, and the weights come from the module "
                             "converted; set its forget-gate biases instead")
        kept = dataclasses.asdict(m.variant) if isinstance(m, CellOptions) else {}
        kept = {k: v for k, v in kept.items() if v}  # the options on (cells take fewer than layers)
        return _rebuild(m, cls, names, backend=backend, **(kept | options))

    return _convert_all(module, make, "from_torch", "torch.nn or rnnlab")


def to_torch(module: nn.Module) -> nn.Module:
    """The plain torch.nn equivalent of an rnnlab layer or cell, with a copy of its weights (as
    :func:`from_torch`).

    Given any other module, converts every rnnlab recurrent submodule in place and returns the module.
    A layer or cell with cell-variant options on (layer norm, zoneout, recurrent or weight dropout) raises
    ValueError.
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
