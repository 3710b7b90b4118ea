"""Memory policy: how big a tile fits, and recognising out-of-memory errors.

The working set of one tile is estimated per architecture, in elements per input pixel (times
the dtype's size). The estimates are deliberately on the safe side; a wrong guess is caught by
the out-of-memory back-off in :mod:`.runner`, which halves the tile and carries on.

* window transformers (RGT, DRCT, ATD): the residual stream, q/k/v, MLP hidden and the attention
  rows (``heads x keys`` per token, twice: scores and softmax), plus the architecture's extras:
  DRCT's dense growth channels, ATD's category and token-dictionary attention, RGT's
  recursive-generalisation attention whose key count grows with the tile.
* the pixel-shuffle upsampler: ``64 x scale^2`` elements per input pixel, twice.
* anything else (spandrel's zoo): ComfyUI core's rule of thumb, ``384 x 3 x scale``.
"""

from __future__ import annotations

import math

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


def _config(desc) -> dict:
    info = getattr(desc, "srt_info", None)
    return dict(getattr(info, "config", None) or {})


def _first(value, default):
    if isinstance(value, list | tuple):
        return max(value) if value else default
    return default if value is None else value


def _embed_dim(desc, cfg: dict) -> int:
    if "embed_dim" in cfg:
        return int(cfg["embed_dim"])
    conv = getattr(getattr(desc, "model", None), "conv_first", None)
    return int(getattr(conv, "out_channels", 180))


def _rgt_keys(th: int, tw: int) -> int:
    """Keys per query of RGT's recursive-generalisation attention for a ``th x tw`` input."""
    times = max(2, int(math.log(max(th // 16, 1), 4)), int(math.log(max(tw // 16, 1), 4)))
    return max(1, th // 4**times) * max(1, tw // 4**times)


def elements_per_pixel(desc, th: int, tw: int) -> float:
    """Estimated peak working-set elements per input pixel for one ``th x tw`` tile."""
    arch = str(getattr(getattr(desc, "architecture", None), "id", ""))
    scale = max(1, int(getattr(desc, "scale", 1)))
    upsampler = 2 * 64 * scale * scale
    cfg = _config(desc)
    if arch not in ("RGT", "RGT_nhs2828", "DRCT", "ATD"):
        return max(384 * 3 * scale, upsampler)
    c = _embed_dim(desc, cfg)
    heads = int(_first(cfg.get("num_heads"), 6))
    mlp = float(cfg.get("mlp_ratio", 2.0))
    stream = c * (7 + 2 * mlp)  # x, norm, q/k/v, attention out, projection, MLP hidden + activation
    if arch in ("RGT", "DRCT", "ATD"):
        stream += c  # their residual stream stays float32 under half weights: twice its elements
    if arch == "DRCT":
        window = int(cfg.get("window_size", 16))
        extra = 2 * heads * window * window + 5 * int(cfg.get("gc", 32))
    elif arch == "ATD":
        window = int(cfg.get("window_size", 16))
        keys = window * window + int(cfg.get("category_size", 256)) + int(cfg.get("num_tokens", 128))
        extra = 2 * heads * keys
    else:
        split = cfg.get("split_size", (8, 32))
        area = int(split[0]) * int(split[1]) if isinstance(split, list | tuple) else int(split) ** 2
        extra = 2 * heads * max(area, _rgt_keys(th, tw))
    return stream + extra + upsampler


def preferred_multiple(desc) -> int:
    """A tile multiple the architecture computes best at: its window (padded to internally
    otherwise), or 8 for everything else."""
    cfg = _config(desc)
    if "window_size" in cfg:
        return int(_first(cfg["window_size"], 8))
    if "split_size" in cfg:
        return int(_first(cfg["split_size"], 8))
    return 8


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
        desc: the model descriptor (architecture id, scale, ``srt_info.config``).
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
