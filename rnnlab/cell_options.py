"""The cell-variant options of rnnlab's layers and cells (layer norm, zoneout, recurrent and weight
dropout; the math is in :mod:`rnnlab.recurrence.variants`) and the layer-norm parameters they add."""

from __future__ import annotations

import torch
from torch import nn

from .checks import check_finite, check_variant, check_variant_backend
from .errors import RNNValueError
from .recurrence.variants import Variant


def _norm_name(key: str, suffix: str) -> str:
    """The parameter of layer-norm ``key`` ("ih", "hh", "c" gains, "c_bias") for weights named with
    ``suffix`` ("l0", "l1_reverse" in a layer, "" in a cell): ln_weight_ih_l0, ln_bias_c, ..."""
    name = "ln_bias_c" if key == "c_bias" else f"ln_weight_{key}"
    return f"{name}_{suffix}" if suffix else name


class CellOptions:
    """Mixin of a torch.nn recurrent module: ``variant`` (the options that are on) and the layer-norm gains
    and biases, initialised to one and zero (also by ``reset_parameters``), and the LSTM's ``forget_bias``."""

    backend: str
    variant: Variant = Variant()
    # whether the fused kernels run the zoneout and recurrent dropout options (the layers without proj_size)
    _fused_variants = False
    forget_bias = 0.0  # LSTM: the forget gate's bias starts here (b_ih's slice; b_hh's at zero); 0: torch.nn's draw

    def __prepare_scriptable__(self) -> nn.Module:
        """torch.jit.script's hook, which it calls on each submodule first: refuse, saying what to use instead
        (TorchScript cannot compile rnnlab's forward, and would fail on its annotations with no hint why)."""
        raise NotImplementedError(
            f"{self._get_name()}: torch.jit.script does not take rnnlab's layers and cells; use torch.compile, or "
            f"rnnlab.to_torch(model) for a torch.nn copy (without the cell options) that TorchScript takes"
        )

    def _set_forget_bias(self, forget_bias: object, bias: bool) -> None:
        """Start the LSTM's forget gate at ``forget_bias`` (Jozefowicz et al. 2015 advise 1; Keras' and
        haste's default): b_ih's forget slice ``forget_bias``, b_hh's zero, every other weight as torch.nn
        draws it. 0 keeps torch.nn's initialisation exactly."""
        owner = self._get_name()
        check_finite(owner, "forget_bias", forget_bias)
        if forget_bias and not bias:
            raise RNNValueError(f"{owner}: forget_bias={forget_bias!r} needs bias=True; got bias=False", "forget_bias")
        self.forget_bias = float(forget_bias)
        self.apply_forget_bias()

    def apply_forget_bias(self) -> None:
        """Set the LSTM's forget-gate biases to ``forget_bias`` again (b_ih's forget slice, b_hh's zero), as
        construction and reset_parameters do: after drawing the weights another way (a language model's
        uniform ``init_range``, say). Nothing without ``forget_bias``."""
        if not self.forget_bias:
            return
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.startswith(("bias_ih", "bias_hh")):  # (4H,) in gate order i, f, g, o
                    H = p.shape[0] // 4
                    p[H : 2 * H] = self.forget_bias if name.startswith("bias_ih") else 0.0

    def _set_variant(self, options: dict[str, object], suffixes: list[str], gates: int, hidden_size: int,
                     lstm: bool) -> None:
        """Check and turn on the ``options`` given (Variant's fields by name); with layer norm, add its
        parameters for each of the weight sets named by ``suffixes`` (``gates`` rows of W_ih and W_hh; the
        LSTM's cell state of ``hidden_size``)."""
        owner = self._get_name()
        check_variant(owner, options)
        variant = Variant(**{k: bool(v) if k == "layer_norm" else float(v) for k, v in options.items()})
        check_variant_backend(owner, variant, self.backend, self._fused_variants)
        self.variant = variant
        if not variant.layer_norm:
            return
        like = next(self.parameters())
        sizes = {"ih": gates, "hh": gates} | ({"c": hidden_size, "c_bias": hidden_size} if lstm else {})
        for suffix in suffixes:
            for key, size in sizes.items():
                param = nn.Parameter(torch.empty(size, dtype=like.dtype, device=like.device))
                self.register_parameter(_norm_name(key, suffix), param)
        self._reset_norms()

    def reset_parameters(self) -> None:
        """torch.nn's initialisation, then the layer-norm gains to one and biases to zero, and the forget
        gate's bias to ``forget_bias`` if set."""
        super().reset_parameters()
        self._reset_norms()
        self.apply_forget_bias()

    def _reset_norms(self) -> None:
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.startswith("ln_"):
                    p.fill_(0.0 if name.startswith("ln_bias") else 1.0)

    def _norms(self, suffix: str, lstm: bool, dtype: torch.dtype | None) -> dict[str, torch.Tensor] | None:
        """The layer-norm parameters of the weights named with ``suffix`` (converted to ``dtype`` if given),
        or None without layer norm."""
        if not self.variant.layer_norm:
            return None
        keys = ("ih", "hh", "c", "c_bias") if lstm else ("ih", "hh")
        norms = {k: getattr(self, _norm_name(k, suffix)) for k in keys}
        return {k: p if dtype is None else p.to(dtype) for k, p in norms.items()}

    def extra_repr(self) -> str:
        parts = [super().extra_repr(), f"backend={self.backend!r}", self.variant.describe()]
        parts.append(f"forget_bias={self.forget_bias!r}" if self.forget_bias else "")
        return ", ".join(p for p in parts if p)
