"""GEMMs shared by every recurrence: the input projection before the time loop and the weight
gradients after it, each one matrix product over all timesteps."""

from __future__ import annotations

import torch


def input_projection(x: torch.Tensor, w_ih: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``x @ w_ih.T + bias`` for all timesteps at once: (T, B, I) -> (T, B, G), a fresh tensor."""
    T, B, I = x.shape
    x2 = x.reshape(T * B, I)
    out = torch.mm(x2, w_ih.t()) if bias is None else torch.addmm(bias, x2, w_ih.t())
    return out.view(T, B, -1)


def linear_grads(
    d_out: torch.Tensor, inputs: torch.Tensor, weight: torch.Tensor, need_input: bool, need_weight: bool
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Gradients of ``out = inputs @ weight.T`` summed over all timesteps.

    d_out: (T, B, G); inputs: (T, B, K); weight: (G, K). Returns (d_inputs (T, B, K), d_weight (G, K)).
    """
    G, K = weight.shape
    d2 = d_out.reshape(-1, G)
    d_inputs = torch.mm(d2, weight).view(inputs.shape) if need_input else None
    d_weight = torch.mm(d2.t(), inputs.reshape(-1, K)) if need_weight else None
    return d_inputs, d_weight


def bias_grad(d_out: torch.Tensor, need: bool) -> torch.Tensor | None:
    """Gradient of a bias added at every timestep: d_out (T, B, G) summed to (G,)."""
    return d_out.reshape(-1, d_out.shape[-1]).sum(0) if need else None


def clone_or_none(t: torch.Tensor | None) -> torch.Tensor | None:
    """A copy of ``t``, or None."""
    return None if t is None else t.clone()
