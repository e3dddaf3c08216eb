"""RNN, LSTM and GRU layers: drop-in replacements for torch.nn.RNN/LSTM/GRU.

Each class subclasses its torch.nn counterpart, so the constructor, parameter names, shapes,
initialisation and ``state_dict`` are torch.nn's own and ``isinstance(layer, torch.nn.LSTM)`` holds.
What rnnlab adds is the ``backend`` argument and the hand-written recurrence behind ``backend="torch"``:

- ``"torch"``: rnnlab's pure-PyTorch recurrence (:mod:`rnnlab.recurrence`), the reference;
- ``"native"``: PyTorch's own ATen/cuDNN kernel on the same weights;
- ``"triton"``: the fused Triton kernels (any hidden size and LSTM ``proj_size``; CUDA tensors, or the
  CPU under ``TRITON_INTERPRET=1``);
- ``"auto"``: the fastest correct backend for the device and options (see :func:`resolve_backend`).

What torch.nn lacks, as keyword-only options of each layer (:mod:`rnnlab.recurrence.variants` has the
math): ``layer_norm`` (on the gates' input and recurrent pre-activations, and the LSTM's cell state; its
gains add ``ln_*`` parameters to the ``state_dict``), ``zoneout`` (and the LSTM's ``zoneout_cell``) and
``recurrent_dropout`` (one mask per sequence on the state entering W_hh). On backend "torch" they run in a
step-by-step recurrence through autograd, their specification, which also takes double backward and
``torch.func`` transforms; "auto" runs them on the fused kernels on CUDA (as "triton" does; not with
``proj_size``, and layer norm only at the small hidden sizes where the kernels' persistent regime runs it:
kernels.dispatch.norm_fits) and elsewhere on the hand-written recurrences, all from the same random draws
(variants.Masks). ``weight_dropout`` (DropConnect on W_hh, one mask per call in training) only changes the
weight a backend is given: it runs on "torch" and "triton" ("auto" then takes one of them where it would
take torch.nn's kernel). The LSTM's ``forget_bias`` starts the forget gate's bias at a value of choice (an
initialisation: every backend runs it).

The hand-written ``"torch"`` backward (and the fused one) is not itself differentiable: under
``create_graph=True`` (double backward) it recomputes the step-by-step recurrence through autograd and returns
that one's gradients (recurrence.common.recomputed_grads). Under the ``torch.func`` transforms and
forward-mode AD, which it is not written for either, "torch" runs the
step-by-step recurrence through autograd, and "auto" runs torch.nn's kernel or, under ``vmap`` and forward-mode
AD (which torch.nn's recurrences do not all take), the step-by-step recurrence
(recurrence.common.stepwise_under_transform). ``torch.export`` traces the custom ops as they are.
"""

from __future__ import annotations

import functools
import importlib.util
import os

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import PackedSequence
from torch.torch_version import TorchVersion

from . import recurrence
from .cell_options import CellOptions
from .checks import check_backend, check_choice, check_layer_args, check_no_projection, check_variant_backend
from .inputs import Sequence, autocast_dtype, check_pair, check_state, refuse_symbolic_trace, to_time_major
from .recording import Recorder
from .recurrence.common import (
    differentiating_transform,
    stepwise_scan,
    stepwise_under_transform,
    traced_by_transform,
)
from .recurrence.variants import draw_masks, nonlinearity_of

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]
_paths: Recorder[str] = Recorder()


def recorded_paths():
    """The path each layer call runs while the block runs, a list in call order: "native" (torch.nn's own kernel:
    cuDNN, oneDNN or ATen's), "triton" (the fused kernels), "torch" (rnnlab's hand-written recurrences) or
    "stepwise" (the step-by-step recurrence through autograd: the cell options' specification on "torch", gradient
    analysis, torch.func transforms). What ``backend="auto"`` chose, for the benchmarks' notes."""
    return _paths.recording()


def _ran(path: str) -> None:
    """Record a layer call's ``path`` (one of recorded_paths' names) where recorded_paths asks; not in a graph that
    torch.compile traces (it would guard on the recorders and compile again once they are gone)."""
    if not torch.compiler.is_compiling():
        _paths.add(path)


def resolve_backend(backend: str, mode: str, x: torch.Tensor, *, training: bool, packed: bool = False,
                    proj: bool = False, autocast: bool = False, hidden_size: int = 0, batch: int = 0) -> str:
    """The backend that runs for a module of ``mode`` ("LSTM", "GRU", "RNN_TANH", "RNN_RELU") configured
    with ``backend``, on input like ``x`` (of ``batch`` sequences, into ``hidden_size`` units); ``training``:
    gradients will be taken; ``autocast``: inside ``torch.autocast`` for x's device, where "auto" leaves
    the dtypes to torch.nn's own kernel. Under a ``torch.func`` transform (grad, vmap, jacrev, ...) or
    forward-mode AD "auto" runs the native kernel too (:func:`traced_by_transform`), and under ``torch.jit.trace``
    and the TorchScript ``torch.onnx.export``: their graphs then hold torch.nn's own ops, which load and export
    without rnnlab, and trace alike with and without gradients (torch.jit.trace's check reruns without them).

    "auto" follows the measurements in benchmarks/README.md. On CUDA it runs the fused kernels where they beat
    cuDNN (:func:`fused_beats_cudnn`; under ``create_graph=True`` their backward recomputes the step-by-step
    recurrence, so a gradient penalty is faster on ``backend="native"``), and cuDNN elsewhere. On the CPU in
    fp32/fp64, training steps run on rnnlab's path wherever PyTorch has no fused kernel: GRU and RNN (ATen runs
    them step by step through autograd) and LSTM with packed input or ``proj_size`` (which oneDNN's fused LSTM
    does not take); rnnlab's training step was faster in every such case measured on an AMD EPYC, and about even
    with torch.nn's on an Intel Xeon with AVX-512 (benchmarks/README.md). Inference and the plain LSTM on the
    CPU run PyTorch's native kernel, except that under ``torch.compile`` the plain LSTM trains on rnnlab's path:
    Inductor fails on oneDNN's LSTM training op (torch 2.13: "expected Tensor() for op:
    aten.mkldnn_rnn_layer", torch.nn.LSTM's own failure), which rnnlab's custom ops do not meet.
    """
    if backend != "auto":
        return backend
    if autocast or traced_by_transform() or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        return "native"
    if x.is_cuda:
        return "triton" if fused_beats_cudnn(mode, x, hidden_size, batch, proj) else "native"
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64) or not training:
        return "native"
    if mode == "LSTM" and not (packed or proj) and not torch.compiler.is_compiling():
        return "native"
    return "torch"


def fused_beats_cudnn(mode: str, x: torch.Tensor, hidden_size: int, batch: int, proj: bool) -> bool:
    """Whether the fused kernels run a layer of ``mode`` on input like ``x`` faster than cuDNN: never on the CPU; on
    CUDA, :func:`rnnlab.cuda_choice.fused_beats_cudnn_on_cuda`, imported at the first CUDA call (marking it a
    constant for torch.compile imports torch._dynamo, 1.2 s that ``import rnnlab`` need not spend)."""
    if not x.is_cuda:
        return False
    from .cuda_choice import fused_beats_cudnn_on_cuda

    return fused_beats_cudnn_on_cuda(mode, x.dtype, x.device, hidden_size, batch, proj)


# Triton reads TRITON_INTERPRET when it is imported, which importing torch already does: the interpreter runs the
# kernels on the CPU only if it was set by then
_INTERPRET_AT_IMPORT = os.environ.get("TRITON_INTERPRET") == "1"


@functools.cache
def triton_installed() -> bool:
    """Whether Triton, the fused kernels' compiler (optional where it has no wheel), is installed."""
    return importlib.util.find_spec("triton") is not None


def interpreter_problem(triton_version: str, numpy_version: str) -> str | None:
    """Why Triton's interpreter at ``triton_version`` cannot run the fused kernels beside NumPy at
    ``numpy_version``, or None: before Triton 3.7 it turns a loaded scalar (a sequence's length, a loop's bound)
    into a Python int with int() of a one-element array, which NumPy 2.4 refuses."""
    if TorchVersion(triton_version) < "3.7" and TorchVersion(numpy_version) >= "2.4":
        return (f"Triton {triton_version}'s interpreter cannot run the fused kernels with NumPy {numpy_version} (it "
                "converts one-element arrays to Python ints, which NumPy 2.4 refuses): install 'numpy<2.4' or "
                "Triton >= 3.7, or use backend='torch' or 'native'")
    return None


def _installed_interpreter_problem() -> str | None:
    """interpreter_problem of the installed Triton and NumPy, where the interpreter runs the kernels; read once, at
    import, so that the forward reads a constant (torch 2.8's Dynamo cannot trace a version comparison)."""
    if not _INTERPRET_AT_IMPORT or not triton_installed():
        return None
    from importlib.metadata import PackageNotFoundError, version

    try:
        return interpreter_problem(version("triton"), version("numpy"))
    except PackageNotFoundError as err:  # the interpreter needs NumPy: Triton says so when it runs
        return f"Triton's interpreter needs NumPy, which is not installed ({err})"


_INTERPRETER_PROBLEM = _installed_interpreter_problem()


class _RecurrentLayer(CellOptions):
    """The forward pass shared by :class:`RNN`, :class:`LSTM` and :class:`GRU`."""

    # set by rnnlab.analysis.record_states while it records: _observe.begin(seq) at each call, then
    # _observe(index, t, h_t) at every step of layer-direction index
    _observe = None

    @property
    def _fused_variants(self) -> bool:
        """Whether the fused kernels run the cell options (layer norm, zoneout, recurrent dropout): without a
        projection."""
        return self.proj_size == 0

    def _layer_variant(self, **options) -> None:
        """Turn on the cell-variant options, with layer-norm parameters per layer and direction."""
        suffixes = [self._weight_suffix(index) for index in range(len(self._all_weights))]
        self._set_variant(options, suffixes, self.weight_ih_l0.shape[0], self.hidden_size, self.mode == "LSTM")

    def _weight_suffix(self, index: int) -> str:
        """What names layer-direction ``index``'s weights: "l0", "l0_reverse", ..."""
        return self._all_weights[index][0].removeprefix("weight_ih_")

    def forward(self, input: torch.Tensor | PackedSequence, hx: State | None = None):
        """Run the layer; arguments and outputs exactly as torch.nn's (see the class docstring there).

        Inside ``torch.autocast``, "auto" runs torch.nn's kernel (its dtypes exactly), or with a cell option on
        (which torch.nn's kernel has not) the hand-written recurrence as "torch" does; the "torch" and "triton"
        backends run in the autocast dtype, input, states and weights converted to it (as cuDNN's RNN does under
        CUDA autocast), with gradients reaching the parameters in their own dtype. Autocast leaves float64 alone: a
        float64 module runs in float64, and a float64 input or state of another module is refused."""
        owner, like = type(self).__name__, self.weight_ih_l0  # not _get_name(): torch 2.8's Dynamo cannot trace it
        refuse_symbolic_trace(owner, input)
        amp = autocast_dtype(like)
        seq = to_time_major(owner, input, self.input_size, self.batch_first, like, amp is not None)
        hx = self._check_hx(hx, seq, like, amp is not None)
        training = torch.is_grad_enabled() and (
            seq.data.requires_grad or any(p.requires_grad for p in self._flat_weights)
        )
        check_variant_backend(owner, self.variant, self.backend, self._fused_variants)
        if self._stepwise():
            _ran("stepwise")
            if self._observe is not None:
                self._observe.begin(seq)
            return self._forward_torch(seq, hx, dtype=amp)
        if self.variant.stepwise:
            fused = self._fused_options(seq.data, amp)
            _ran("triton" if fused else "torch")
            return self._forward_torch(seq, hx, fused, amp)
        if seq.batch == 0:  # an empty batch: torch.nn's empty outputs, from the reference path (no kernel to launch)
            _ran("torch")
            return self._forward_torch(seq, hx, dtype=amp)
        backend = resolve_backend(self.backend, self.mode, seq.data, training=training,
                                  packed=seq.batch_sizes is not None, proj=self.proj_size > 0, autocast=amp is not None,
                                  hidden_size=self.hidden_size, batch=seq.batch)
        if backend == "native" and self.variant.weight_dropout and self.training:  # "auto": a backend that takes
            backend = "triton" if seq.data.is_cuda and triton_installed() else "torch"  # the dropped weights
        _ran(backend)
        if backend == "native":
            return super().forward(input, hx)
        return self._forward_torch(seq, hx, backend == "triton", amp)  # the recurrences run with autocast off

    def _stepwise(self) -> bool:
        """Whether this call runs the step-by-step recurrence (rnnlab.recurrence.variants): to record states
        for gradient analysis, for the cell options on backend "torch" (their specification, which takes
        double backward) or under a ``torch.func`` transform or forward-mode AD, and for plain layers where
        those transforms need it (:func:`stepwise_under_transform`). Elsewhere the options run on the fused
        kernels or the hand-written recurrences (_fused_options)."""
        if self._observe is not None:
            return True
        if not traced_by_transform():
            return self.variant.stepwise and self.backend == "torch"
        # weight dropout in training takes "auto" off torch.nn's kernel, onto the hand-written path (forward)
        dropped = self.backend == "auto" and bool(self.variant.weight_dropout) and self.training
        return self.variant.stepwise or dropped or stepwise_under_transform(self.backend)

    def _fused_options(self, x: torch.Tensor, dtype: torch.dtype | None = None) -> bool:
        """Whether the cell options, when not step by step, run on the fused kernels rather than the hand-written
        recurrences: on "triton", and on "auto" for CUDA input with Triton installed and without proj_size,
        layer norm only where the persistent regime runs it (kernels.dispatch.norm_fits, for ``dtype``, x's if
        None)."""
        if self.backend == "triton":
            return True
        if not (self.backend == "auto" and x.is_cuda and triton_installed() and self._fused_variants):
            return False
        if not self.variant.layer_norm:
            return True
        from .kernels.dispatch import norm_fits

        cell = "rnn" if self.mode.startswith("RNN") else self.mode.lower()
        masked = any((self.variant.zoneout, self.variant.zoneout_cell, self.variant.recurrent_dropout))
        return norm_fits(cell, dtype or x.dtype, self.hidden_size, masked)

    def _state_shapes(self, batch: int) -> list[tuple[int, ...]]:
        layers = self.num_layers * (2 if self.bidirectional else 1)
        out = self.proj_size or self.hidden_size
        shapes = [(layers, batch, out)]
        if self.mode == "LSTM":
            shapes.append((layers, batch, self.hidden_size))
        return shapes

    def _check_hx(self, hx: object, seq: Sequence, like: torch.Tensor, autocast: bool) -> State | None:
        if hx is None:
            return None
        owner, shapes = type(self).__name__, self._state_shapes(seq.batch)
        if self.mode == "LSTM":
            pair = check_pair(owner, hx)
            for name, h, shape in zip(("h_0", "c_0"), pair, shapes, strict=True):
                check_state(owner, f"hx[{name}]", h, shape, seq.unbatched, like, autocast)
            return tuple(pair)
        check_state(owner, "hx", hx, shapes[0], seq.unbatched, like, autocast)
        return hx

    def _initial_states(self, seq: Sequence, hx: State | None) -> list[torch.Tensor]:
        """Initial states in rnnlab's layout: a list of (L * D, B, F) tensors (h, and c for LSTM)."""
        if hx is None:
            return [seq.data.new_zeros(shape) for shape in self._state_shapes(seq.batch)]
        states = list(hx) if isinstance(hx, tuple) else [hx]
        if seq.unbatched:
            states = [h.unsqueeze(1) for h in states]
        return [seq.sort_state(h) for h in states]

    def _layer_weights(self, index: int, dtype: torch.dtype | None = None) -> list[torch.Tensor | None]:
        """[w_ih, w_hh, b_ih, b_hh, w_hr] of layer-direction ``index`` (converted to ``dtype`` if given);
        absent ones are None. In training with weight dropout, w_hh with a fresh DropConnect mask."""
        weights = [getattr(self, name) for name in self._all_weights[index]]
        if self.variant.weight_dropout and self.training:
            weights[1] = F.dropout(weights[1], self.variant.weight_dropout, training=True)
        if dtype is not None:
            weights = [w.to(dtype) for w in weights]
        w_ih, w_hh = weights[:2]
        b_ih, b_hh = weights[2:4] if self.bias else (None, None)
        w_hr = weights[-1] if self.proj_size > 0 else None
        return [w_ih, w_hh, b_ih, b_hh, w_hr]

    def _scan(self, x, states, index, batch_sizes, reverse, fused, dtype):
        weights = self._layer_weights(index, dtype)
        norms = self._norms(self._weight_suffix(index), self.mode == "LSTM", dtype)
        if self._stepwise():
            observe = None if self._observe is None else functools.partial(self._observe, index)
            return stepwise_scan(self.mode, x, states, weights, norms, self.variant, batch_sizes,
                                              reverse, self.training, observe)
        w_ih, w_hh, b_ih, b_hh, w_hr = weights
        impl, options = recurrence, {}
        if self.variant.stepwise:  # layer norm, zoneout, recurrent dropout
            options["masks"] = draw_masks(self.variant, x, states, self.training)
        if norms is not None:
            options["norms"] = norms
        if fused:
            if x.device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
                raise NotImplementedError(
                    f"{self._get_name()}: backend='triton' runs on CUDA tensors (on the CPU only under "
                    f"TRITON_INTERPRET=1); got a tensor on {x.device}. Use backend='torch' or 'native'"
                )
            if x.device.type != "cuda" and not _INTERPRET_AT_IMPORT:
                raise NotImplementedError(
                    f"{self._get_name()}: TRITON_INTERPRET=1 was set after rnnlab was imported, and Triton reads it "
                    f"when imported (with torch); set it before importing torch and rnnlab, as in the shell"
                )
            if x.device.type != "cuda" and _INTERPRETER_PROBLEM:
                raise NotImplementedError(f"{self._get_name()}: {_INTERPRETER_PROBLEM}")
            if differentiating_transform():
                raise NotImplementedError(
                    f"{self._get_name()}: backend='triton' cannot run under a differentiating torch.func transform "
                    f"(grad, vjp, jacrev, jvp, ...): PyTorch's autograd of custom ops, which the fused kernels are, "
                    f"does not take them. Use backend='auto' or 'torch', which run the step-by-step recurrence there"
                )
            from . import kernels as impl
        if self.mode == "LSTM":
            y, h, c = impl.lstm_scan(x, *states, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, reverse, **options)
            return y, [h, c]
        if self.mode == "GRU":
            y, h = impl.gru_scan(x, *states, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse, **options)
        else:
            y, h = impl.rnn_scan(x, *states, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse, nonlinearity_of(self.mode),
                                 **options)
        return y, [h]

    def _forward_torch(self, seq: Sequence, hx: State | None, fused: bool = False, dtype: torch.dtype | None = None):
        """The layer on rnnlab's recurrences (``fused``: the Triton kernels), the input, initial states and
        weights converted to ``dtype`` if given."""
        init = [h if dtype is None else h.to(dtype) for h in self._initial_states(seq, hx)]  # each (L * D, B, F)
        directions = 2 if self.bidirectional else 1
        finals: list[list[torch.Tensor]] = [[] for _ in init]
        x = seq.x if dtype is None else seq.x.to(dtype)
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(directions):
                index = layer * directions + direction
                states = [h[index] for h in init]
                y, last = self._scan(x, states, index, seq.batch_sizes, direction == 1, fused, dtype)
                outputs.append(y)
                for kept, h in zip(finals, last, strict=True):
                    kept.append(h)
            x = outputs[0] if directions == 1 else torch.cat(outputs, dim=2)  # (T, B, D * F)
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                x = F.dropout(x, self.dropout, training=True)
        states = [seq.unsort_state(torch.stack(kept)) for kept in finals]  # each (L * D, B, F)
        if seq.unbatched:
            states = [h.squeeze(1) for h in states]
        return seq.restore(x), (tuple(states) if self.mode == "LSTM" else states[0])


class RNN(_RecurrentLayer, nn.RNN):
    """Elman RNN with tanh or relu, a drop-in for :class:`torch.nn.RNN` with a ``backend`` choice."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device=None,
        dtype=None,
        *,
        backend: str = "auto",
        layer_norm: bool = False,
        zoneout: float = 0.0,
        recurrent_dropout: float = 0.0,
        weight_dropout: float = 0.0,
        proj_size: None = None,
    ):
        owner = type(self).__name__
        check_no_projection(owner, proj_size)
        check_layer_args(owner, input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional)
        check_choice(owner, "nonlinearity", nonlinearity, recurrence.NONLINEARITIES)
        backend = check_backend(owner, backend, fused=True)
        super().__init__(
            input_size, hidden_size, num_layers=num_layers, nonlinearity=nonlinearity, bias=bias,
            batch_first=batch_first, dropout=dropout, bidirectional=bidirectional, device=device, dtype=dtype,
        )
        self.backend = backend
        self._layer_variant(layer_norm=layer_norm, zoneout=zoneout, recurrent_dropout=recurrent_dropout,
                            weight_dropout=weight_dropout)


class LSTM(_RecurrentLayer, nn.LSTM):
    """Long short-term memory, a drop-in for :class:`torch.nn.LSTM` (``proj_size`` included) with a
    ``backend`` choice."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device=None,
        dtype=None,
        *,
        backend: str = "auto",
        layer_norm: bool = False,
        zoneout: float = 0.0,
        zoneout_cell: float = 0.0,
        recurrent_dropout: float = 0.0,
        weight_dropout: float = 0.0,
        forget_bias: float = 0.0,
    ):
        owner = type(self).__name__
        check_layer_args(
            owner, input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, proj_size
        )
        backend = check_backend(owner, backend, fused=True)
        super().__init__(
            input_size, hidden_size, num_layers=num_layers, bias=bias, batch_first=batch_first,
            dropout=dropout, bidirectional=bidirectional, proj_size=proj_size, device=device, dtype=dtype,
        )
        self.backend = backend
        self._layer_variant(layer_norm=layer_norm, zoneout=zoneout, zoneout_cell=zoneout_cell,
                            recurrent_dropout=recurrent_dropout, weight_dropout=weight_dropout)
        self._set_forget_bias(forget_bias, bias)


class GRU(_RecurrentLayer, nn.GRU):
    """Gated recurrent unit, a drop-in for :class:`torch.nn.GRU` with a ``backend`` choice."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device=None,
        dtype=None,
        *,
        backend: str = "auto",
        layer_norm: bool = False,
        zoneout: float = 0.0,
        recurrent_dropout: float = 0.0,
        weight_dropout: float = 0.0,
        proj_size: None = None,
    ):
        owner = type(self).__name__
        check_no_projection(owner, proj_size)
        check_layer_args(owner, input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional)
        backend = check_backend(owner, backend, fused=True)
        super().__init__(
            input_size, hidden_size, num_layers=num_layers, bias=bias, batch_first=batch_first,
            dropout=dropout, bidirectional=bidirectional, device=device, dtype=dtype,
        )
        self.backend = backend
        self._layer_variant(layer_norm=layer_norm, zoneout=zoneout, recurrent_dropout=recurrent_dropout,
                            weight_dropout=weight_dropout)
