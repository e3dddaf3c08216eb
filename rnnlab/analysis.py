"""Gradient analysis: how the gradient of a loss reaches each timestep's hidden state.

The norm of dL/dh_t over t shows vanishing and exploding gradients directly (Pascanu et al. 2013, "On the
difficulty of training recurrent neural networks"): with the loss on the last outputs only, a tanh RNN's
norms fall off geometrically into the past, an LSTM's much more slowly. h_t is the state after step t, so
dL/dh_t is the total gradient, through step t's output and through every later step.

Usage, on any model containing rnnlab layers::

    with rnnlab.analysis.record_states(model) as states:
        loss = criterion(model(x), target)
    norms = states.gradient_norms(loss)  # {"encoder": (L * D, T, B), ...}
    rnnlab.analysis.plot_gradient_norms(norms, "gradients.png")

While recording, the layers run rnnlab's step-by-step recurrence through autograd
(:mod:`rnnlab.recurrence.variants`, the same math as every backend), so each step's state is a node of the
graph; outside the ``with`` block nothing changes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from .inputs import Sequence
from .layers import _RecurrentLayer


class _Call:
    """The states one call of a layer produced: h_t (b_t, P) for each (layer-direction, t)."""

    def __init__(self, layer: _RecurrentLayer, seq: Sequence):
        self.seq = seq
        self.shape = (layer.num_layers * (2 if layer.bidirectional else 1), seq.x.shape[0], seq.batch)
        self.states: dict[tuple[int, int], torch.Tensor] = {}

    def norms(self, grads: dict[tuple[int, int], torch.Tensor]) -> torch.Tensor:
        """(L * D, T, B) norms of the gradients, in the caller's batch order; NaN where a (packed)
        sequence has no step t."""
        like = next(iter(self.states.values()))
        out = torch.full(self.shape, float("nan"), dtype=torch.float64, device=like.device)
        for (index, t), g in grads.items():
            out[index, t, : g.shape[0]] = g.double().norm(dim=-1)
        if self.seq.packed is not None and self.seq.packed.unsorted_indices is not None:
            out = out.index_select(2, self.seq.packed.unsorted_indices.to(out.device))
        return out


class StateRecorder:
    """The states recorded by :func:`record_states`, by layer name (as ``named_modules`` gives it).

    A layer called several times in the block (a decoder run one step at a time, a sequence fed in
    chunks) has its calls joined along time, in call order, when they share layers, directions and batch
    size; otherwise each call has a key of its own, "name[0]" ... "name[k-1]"."""

    def __init__(self):
        self.calls: dict[str, list[_Call]] = {}
        self.unrecorded = 0  # calls made with gradients disabled (a warm-up under torch.no_grad()): no states

    def _begin(self, name: str, layer: _RecurrentLayer, seq: Sequence) -> None:
        self.calls.setdefault(name, []).append(_Call(layer, seq))

    def _step(self, name: str, index: int, t: int, h: torch.Tensor) -> None:
        self.calls[name][-1].states[(index, t)] = h

    def gradient_norms(self, loss: torch.Tensor, retain_graph: bool = False) -> dict[str, torch.Tensor]:
        """||dloss/dh_t|| for every recorded layer: {name: (L * D, T, B) float64}, NaN where a packed
        sequence has no step t, zero where the loss does not depend on h_t. ``loss`` must be a scalar computed
        from the recorded calls (those made with gradients enabled); the graph is freed afterwards unless
        ``retain_graph``."""
        if loss.dim() != 0:
            raise ValueError(f"gradient_norms: loss must be a scalar tensor; got shape {tuple(loss.shape)}")
        entries = [(key, call, step) for key, call in self._keyed() for step in call.states]
        if not entries:
            unrecorded = (f" with gradients enabled ({self.unrecorded} call(s) ran with them disabled, under "
                          "torch.no_grad() or inference_mode, and are not recorded)" if self.unrecorded else "")
            raise ValueError(f"gradient_norms: no rnnlab layer ran inside the record_states block{unrecorded}")
        states = [call.states[step] for _, call, step in entries]
        if not all(h.requires_grad for h in states):
            raise ValueError("gradient_norms: the recorded states do not require grad; record with gradients "
                             "enabled and with the input or some parameter requiring grad")
        grads = torch.autograd.grad(loss, states, retain_graph=retain_graph, allow_unused=True)
        if all(g is None for g in grads):
            raise ValueError("gradient_norms: loss does not depend on any recorded state; compute it from the "
                             "outputs of calls made inside the record_states block")
        grads = [torch.zeros_like(h) if g is None else g for h, g in zip(states, grads, strict=True)]
        per_call: dict[str, dict[tuple[int, int], torch.Tensor]] = {}
        for (key, _, step), g in zip(entries, grads, strict=True):
            per_call.setdefault(key, {})[step] = g
        norms = {key: call.norms(per_call[key]) for key, call in self._keyed() if call.states}
        for name, calls in self.calls.items():
            if len(calls) > 1 and len({(c.shape[0], c.shape[2]) for c in calls}) == 1:
                norms[name] = torch.cat([norms.pop(f"{name}[{k}]") for k in range(len(calls))], dim=1)
        return norms

    def _keyed(self) -> Iterator[tuple[str, _Call]]:
        for name, calls in self.calls.items():
            for k, call in enumerate(calls):
                yield (name if len(calls) == 1 else f"{name}[{k}]"), call


class _Observer:
    """What a layer calls while recorded: ``begin(seq)`` once a call, then ``(index, t, h_t)`` each step; a call
    made with gradients disabled is counted, not recorded (its states have no gradient to take)."""

    def __init__(self, recorder: StateRecorder, name: str, layer: _RecurrentLayer):
        self.recorder, self.name, self.layer = recorder, name, layer
        self.recording = False

    def begin(self, seq: Sequence) -> None:
        self.recording = torch.is_grad_enabled()
        if self.recording:
            self.recorder._begin(self.name, self.layer, seq)
        else:
            self.recorder.unrecorded += 1

    def __call__(self, index: int, t: int, h: torch.Tensor) -> None:
        if self.recording:
            self.recorder._step(self.name, index, t, h)


@contextlib.contextmanager
def record_states(model: nn.Module) -> Iterator[StateRecorder]:
    """Record every step's hidden state of each rnnlab RNN/LSTM/GRU layer in ``model`` (the model itself
    may be one) while the block runs; then :meth:`StateRecorder.gradient_norms` takes a loss."""
    layers = [(name or type(m).__name__, m) for name, m in model.named_modules() if isinstance(m, _RecurrentLayer)]
    if not layers:
        raise ValueError(f"record_states: {type(model).__name__} contains no rnnlab RNN, LSTM or GRU layer "
                         "(rnnlab.from_torch converts torch.nn ones)")
    if nested := [name for name, layer in layers if layer._observe is not None]:
        raise ValueError(f"record_states: an enclosing record_states block already records {', '.join(nested)}; "
                         "take the gradients from that block's recorder")
    recorder = StateRecorder()
    for name, layer in layers:
        layer._observe = _Observer(recorder, name, layer)
    try:
        yield recorder
    finally:
        for _, layer in layers:
            layer._observe = None


def geometric_mean_norms(norms: torch.Tensor) -> torch.Tensor:
    """(L * D, T) geometric means over the batch of (L * D, T, B) norms: 10 ** the mean of log10, skipping NaNs
    (steps a packed sequence lacks) and the sequences the loss does not depend on (zero at every step of that
    layer and direction), whose log10 of -inf would make the mean 0 at every t. A zero at some steps only is a
    vanished gradient and counts."""
    unused = norms.nan_to_num(0).eq(0).all(dim=1, keepdim=True)  # (L * D, 1, B)
    return 10 ** norms.masked_fill(unused, float("nan")).log10().nanmean(dim=2)


def plot_gradient_norms(norms: dict[str, torch.Tensor], path: str | Path) -> Path:
    """A plot of ||dL/dh_t|| against t on a log scale, the geometric mean over the batch (NaNs skipped), a line per
    layer and direction; written to ``path`` (PNG)."""
    if not norms:
        raise ValueError("plot_gradient_norms: norms is empty; pass what StateRecorder.gradient_norms(loss) returns "
                         "after a forward pass inside record_states")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, n in norms.items():  # (L * D, T, B)
        curves = geometric_mean_norms(n)  # (L * D, T)
        for index, curve in enumerate(curves):
            ax.plot(curve.cpu().numpy(), label=f"{name} #{index}" if len(curves) > 1 else name)
    ax.set_xlabel("timestep t")
    ax.set_yscale("log")
    ax.set_ylabel("||dL/dh_t|| (geometric mean over the batch)")
    ax.legend(fontsize="small")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
