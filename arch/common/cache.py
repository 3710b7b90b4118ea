"""Per-input-size caches for masks, position biases and indices.

Geometry tensors depend only on the input size, device and compute dtype (and, for learned
position biases, on the weights). They are built once per key on the device and reused by every
block and every tile of the same shape.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable

import torch
from torch import Tensor, nn


class GeometryCache:
    """A small LRU of tensors keyed by ``(name, *key)``; bounded so changing tile sizes cannot grow it."""

    def __init__(self, max_entries: int = 64) -> None:
        self._items: OrderedDict[Hashable, Tensor | tuple] = OrderedDict()
        self.max_entries = max_entries

    def get(self, key: Hashable, build: Callable[[], Tensor | tuple]) -> Tensor | tuple:
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        value = build()
        self._items[key] = value
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)
        return value

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)

    def __deepcopy__(self, memo: dict) -> GeometryCache:
        """A copied model starts empty: cached tensors belong to the original's weights and device."""
        return GeometryCache(self.max_entries)


def attach_geometry_cache(model: nn.Module, max_entries: int = 64) -> GeometryCache:
    """Give ``model`` a cache that is emptied whenever weights are (re)loaded or moved.

    Cached tensors are derived from weights (learned position biases), so a
    ``load_state_dict`` invalidates them; device/dtype are part of every key already.
    """
    cache = GeometryCache(max_entries)

    def _invalidate(module: nn.Module, incompatible_keys) -> None:  # load_state_dict post-hook
        cache.clear()
        # a deep copy of the model carries this hook but its own (copied) cache
        for value in vars(module).values():
            if isinstance(value, GeometryCache):
                value.clear()

    model.register_load_state_dict_post_hook(_invalidate)
    return cache


def cache_key(name: str, x: Tensor, *extra: Hashable) -> tuple:
    """Key for geometry derived from tensor ``x``'s device and dtype (plus sizes in ``extra``)."""
    return (name, x.device, x.dtype, *extra)


def use_cache(model: nn.Module) -> bool:
    """Cache only in inference: training needs gradients through learned biases."""
    return not (model.training and torch.is_grad_enabled())
