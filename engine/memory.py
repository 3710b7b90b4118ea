"""Memory policy: how big a tile fits, and recognising out-of-memory errors.

The working set of one tile is estimated in elements per input pixel (times the dtype's size).
Our models estimate their own (``model.working_set_per_pixel(tile_h, tile_w)``: residual stream,
attention rows, upsampler ... from their actual config); for anything else (spandrel's zoo) the
rule is ComfyUI core's, ``384 x 3 x scale``, or the pixel-shuffle upsampler's ``2 x 64 x scale^2``
if larger. The estimates are deliberately on the safe side; a wrong guess is caught by the
out-of-memory back-off in :mod:`.tile_run`, which splits the tile and carries on.
"""

from __future__ import annotations

import torch

from .tiling import SizeRule

AUTO_TILE_MIN = 64
AUTO_TILE_MAX = 1024
# Share of the free memory a tile may plan to use (fragmentation, allocator slack, estimate error).
MEMORY_FRACTION = 0.6

_OOM_TYPES = (getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError), MemoryError)
_OOM_MESSAGES = ("out of memory", "can't allocate memory", "cannot allocate memory", "not enough memory")


def looks_like_oom(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation failure (CUDA/XPU/MPS/CPU), not a bug in the model."""
    if isinstance(exc, _OOM_TYPES):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(m in text for m in _OOM_MESSAGES)


def is_oom(exc: BaseException, oom_exceptions: tuple[type[BaseException], ...]) -> bool:
    """``exc`` is one of the host's OOM types (a catch-all type only counts if it reads like an OOM)."""
    if looks_like_oom(exc):
        return True
    specific = tuple(t for t in oom_exceptions if t not in (Exception, BaseException, RuntimeError))
    return bool(specific) and isinstance(exc, specific)


def elements_per_pixel(desc, th: int, tw: int) -> float:
    """Estimated peak working-set elements per input pixel for one ``th x tw`` tile."""
    estimate = getattr(getattr(desc, "model", None), "working_set_per_pixel", None)
    if callable(estimate):
        return float(estimate(th, tw))
    scale = max(1, int(getattr(desc, "scale", 1)))
    return max(384 * 3 * scale, 2 * 64 * scale * scale)


def preferred_multiple(desc) -> int:
    """A tile multiple the model computes best at (``model.preferred_tile_multiple()``, e.g. its
    window, padded to internally otherwise), or 8 for models that do not say."""
    preferred = getattr(getattr(desc, "model", None), "preferred_tile_multiple", None)
    return int(preferred()) if callable(preferred) else 8


def model_bytes(module: torch.nn.Module, dtype: torch.dtype) -> int:
    """Bytes of the model's floating-point weights once converted to ``dtype``."""
    size = torch.empty((), dtype=dtype).element_size()
    return sum(
        t.numel() * (size if t.is_floating_point() else t.element_size())
        for t in module.state_dict().values()
    )


def tile_bytes(desc, th: int, tw: int, dtype: torch.dtype) -> int:
    """Estimated device bytes for one tile: working set plus the fp32 output tile and its weights."""
    size = torch.empty((), dtype=dtype).element_size()
    scale = max(1, int(getattr(desc, "scale", 1)))
    out_ch = int(getattr(desc, "output_channels", 3))
    out = 2 * out_ch * th * tw * scale * scale * 4
    return int(elements_per_pixel(desc, th, tw) * th * tw * size + out)


def auto_tile_size(
    desc,
    free_bytes: int,
    dtype: torch.dtype,
    rule: SizeRule,
    frame: tuple[int, int] | None = None,
    lo: int = AUTO_TILE_MIN,
    hi: int = AUTO_TILE_MAX,
) -> int:
    """Largest square tile (aligned to ``rule``, within ``[lo, hi]``) whose estimate fits ``free_bytes``.

    Args:
        desc: the model descriptor (its model's own estimate, or its scale).
        free_bytes: device memory available for activations (model weights already subtracted).
        dtype: compute dtype.
        rule: the model's size requirement.
        frame: ``(height, width)``; a tile never needs to be bigger than the (aligned) frame.
    """
    budget = free_bytes * MEMORY_FRACTION
    if frame is not None:
        hi = min(hi, max(rule.align_up(frame[0]), rule.align_up(frame[1])))
    lo = rule.align_up(min(lo, hi))
    tile = rule.align_down(hi)
    while tile > lo and tile_bytes(desc, tile, tile, dtype) > budget:
        tile = rule.align_down(min(tile - rule.multiple_of, int(tile * 0.9)))
    return max(tile, lo)
