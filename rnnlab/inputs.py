"""Validation of forward arguments and conversion between torch.nn's input forms and the time-major,
length-sorted padded layout that rnnlab's recurrences run on.

torch.nn layers accept a batched tensor (T, B, I) or (B, T, I) with ``batch_first``, an unbatched tensor
(T, I), or a ``PackedSequence``. :func:`to_time_major` turns each into a :class:`Sequence` and
:meth:`Sequence.restore` turns the output back into the caller's form.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise

import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from .errors import RNNDtypeError, RNNShapeError, RNNTypeError, describe
from .recurrence.common import has_autocast
from .recurrence.schedule import lengths_of

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


@dataclass
class Sequence:
    """A validated batch: the caller's ``data`` and, built on first use, ``x`` in rnnlab's layout (so the
    native backend, which takes the caller's input as it is, never pays for the conversion)."""

    data: torch.Tensor  # the caller's input tensor, or a PackedSequence's data (N, I)
    batch_sizes: list[int] | None  # active rows per timestep (packed input only)
    packed: PackedSequence | None  # the caller's PackedSequence, to rebuild the output like it
    unbatched: bool
    batch_first: bool
    _x: torch.Tensor | None = field(default=None, repr=False)  # x, once built

    @property
    def batch(self) -> int:
        """The number of sequences, B."""
        if self.batch_sizes is not None:
            return self.batch_sizes[0]
        return 1 if self.unbatched else self.data.shape[0 if self.batch_first else 1]

    @property
    def x(self) -> torch.Tensor:
        """The input time-major (T, B, I), padded, rows sorted by decreasing length when packed; built once
        (not with functools.cached_property, whose lock torch.compile cannot trace on Python 3.11)."""
        if self._x is None:
            if self.packed is not None:
                # in packed order, as torch.nn reads input.data; the indices only reorder the states
                self._x = pad_packed(PackedSequence(self.data, self.packed.batch_sizes))
            elif self.unbatched:
                self._x = self.data.unsqueeze(1)
            else:
                self._x = self.data.transpose(0, 1) if self.batch_first else self.data
        return self._x

    def restore(self, y: torch.Tensor) -> torch.Tensor | PackedSequence:
        """Turn an output (T, B, F) in rnnlab's layout into the caller's form."""
        if self.packed is not None:
            lengths = lengths_of(self.batch_sizes, self.batch)
            data, batch_sizes = pack_padded_sequence(y, lengths, enforce_sorted=True)[:2]
            return PackedSequence(data, batch_sizes, self.packed.sorted_indices, self.packed.unsorted_indices)
        if self.unbatched:
            return y.squeeze(1)
        return y.transpose(0, 1) if self.batch_first else y

    def sort_state(self, h: torch.Tensor) -> torch.Tensor:
        """Reorder a state (L, B, F) given in the caller's batch order into rnnlab's sorted order."""
        if self.packed is None or self.packed.sorted_indices is None:
            return h
        return h.index_select(1, self.packed.sorted_indices)

    def unsort_state(self, h: torch.Tensor) -> torch.Tensor:
        """Reorder a state (L, B, F) from rnnlab's sorted order back to the caller's batch order."""
        if self.packed is None or self.packed.unsorted_indices is None:
            return h
        return h.index_select(1, self.packed.unsorted_indices)


def pad_packed(packed: PackedSequence, batch_first: bool = False, padding_value: float = 0.0) -> torch.Tensor:
    """The padded tensor of ``pad_packed_sequence(packed, batch_first, padding_value)``, run eagerly under
    torch.compile. Dynamo traces into its ATen op before torch 2.13, whose trace rules skip the function
    (pytorch#162374): on torch 2.11 a compiled layer failed on packed input ("its data is not allocated yet").
    Disabled only while compiling: torch.compiler.disable imports torch._dynamo (1.2 s), which importing rnnlab
    does not."""
    pad = torch.compiler.disable(pad_packed_sequence) if torch.compiler.is_compiling() else pad_packed_sequence
    return pad(packed, batch_first=batch_first, padding_value=padding_value)[0]


def check_packed(owner: str, packed: PackedSequence) -> list[int]:
    """Validate a PackedSequence and return its batch sizes as a list."""
    data, batch_sizes = packed.data, packed.batch_sizes
    if data.dim() != 2:
        raise RNNShapeError(
            f"{owner}: input.data of a PackedSequence must be 2-D (sum of lengths, input_size); "
            f"got shape {tuple(data.shape)}"
        )
    if batch_sizes.dim() != 1 or batch_sizes.device.type != "cpu" or batch_sizes.dtype != torch.int64:
        raise RNNTypeError(
            f"{owner}: input.batch_sizes must be a 1-D int64 CPU tensor; got {describe(batch_sizes)}"
        )
    sizes = batch_sizes.tolist()
    if not sizes or sizes[-1] < 1 or any(a < b for a, b in pairwise(sizes)):
        raise RNNShapeError(
            f"{owner}: input.batch_sizes must be positive and non-increasing; got {sizes[:16]}"
            f"{' ...' if len(sizes) > 16 else ''}"
        )
    if sum(sizes) != data.shape[0]:
        raise RNNShapeError(
            f"{owner}: the PackedSequence is inconsistent: its batch_sizes add up to {sum(sizes)} rows "
            f"but input.data has {data.shape[0]}. This happens when pack_padded_sequence gets lengths "
            f"longer than the padded sequence: every length must be <= T"
        )
    for name in ("sorted_indices", "unsorted_indices"):
        idx = getattr(packed, name)
        if idx is not None and idx.shape != (sizes[0],):
            raise RNNShapeError(
                f"{owner}: input.{name} must have one entry per sequence ({sizes[0]}); got shape "
                f"{tuple(idx.shape)}"
            )
    return sizes


def refuse_symbolic_trace(owner: str, input: object) -> None:
    """torch.fx.symbolic_trace reaches a layer's or cell's forward with a Proxy only where its tracer does not keep
    the module whole (its default keeps torch.nn's own modules alone), and the forward branches on what a Proxy
    does not know: say what to do instead of failing deep inside."""
    if isinstance(input, torch.fx.Proxy):
        raise RNNTypeError(
            f"{owner}: torch.fx.symbolic_trace cannot trace into rnnlab's recurrent modules, whose forward depends on "
            "the input's dtype, device and shape; trace with a torch.fx.Tracer whose is_leaf_module also returns "
            "True for isinstance(m, (torch.nn.RNNBase, torch.nn.RNNCellBase)), or convert the model with "
            "rnnlab.to_torch first", "input"
        )


def autocast_dtype(like: torch.Tensor) -> torch.dtype | None:
    """The dtype ``torch.autocast`` runs matrix products in for parameters like ``like``, or None when it is off
    on their device's type (or autocast has no such device type, as "meta"), or they are float64, which autocast
    leaves alone as it does every float64 tensor."""
    if not has_autocast(like.device.type) or not torch.is_autocast_enabled(like.device.type):
        return None
    return None if like.dtype == torch.float64 else torch.get_autocast_dtype(like.device.type)


def check_tensor(owner: str, name: str, x: object, like: torch.Tensor, autocast: bool = False) -> torch.Tensor:
    """``x`` must be a floating-point tensor with the dtype and device of ``like`` (a parameter); under
    ``autocast`` (which converts it) of any floating-point dtype but float64, which autocast does not convert."""
    if not isinstance(x, torch.Tensor):
        raise RNNTypeError(f"{owner}: {name} must be a torch.Tensor; got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise RNNDtypeError(
            f"{owner}: {name} must be a floating-point tensor ({like.dtype}, like the parameters); "
            f"got {x.dtype}. Convert it with .to({like.dtype})"
        )
    if autocast and x.dtype == torch.float64:
        raise RNNDtypeError(
            f"{owner}: {name} is float64, which torch.autocast does not convert, and the parameters are "
            f"{like.dtype}; convert the tensor with .to({like.dtype})"
        )
    if x.dtype != like.dtype and not autocast:
        raise RNNDtypeError(
            f"{owner}: {name} has dtype {x.dtype} but the parameters are {like.dtype}; convert the "
            f"tensor with .to({like.dtype}) or the module with .to({x.dtype})"
        )
    if x.device != like.device:
        raise RNNTypeError(
            f"{owner}: {name} is on {x.device} but the parameters are on {like.device}; move one of "
            f"them with .to(device)"
        )
    return x


def to_time_major(owner: str, input: object, input_size: int, batch_first: bool, like: torch.Tensor,
                  autocast: bool = False) -> Sequence:
    """Validate a layer's ``input`` (against parameter ``like``; see check_tensor for ``autocast``) and bring
    it to rnnlab's layout."""
    if isinstance(input, PackedSequence):
        sizes = check_packed(owner, input)
        check_tensor(owner, "input.data", input.data, like, autocast)
        _check_features(owner, "input.data", input.data, input_size)
        return Sequence(input.data, sizes, input, unbatched=False, batch_first=batch_first)
    check_tensor(owner, "input", input, like, autocast)
    if input.dim() not in (2, 3):
        raise RNNShapeError(
            f"{owner}: input must be 3-D ({'B, T' if batch_first else 'T, B'}, input_size) or 2-D "
            f"(T, input_size) for one unbatched sequence; got {input.dim()}-D shape {tuple(input.shape)}"
        )
    _check_features(owner, "input", input, input_size)
    unbatched = input.dim() == 2
    T = input.shape[1 if batch_first and not unbatched else 0]
    if T == 0:  # torch.nn refuses it too; an empty batch (B == 0) gives torch.nn's empty outputs
        raise RNNShapeError(
            f"{owner}: input has sequence length 0 (shape {tuple(input.shape)}); an RNN needs at least one timestep"
        )
    return Sequence(input, None, None, unbatched=unbatched, batch_first=batch_first)


def _check_features(owner: str, name: str, x: torch.Tensor, input_size: int) -> None:
    if x.shape[-1] != input_size:
        raise RNNShapeError(
            f"{owner}: the last dimension of {name} must be input_size={input_size}; got shape "
            f"{tuple(x.shape)}"
        )


def check_state(owner: str, name: str, h: object, expected: tuple[int, ...], unbatched: bool, like: torch.Tensor,
                autocast: bool = False) -> None:
    """An initial state must have shape ``expected`` (batched form) and the parameters' dtype and device
    (any floating-point dtype under ``autocast``). For unbatched input the state is expected without its
    batch dimension."""
    check_tensor(owner, name, h, like, autocast)
    want = expected[:1] + expected[2:] if unbatched else expected
    if tuple(h.shape) != want:
        form = "(num_layers * num_directions, features)" if unbatched else (
            "(num_layers * num_directions, batch, features)"
        )
        raise RNNShapeError(f"{owner}: {name} must have shape {want} {form}; got {tuple(h.shape)}")


def check_pair(owner: str, hx: object) -> list:
    """An LSTM's ``hx`` must be a pair (h_0, c_0): its two items, not yet checked themselves."""
    if not isinstance(hx, (tuple, list)) or len(hx) != 2:
        got = f"{type(hx).__name__} of length {len(hx)}" if isinstance(hx, (tuple, list)) else describe(hx)
        raise RNNTypeError(f"{owner}: hx must be a tuple (h_0, c_0); got {got}")
    return list(hx)
