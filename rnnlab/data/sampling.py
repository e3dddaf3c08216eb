"""Shuffling that a resumed run repeats exactly, and the train/val/test loaders built on it."""

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


class EpochShuffle(Sampler):
    """A permutation drawn from ``seed + epoch`` (Lightning calls ``set_epoch``): the order of every epoch
    is fixed by the seed alone, so a resumed run sees the batches an uninterrupted run would."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return iter(torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + self.epoch)).tolist())


class SplitLoaders:
    """``train_dataloader``/``val_dataloader``/``test_dataloader`` of a data module that defines
    ``_loader(split, shuffle)``; only the training split is shuffled."""

    def train_dataloader(self):
        return self._loader("train", shuffle=True)

    def val_dataloader(self):
        return self._loader("val", shuffle=False)

    def test_dataloader(self):
        return self._loader("test", shuffle=False)
