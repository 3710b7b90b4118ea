"""The root module every family derives from: its geometry cache and what the engine asks of it.

The engine never names a family. It asks the model:

* :meth:`SRModel.working_set_per_pixel`: peak working-set elements per input pixel of a tile,
* :meth:`SRModel.preferred_tile_multiple`: the tile multiple the model computes best at,
* :meth:`SRModel.release_caches`: drop cached device tensors.

Geometry (masks, position biases, indices) is built once per ``(name, shape, device, dtype)``
through :meth:`SRModel.cached_geometry`, on the device, in the compute dtype, and reused by every
block and every tile of that shape. The cache empties itself when weights are loaded (learned
biases derive from them) and when the module is moved or converted (``.to()``, ``.cuda()``,
``.half()`` ...): ComfyUI moves models to the offload device on its own, and cached tensors must
not stay behind on the GPU.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from typing import TypeVar

import torch
from torch import Tensor, nn

from .cache import GeometryCache
from .config import ModelConfig

T = TypeVar("T")

# The pixel-shuffle reconstruction's feature width (conv_before_upsample -> upsample).
UPSAMPLE_FEATURES = 64

GeometryLookup = Callable[..., T]  # SRModel.cached_geometry, handed to blocks
SideRange = tuple[int, int | None]  # smallest and largest side, inclusive (None: no limit)
# Windows per side an exported graph with symbolic sizes needs at least: with fewer, shifted grids
# lose whole strips of windows (another graph)
EXPORT_MIN_WINDOWS = 3


def _flat(shape: tuple) -> Iterator[Hashable]:
    """The leaves of a nested shape key."""
    for d in shape:
        if isinstance(d, tuple):
            yield from _flat(d)
        else:
            yield d


def _release_after_load(module: SRModel, incompatible_keys) -> None:  # load_state_dict post-hook
    module.release_caches()


class SRModel(nn.Module):
    """Base of our families' root modules.

    Args:
        config: the family's hyperparameters (kept as ``self.config``; ``self.scale`` is its scale).
        cache_entries: how many geometry entries to keep (a few per tile shape, device and dtype).
    """

    def __init__(self, config: ModelConfig, cache_entries: int = 64) -> None:
        super().__init__()
        self.config = config
        self.scale = config.scale
        self.geometry_cache = GeometryCache(cache_entries)
        self.register_load_state_dict_post_hook(_release_after_load)

    # ---- geometry ---------------------------------------------------------------------------

    def cached_geometry(self, name: Hashable, ref: Tensor, build: Callable[[], T], *shape: Hashable) -> T:
        """``build()`` once per ``(name, shape, ref.device, ref.dtype)``.

        While training with gradients, geometry is rebuilt on every call (learned biases need
        their graph); otherwise it is built without autograd and kept.
        """
        if self.training and torch.is_grad_enabled():
            return build()
        if torch.compiler.is_exporting():
            return self._exported_geometry(name, ref, build, shape)
        with torch.no_grad():
            return self.geometry_cache.get((name, shape, ref.device, ref.dtype), build)

    def _exported_geometry(self, name: Hashable, ref: Tensor, build: Callable[[], T], shape: tuple) -> T:
        """Geometry inside ``torch.export``: what an eager call of this shape cached becomes the
        graph's constants; anything else (symbolic sizes above all) is traced into the graph and
        never stored, so no tracer tensor outlives the export."""
        if all(isinstance(d, int) for d in _flat(shape)):
            cached = self.geometry_cache.peek((name, shape, ref.device, ref.dtype))
            if cached is not None:
                return cached
        with torch.no_grad():
            return build()

    def name_geometry_owners(self) -> None:
        """Give every submodule that caches geometry of its own (it has a ``geometry_name``
        attribute) its path in the model as that name, the key of its cache entries.

        Keys are then equal in every model of one config (and in its half copies and reloads):
        ``torch.compile`` guards on them, so a key holding an object identity (``id(module)``)
        would compile the forward again for every model instance.
        """
        for name, module in self.named_modules():
            if module is not self and hasattr(module, "geometry_name"):
                module.geometry_name = name

    def release_caches(self) -> None:
        """Empty every geometry cache of the model (masks, biases, indices)."""
        self.geometry_cache.clear()

    def _apply(self, fn, recurse: bool = True):
        # every .to() / .cuda() / .cpu() / .half() / .float() ends here: cached device tensors go
        self.release_caches()
        return super()._apply(fn, recurse)

    # ---- what the engine asks -----------------------------------------------------------------

    def working_set_per_pixel(self, tile_h: int, tile_w: int) -> float:
        """Estimated peak working-set elements per input pixel for one ``tile_h x tile_w`` tile
        (the engine multiplies by the compute dtype's size). On the safe side."""
        raise NotImplementedError

    def preferred_tile_multiple(self) -> int:
        """The tile-side multiple the model computes best at (its window: no internal padding)."""
        raise NotImplementedError

    def export_size_range(self, h: int, w: int) -> tuple[SideRange, SideRange]:
        """Heights and widths (multiples of :meth:`preferred_tile_multiple`) whose forward is the
        same graph as an ``h x w`` input's: the sizes one exported graph with symbolic sizes
        serves (``arch/export.py``). Default: at least :data:`EXPORT_MIN_WINDOWS` windows a side."""
        low = EXPORT_MIN_WINDOWS * self.preferred_tile_multiple()
        return (low, None), (low, None)

    def prepare_export(self) -> None:
        """Set the model (an export's own copy) to compute what its exported graph computes, where
        an eager default differs (nothing by default)."""


def token_elements(dim: int, mlp_ratio: float, fp32_stream: bool) -> float:
    """Elements per token of a transformer block outside attention: the residual stream, its norm,
    q/k/v, attention output, projection, MLP hidden and activation (``dim * (7 + 2 * mlp_ratio)``);
    one ``dim`` more where the stream is carried in float32 under half weights (twice its size)."""
    return dim * (7 + 2 * mlp_ratio) + (dim if fp32_stream else 0)


def attention_elements(heads: int, keys: int) -> int:
    """Attention rows per query token: ``heads x keys`` logits, twice (scores and softmax)."""
    return 2 * heads * keys


def upsampler_elements(scale: int, features: int = UPSAMPLE_FEATURES) -> int:
    """A pixel-shuffle reconstruction: ``features x scale^2`` elements per input pixel, twice."""
    return 2 * features * scale * scale
