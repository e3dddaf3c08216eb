"""Cell variants torch.nn lacks, run step by step through autograd: layer normalisation, zoneout and
recurrent dropout. This is their specification; the fused kernels (rnnlab.kernels) also run them (layer
norm at small hidden sizes), zoneout and recurrent dropout from the same draws (Masks, drawn once per call by
draw_masks), and are tested against it.

- Layer normalisation (Ba et al. 2016, "Layer Normalization", section 3.1; as haste's LayerNormLSTM and
  LayerNormGRU): the input and the recurrent pre-activations of all gates are normalised separately, each
  with its own gain (the layer's biases b_ih, b_hh are added after), and the LSTM's cell state is
  normalised, with gain and bias, before its tanh (the state carried to the next step stays unnormalised):

      LSTM  gates = LN(x W_ih^T; a_ih) + b_ih + LN(h W_hh^T; a_hh) + b_hh;  c' = f c + i g
            h' = o tanh(LN(c'; a_c, b_c))                       (then h' W_hr^T when proj_size > 0)
      GRU   r, z, n as torch.nn.GRU with x W_ih^T and h W_hh^T each replaced by its LN
      RNN   h' = act(LN(x W_ih^T; a_ih) + b_ih + LN(h W_hh^T; a_hh) + b_hh)

- Zoneout (Krueger et al. 2017): in training each unit of a state keeps its previous value with
  probability p at each step, h_t = d h_{t-1} + (1 - d) h'_t with d ~ Bernoulli(p); in evaluation the
  expectation, h_t = p h_{t-1} + (1 - p) h'_t. ``zoneout`` acts on h (the output), ``zoneout_cell`` on the
  LSTM's c. The output at step t is the zoned-out h_t.
- Recurrent dropout (Gal and Ghahramani 2016, "variational" dropout): in training the state entering
  W_hh is multiplied by one dropout mask, drawn once per sequence and scaled by 1 / (1 - p); the GRU's
  z h_{t-1} term and the LSTM's c take the state unmasked (as Keras' recurrent_dropout).
- Weight dropout (DropConnect on W_hh, Wan et al. 2013, as AWD-LSTM's WeightDrop, Merity et al. 2018):
  in training each call multiplies W_hh by one dropout mask for the whole sequence. It changes only the
  weight the recurrence is given, so the layers apply it before any backend but torch.nn's own (which
  reads its weights itself) and it needs no step-by-step recurrence.

With every option off the step computes exactly the math of :mod:`rnnlab.recurrence` (the tests compare
them); it is also the path that exposes each step's state to gradient analysis (``observe``).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

EPS = 1e-5  # layer norm's epsilon, torch.nn.LayerNorm's default


@dataclass(frozen=True)
class Variant:
    """The options of a cell variant; all off gives the plain cell."""

    layer_norm: bool = False
    zoneout: float = 0.0  # probability that a unit of h keeps its previous value at a step
    zoneout_cell: float = 0.0  # the same for the LSTM's cell state c
    recurrent_dropout: float = 0.0  # dropout probability on the state entering W_hh
    weight_dropout: float = 0.0  # dropout probability on the entries of W_hh (DropConnect; layers only)

    @property
    def stepwise(self) -> bool:
        """Whether an option on changes the recurrence itself (layer norm, zoneout, recurrent dropout; weight
        dropout only changes the weight it is given): the step-by-step recurrence runs them all, the
        hand-written recurrences and the fused kernels zoneout and recurrent dropout (their Masks)."""
        return self.layer_norm or any((self.zoneout, self.zoneout_cell, self.recurrent_dropout))

    def describe(self, stepwise_only: bool = False) -> str:
        """The options that are on, as constructor arguments ("layer_norm=True, zoneout=0.1");
        ``stepwise_only``: those that need the step-by-step recurrence."""
        on = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if stepwise_only:
            on.pop("weight_dropout")
        return ", ".join(f"{name}={value!r}" for name, value in on.items() if value)


# One step of a cell: (x_t (b, G) input pre-activations, normalised and biased; h_in (b, P) the state
# entering W_hh; states [h (b, P), c (b, H)] before the step; weights; norms) -> new states
Step = Callable[..., list[torch.Tensor]]


def _recurrent(h_in: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor | None,
               norms: dict[str, torch.Tensor] | None) -> torch.Tensor:
    """h_in W_hh^T, layer-normalised with the gain ``norms["hh"]`` if given, plus b_hh: (b, G)."""
    r = h_in @ w_hh.T
    if norms is not None:
        r = F.layer_norm(r, r.shape[-1:], norms["hh"], eps=EPS)
    return r if b_hh is None else r + b_hh


def lstm_step(x_t, h_in, states, w_hh, b_hh, w_hr, norms, nonlinearity=None):
    """One LSTM step; see the module docstring for the math."""
    c = states[1]
    gates = x_t + _recurrent(h_in, w_hh, b_hh, norms)  # (b, 4H)
    i, f, g, o = gates.chunk(4, 1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)  # (b, H)
    shown = c if norms is None else F.layer_norm(c, c.shape[-1:], norms["c"], norms["c_bias"], eps=EPS)
    h = torch.sigmoid(o) * torch.tanh(shown)
    return [h if w_hr is None else h @ w_hr.T, c]


def gru_step(x_t, h_in, states, w_hh, b_hh, w_hr, norms, nonlinearity=None):
    """One GRU step (torch.nn.GRU's gate order r, z, n; b_hn inside r's product)."""
    x_r, x_z, x_n = x_t.chunk(3, 1)
    h_r, h_z, h_n = _recurrent(h_in, w_hh, b_hh, norms).chunk(3, 1)  # each (b, H)
    r = torch.sigmoid(x_r + h_r)
    z = torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)
    return [n + z * (states[0] - n)]  # (1 - z) n + z h


def rnn_step(x_t, h_in, states, w_hh, b_hh, w_hr, norms, nonlinearity="tanh"):
    """One Elman step with ``nonlinearity`` "tanh" or "relu"."""
    a = x_t + _recurrent(h_in, w_hh, b_hh, norms)
    return [torch.tanh(a) if nonlinearity == "tanh" else torch.relu(a)]


STEPS: dict[str, Step] = {"LSTM": lstm_step, "GRU": gru_step, "RNN_TANH": rnn_step, "RNN_RELU": rnn_step}


def nonlinearity_of(mode: str) -> str:
    """The nonlinearity, "tanh" or "relu", of an RNN ``mode`` ("RNN_TANH", "RNN_RELU"): what torch.nn's layer runs."""
    return mode.removeprefix("RNN_").lower()


@dataclass(frozen=True)
class Masks:
    """The random draws of one call of one layer direction (every backend that runs the variant takes them):

    dropout: (B, P) recurrent dropout's scaled mask (0 or 1 / (1 - p)), or None;
    zoneout, zoneout_cell: how much of the previous h (B, P) and c (B, H) each unit keeps at each step,
    ``h_t = lerp(h'_t, h_{t-1}, w)``: in training (T, B, F), 1 where the unit keeps its previous value and 0
    elsewhere; in evaluation (F,) filled with the rate (the expectation); None where the option is off.
    """

    dropout: torch.Tensor | None = None
    zoneout: torch.Tensor | None = None
    zoneout_cell: torch.Tensor | None = None

    @property
    def any(self) -> bool:
        """Whether any option drew something (an empty Masks is the plain cell's)."""
        return any(m is not None for m in (self.dropout, self.zoneout, self.zoneout_cell))

    def dropped(self, h: torch.Tensor) -> torch.Tensor:
        """``h`` (..., b, P) as W_hh takes it: times the first b rows of the dropout mask, if there is one."""
        return h if self.dropout is None else h * self.dropout[: h.shape[-2]]

    def zoneout_at(self, t: int, b: int) -> list[torch.Tensor | None]:
        """The zoneout weights of step ``t``'s first ``b`` rows, h's then c's: (b, F) each, or (F,), or None."""
        return [w if w is None or w.dim() == 1 else w[t, :b] for w in (self.zoneout, self.zoneout_cell)]


def draw_masks(variant: Variant, x: torch.Tensor, init: list[torch.Tensor], training: bool) -> Masks:
    """The Masks of a call on ``x`` (T, B, I) from the initial states ``init`` ([h0 (B, P)], and c0 (B, H) for
    the LSTM), in x's dtype and device. Draws the dropout mask first, then zoneout's uniforms step by step,
    each step's h draw before its c draw (what an LSTMCell called once a step draws). The draws are taken in
    fp32 whatever the dtype, so a seed gives every dtype the same masks."""
    (T, B, _), like = x.shape, x
    P, H = init[0].shape[1], init[1].shape[1] if len(init) == 2 else 0
    new = functools.partial(torch.empty, dtype=torch.float32, device=like.device)
    dropout = None
    if training and variant.recurrent_dropout > 0:
        keep = 1 - variant.recurrent_dropout
        dropout = torch.bernoulli(new(B, P), keep).to(like.dtype) / keep  # out of place: vmap draws per sample
    rates = {"zoneout": variant.zoneout, "zoneout_cell": variant.zoneout_cell if H else 0.0}
    widths = {"zoneout": P, "zoneout_cell": H}
    if not training:
        return Masks(dropout, **{k: like.new_full((widths[k],), p) if p else None for k, p in rates.items()})
    on = [k for k, p in rates.items() if p]
    if len(on) == 2 and P == H:  # one draw a step: h's (B, H) then c's
        uniform = dict(zip(on, torch.rand(T, 2, B, H, dtype=torch.float32, device=like.device).unbind(1),
                           strict=True))
    else:  # one state, or different widths (proj_size): all h's draws, then all c's
        uniform = {k: torch.rand(T, B, widths[k], dtype=torch.float32, device=like.device) for k in on}
    return Masks(dropout, **{k: (uniform[k] < rates[k]).to(like.dtype) if k in uniform else None for k in rates})


def zoneout(prev: torch.Tensor, new: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """``new`` with each unit moved to ``prev`` by ``weight`` (Masks: 1 keeps ``prev`` exactly, 0 ``new``)."""
    return new if weight is None else torch.lerp(new, prev, weight)


def variant_scan(
    mode: str,
    x: torch.Tensor,
    init: list[torch.Tensor],
    weights: list[torch.Tensor | None],
    norms: dict[str, torch.Tensor] | None,
    variant: Variant,
    batch_sizes: list[int] | None,
    reverse: bool,
    training: bool,
    observe: Callable[[int, torch.Tensor], None] | None = None,
    masks: Masks | None = None,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One direction of one layer of ``mode`` ("LSTM", "GRU", "RNN_TANH", "RNN_RELU") with ``variant``.

    x: (T, B, I), rows sorted by decreasing length when ``batch_sizes`` (packed input) is given;
    init: [h0 (B, P)] (and c0 (B, H) for LSTM); weights: [w_ih, w_hh, b_ih, b_hh, w_hr] (None where
    absent; without w_ih, x holds the input projections (T, B, G), normalised already); norms: the layer-norm
    gains {"ih", "hh"} (G,) and, for LSTM, {"c", "c_bias"} (H,), or None;
    ``training``: zoneout samples and recurrent dropout masks (else the expectation, no mask), drawn here
    (draw_masks) unless ``masks`` gives them; ``observe(t, h_t)``: called with every step's new state h_t
    (b_t, P), for gradient analysis.
    Returns y (T, B, P) (zero at padded steps) and the final states, each row's after its own last step.
    """
    T, B, _ = x.shape
    w_ih, w_hh, b_ih, b_hh, w_hr = weights
    step = STEPS[mode]
    nonlinearity = nonlinearity_of(mode)
    if w_ih is None:  # x holds the input projections, normalised already (the hand-written recurrences' form)
        xs = x
    else:
        xs = x @ w_ih.T  # (T, B, G) every step's input pre-activations in one GEMM
        if norms is not None:
            xs = F.layer_norm(xs, xs.shape[-1:], norms["ih"], eps=EPS)
    if b_ih is not None:
        xs = xs + b_ih
    xs = xs.unbind(0)  # T views (B, G): one backward node for all, where indexing xs[t] makes a (T, B, G) each
    if masks is None:
        masks = draw_masks(variant, x, init, training)
    sizes = batch_sizes if batch_sizes is not None else [B] * T
    states = list(init)  # each (B, F): active rows updated, finished (or not yet started) rows kept
    outputs: list[torch.Tensor] = [x.new_zeros(0)] * T
    for t in range(T - 1, -1, -1) if reverse else range(T):
        b = sizes[t]
        prev = [s[:b] for s in states]
        new = step(xs[t][:b], masks.dropped(prev[0]), prev, w_hh, b_hh, w_hr, norms, nonlinearity)
        new = [zoneout(p, n, w) for p, n, w in zip(prev, new, masks.zoneout_at(t, b), strict=False)]
        if observe is not None:
            observe(t, new[0])
        states = [n if b == B else torch.cat((n, s[b:])) for n, s in zip(new, states, strict=True)]
        outputs[t] = new[0] if b == B else F.pad(new[0], (0, 0, 0, B - b))
    return torch.stack(outputs), states
