"""Shuffling that a resumed run repeats exactly, each process's share of a split, and the train/val/test loaders
built on them."""

from __future__ import annotations

from numbers import Real

import torch
from torch.utils.data import Sampler

from ..errors import DataError


def check_split_fractions(fractions) -> None:
    """Refuse ``data.split_fractions`` unless it is (train, val): two numbers above 0 whose sum is below 1, the test
    split taking the rest (a sum of 1 or more left the test split empty without a word)."""
    try:
        values = list(fractions)
    except TypeError:  # one number
        values = [fractions]
    if (len(values) != 2 or not all(isinstance(v, Real) and not isinstance(v, bool) and v > 0 for v in values)
            or sum(values) >= 1):
        raise DataError(f"data.split_fractions must be [train, val], two fractions above 0 with a sum below 1 (the "
                        f"test split takes the rest); got {values}")


class ProcessShare(Sampler):
    """This process's share of ``n`` items: every world-size-th item from its rank (torch.distributed's default
    group; all of them outside one). Training (``seed`` given) takes them in a permutation drawn from ``seed +
    epoch`` (Lightning calls ``set_epoch``), so the order of every epoch is fixed by the seed alone and a resumed
    run sees the batches an uninterrupted run would, and pads the shares to one length by repeating the first
    items, as torch's DistributedSampler does, so that every process takes as many optimizer steps. Evaluation
    (``seed`` None) takes the items in order, each exactly once: shares may differ by one item, and the metrics,
    which torchmetrics sums over the processes, count every item once (DistributedSampler's padding scored some
    twice)."""

    def __init__(self, n: int, seed: int | None):
        self.n, self.seed, self.epoch = n, seed, 0
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        self.rank, self.world = (torch.distributed.get_rank(), torch.distributed.get_world_size()) if distributed \
            else (0, 1)

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose order to draw next (Lightning calls it at each epoch's start, as on its own sampler)."""
        self.epoch = epoch

    def _total(self) -> int:
        """The items all shares hold together: n, or in training n padded to a multiple of the processes."""
        return self.n if self.seed is None else self.n + -self.n % self.world

    def __len__(self) -> int:  # Lightning asks often: counted, not drawn
        return len(range(self.rank, self._total(), self.world))

    def __iter__(self):
        if self.seed is None:
            return iter(range(self.rank, self.n, self.world))
        order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + self.epoch)).tolist()
        return iter(order[i % self.n] for i in range(self.rank, self._total(), self.world))  # padded from the start


class SplitLoaders:
    """``train_dataloader``/``val_dataloader``/``test_dataloader`` of a data module that defines
    ``_loader(split, shuffle)``; only the training split is shuffled. Each process reads its own share
    (ProcessShare), so rnnlab-train turns off Lightning's distributed sampler (``shards_per_process``)."""

    shards_per_process = True

    def train_dataloader(self):
        return self._loader("train", shuffle=True)

    def val_dataloader(self):
        return self._loader("val", shuffle=False)

    def test_dataloader(self):
        return self._loader("test", shuffle=False)
