"""Tile geometry: where tiles go and how their outputs are blended back together.

All tiles of one image have the same shape (static shapes: no recompiles, no sliver tiles). Along
each axis the tiles are spread evenly so the first starts at 0 and the last ends flush with the
edge; neighbours overlap by at least the requested overlap. An axis shorter than a tile is one
tile, padded (see :func:`pad_frame`) up to the model's size requirement.

Blending: each tile's output is multiplied by separable weights ``wy[:, None] * wx[None, :]``.
Along an axis, the weights are a partition of unity built from one smooth ramp per boundary,
placed in the middle half of the overlap, so the outer quarter of every overlap -- the pixels
that saw the tile edge instead of real context -- gets no weight at all:

    g_i(p)  = ramp from 0 to 1 across boundary i (between tiles i and i+1)
    w_i(p)  = g_{i-1}(p) - g_i(p)          (g_{-1} = 1, g_{n-1} = 0)

The sum over tiles telescopes to exactly ``1 - 0``, and each ``w_i`` is zero outside tile ``i``.
Because the 2-D weight is a product of 1-D partitions of unity, it sums to one as well, and a
tile can be split further (out-of-memory back-off) by multiplying its weights with the weights of
a sub-tiling of its own box.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

# Part of each overlap over which two tiles are cross-faded; the rest is split between them.
RAMP_FRACTION = 0.5


@dataclass(frozen=True)
class SizeRule:
    """A model's input size requirement (spandrel's ``SizeRequirements``, duck-typed)."""

    minimum: int = 0
    multiple_of: int = 1
    square: bool = False

    @classmethod
    def of(cls, size_requirements) -> SizeRule:
        """Read spandrel's ``SizeRequirements`` (or ``None``) into a rule."""
        if size_requirements is None:
            return cls()
        return cls(
            int(getattr(size_requirements, "minimum", 0)),
            max(1, int(getattr(size_requirements, "multiple_of", 1))),
            bool(getattr(size_requirements, "square", False)),
        )

    def align_up(self, n: int) -> int:
        """Smallest valid size >= ``n``."""
        n = max(n, self.minimum, 1)
        return -(-n // self.multiple_of) * self.multiple_of

    def align_down(self, n: int) -> int:
        """Largest valid size <= ``n`` (never below the smallest valid size)."""
        return max(self.align_up(1), (n // self.multiple_of) * self.multiple_of)


@dataclass(frozen=True)
class Tile:
    """One model call: an input box and the blend weights of its output (output pixels).

    Args:
        y, x: top-left corner in the (padded) input frame.
        h, w: input box size; the output box is ``(h * scale, w * scale)``.
        wy, wx: float32 blend weights along y and x, lengths ``h * scale`` and ``w * scale``.
    """

    y: int
    x: int
    h: int
    w: int
    wy: Tensor
    wx: Tensor

    def weight(self) -> Tensor:
        """The 2-D blend weight ``(h * scale, w * scale)``."""
        return self.wy[:, None] * self.wx[None, :]


def tile_shape(height: int, width: int, tile: int, rule: SizeRule) -> tuple[int, int]:
    """The one tile shape used for a ``height x width`` frame with nominal tile size ``tile``.

    An axis longer than the tile uses the tile size (aligned down to the rule); a shorter axis uses
    the axis length aligned up (the frame is padded to it). Square models get square tiles.
    """
    tile = rule.align_down(tile)
    th = tile if height > tile else rule.align_up(height)
    tw = tile if width > tile else rule.align_up(width)
    if rule.square:
        th = tw = max(th, tw)
    return th, tw


def axis_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Evenly spread starts of equal tiles covering ``[0, length)``, neighbours overlapping >= ``overlap``.

    The first tile starts at 0, the last one ends exactly at ``length``. ``length <= tile`` gives
    one tile at 0 (the caller pads the axis to ``tile``).
    """
    if length <= tile:
        return [0]
    overlap = min(max(overlap, 0), tile - 1)
    n = math.ceil((length - overlap) / (tile - overlap))
    n = max(n, 2)
    # floor spacing: consecutive steps differ by at most 1 and never exceed tile - overlap
    return [(i * (length - tile)) // (n - 1) for i in range(n)]


def count_tiles(height: int, width: int, th: int, tw: int, overlap: int) -> int:
    """How many ``th x tw`` tiles :func:`plan_tiles` uses for a ``height x width`` frame."""
    return len(axis_starts(height, th, overlap)) * len(axis_starts(width, tw, overlap))


def _ramp(p: Tensor, start: float, width: float) -> Tensor:
    """Smooth step from 0 (before ``start``) to 1 (after ``start + width``) at positions ``p``."""
    if width <= 0:
        return (p >= start).to(p.dtype)
    t = ((p - start) / width).clamp(0.0, 1.0)
    return 0.5 - 0.5 * torch.cos(math.pi * t)


def axis_weights(starts: list[int], tile: int, scale: int) -> list[Tensor]:
    """Per-tile 1-D blend weights (float32, length ``tile * scale``) that sum to one everywhere."""
    out_len = tile * scale
    weights = []
    for i, s in enumerate(starts):
        p = torch.arange(s * scale, s * scale + out_len, dtype=torch.float64) + 0.5
        before = torch.ones_like(p)
        after = torch.zeros_like(p)
        if i > 0:  # boundary with the previous tile: its overlap is [s, starts[i-1] + tile)
            v = starts[i - 1] + tile - s
            before = _ramp(p, (s + v * (1 - RAMP_FRACTION) / 2) * scale, v * RAMP_FRACTION * scale)
        if i + 1 < len(starts):  # boundary with the next tile: overlap [starts[i+1], s + tile)
            nxt = starts[i + 1]
            v = s + tile - nxt
            after = _ramp(p, (nxt + v * (1 - RAMP_FRACTION) / 2) * scale, v * RAMP_FRACTION * scale)
        weights.append((before - after).to(torch.float32))
    return weights


def plan_tiles(height: int, width: int, th: int, tw: int, overlap: int, scale: int) -> list[Tile]:
    """All tiles (row-major) of shape ``th x tw`` covering a ``height x width`` frame.

    ``height``/``width`` are the frame size after padding (at least ``th``/``tw``).
    """
    ys = axis_starts(height, th, overlap)
    xs = axis_starts(width, tw, overlap)
    wys = axis_weights(ys, th, scale)
    wxs = axis_weights(xs, tw, scale)
    return [
        Tile(y, x, th, tw, wy, wx)
        for y, wy in zip(ys, wys, strict=True)
        for x, wx in zip(xs, wxs, strict=True)
    ]


def split_tile(tile: Tile, th: int, tw: int, overlap: int, scale: int) -> list[Tile]:
    """Replace ``tile`` by smaller ``th x tw`` tiles of its own box, keeping the total weight.

    The sub-tiles' weights are a partition of unity of the box, multiplied by ``tile``'s weights,
    so the frame's weights still sum to one (used for the out-of-memory back-off). The sub-tiles'
    weights live where ``tile``'s do.
    """
    subs = plan_tiles(tile.h, tile.w, min(th, tile.h), min(tw, tile.w), overlap, scale)
    subs = weights_to(subs, tile.wy.device)  # the tile's weights may be on the blend device
    return [
        Tile(
            tile.y + s.y,
            tile.x + s.x,
            s.h,
            s.w,
            tile.wy[s.y * scale : (s.y + s.h) * scale] * s.wy,
            tile.wx[s.x * scale : (s.x + s.w) * scale] * s.wx,
        )
        for s in subs
    ]


def weights_to(tiles: list[Tile], device: torch.device) -> list[Tile]:
    """The tiles with their blend weights on ``device``, moved in one transfer."""
    if not tiles or tiles[0].wy.device == torch.device(device):
        return tiles
    flat = torch.cat([torch.cat([t.wy, t.wx]) for t in tiles]).to(device)
    out, i = [], 0
    for t in tiles:
        wy, wx = flat[i : i + len(t.wy)], flat[i + len(t.wy) : i + len(t.wy) + len(t.wx)]
        i += len(t.wy) + len(t.wx)
        out.append(Tile(t.y, t.x, t.h, t.w, wy, wx))
    return out


def pad_frame(frame: Tensor, height: int, width: int) -> Tensor:
    """Pad a ``(C, H, W)`` frame at the bottom/right to ``height x width``.

    Reflect padding continues the image naturally; where the pad is as large as the image (tiny
    images, square models) reflection is impossible and the edge is replicated instead.
    """
    _, h, w = frame.shape
    pad_h, pad_w = height - h, width - w
    if pad_h == 0 and pad_w == 0:
        return frame
    mode = "reflect" if pad_h < h and pad_w < w else "replicate"
    return F.pad(frame[None], (0, pad_w, 0, pad_h), mode=mode)[0]
