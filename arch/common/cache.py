"""A bounded cache for geometry tensors: masks, position biases and indices.

Geometry depends only on the input shape, the device and the compute dtype (and, for learned
position biases, on the weights). :class:`~.model.SRModel` keeps one cache per model, keyed by
``(name, shape, device, dtype)``, and empties it whenever the weights are loaded or the module is
moved or converted.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TypeVar

import torch

T = TypeVar("T")


class GeometryCache:
    """A small LRU keyed by anything hashable; bounded so changing tile sizes cannot grow it."""

    def __init__(self, max_entries: int = 64) -> None:
        self._items: OrderedDict[Hashable, object] = OrderedDict()
        self.max_entries = max_entries

    def get(self, key: Hashable, build: Callable[[], T]) -> T:
        """The value stored under ``key``, built (and stored) on first use."""
        if key in self._items:
            if not torch.compiler.is_compiling():  # a compiled forward only reads (no side effects)
                self._items.move_to_end(key)
            return self._items[key]  # type: ignore[return-value]
        value = build()
        self._items[key] = value
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)
        return value

    def peek(self, key: Hashable) -> object | None:
        """The value stored under ``key``, or None; never builds, never reorders."""
        return self._items.get(key)

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)

    def __deepcopy__(self, memo: dict) -> GeometryCache:
        """A copied model starts empty: cached tensors belong to the original's weights and device."""
        return GeometryCache(self.max_entries)
