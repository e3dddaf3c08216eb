"""What a mechanism reports while a block of code runs: the layers' paths and the kernels' launches, for the
benchmarks' notes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

Item = TypeVar("Item")


class Recorder(Generic[Item]):
    """Lists that collect the items ``add`` reports, one for each ``recording`` block open (nested blocks each get
    every item); with none open, ``add`` keeps nothing."""

    def __init__(self) -> None:
        self._lists: list[list[Item]] = []

    @contextmanager
    def recording(self) -> Iterator[list[Item]]:
        """A list, filled in order with the items reported while the block runs."""
        items: list[Item] = []
        self._lists.append(items)
        try:
            yield items
        finally:
            self._lists.remove(items)

    def add(self, item: Item) -> None:
        """Report ``item`` to every open recording."""
        for items in self._lists:
            items.append(item)
