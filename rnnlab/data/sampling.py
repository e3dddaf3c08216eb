"""Shuffling that a resumed run repeats exactly, and the train/val/test loaders built on it."""

from __future__ import annotations

import torch
from torch.utils.data import Sampler


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
