"""Which batch rows are active at which timestep, in which order, for one direction of one layer.

All recurrences in rnnlab run on time-major, padded tensors of shape (T, B, ...) whose batch rows are
sorted by decreasing length, exactly as inside a ``PackedSequence``. At step ``t`` only the first
``batch_sizes[t]`` rows are active, so every per-step operation works on a prefix of the batch and a
sequence's state stops changing after its last step. For the reverse direction a sequence starts at its
own last step: rows that join late take their incoming state from the initial state.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def lengths_of(batch_sizes: list[int], B: int) -> torch.Tensor:
    """Each row's sequence length, (B,) int64 on the CPU, from PackedSequence-style batch sizes."""
    sizes = torch.tensor(batch_sizes)
    return (sizes.unsqueeze(0) > torch.arange(B).unsqueeze(1)).sum(1)


@dataclass(frozen=True)
class Step:
    """One timestep of the scan.

    ``t``: time index; ``b``: number of active rows; ``src``: time index whose output is this step's
    incoming state (None: the initial state); ``b_src``: active rows at ``src`` (rows ``b_src:b`` take
    their incoming state from the initial state).
    """

    t: int
    b: int
    src: int | None
    b_src: int


class Schedule:
    """The order of steps of a scan over T timesteps and B rows.

    ``batch_sizes`` (non-increasing, ``batch_sizes[0] == B``) describes packed input; ``None`` means
    every row is active at every step.
    """

    def __init__(self, T: int, B: int, batch_sizes: list[int] | None, reverse: bool):
        self.T, self.B, self.reverse = T, B, reverse
        self.batch_sizes = list(batch_sizes) if batch_sizes is not None else [B] * T
        self.packed = batch_sizes is not None and self.batch_sizes[-1] != B
        order = range(T - 1, -1, -1) if reverse else range(T)
        steps, prev = [], None
        for t in order:
            b = self.batch_sizes[t]
            steps.append(Step(t, b, prev, self.batch_sizes[prev] if prev is not None else 0))
            prev = t
        self.steps: list[Step] = steps

    def new_buffer(self, *size: int, like: torch.Tensor) -> torch.Tensor:
        """A (T, B, *size) buffer; zero-filled when some rows are inactive, so padding stays finite."""
        alloc = torch.zeros if self.packed else torch.empty
        return alloc(self.T, self.B, *size, dtype=like.dtype, device=like.device)

    @staticmethod
    def incoming(buf: torch.Tensor, init: torch.Tensor, step: Step) -> torch.Tensor:
        """The state entering ``step`` for its active rows: (b, ...) gathered from ``buf`` (T, B, ...)."""
        if step.src is None:
            return init[: step.b]
        if step.b_src >= step.b:
            return buf[step.src, : step.b]
        return torch.cat((buf[step.src, : step.b_src], init[step.b_src : step.b]))

    def all_incoming(self, buf: torch.Tensor, init: torch.Tensor) -> torch.Tensor:
        """The state entering every step, (T, B, ...), built without a time loop.

        Entries of inactive rows are finite but meaningless; their gradients are zero.
        """
        if not self.reverse:
            return torch.cat((init.unsqueeze(0), buf[:-1]))
        out = torch.cat((buf[1:], init.unsqueeze(0)))
        for step in self.steps:
            if step.src is not None and step.b_src < step.b:  # rows that start at this step
                out[step.t, step.b_src : step.b] = init[step.b_src : step.b]
        return out

    def final(self, buf: torch.Tensor) -> torch.Tensor:
        """Each row's state after its own last step: (B, ...) taken from ``buf`` (T, B, ...)."""
        last = self.steps[-1].t
        if self.reverse or not self.packed:
            return buf[last].clone()
        lengths = lengths_of(self.batch_sizes, self.B).to(buf.device)
        return buf[lengths - 1, torch.arange(self.B, device=buf.device)]
