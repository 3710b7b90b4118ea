"""Rectangle windows (RGT's L-SA, DAT's spatial attention), shifted windows cut at the border.

The official code rolls the (padded) token grid by half a window, attends inside windows and
masks token pairs that the roll brought together from opposite borders with a -100 logit. A
masked pair gets ``exp(-100)`` ~ 4e-44 times the weight of an unmasked one (zero in fp16/bf16,
far below fp32 resolution), so the same result comes from attending inside the *pieces* of
those border windows: a shifted window grid on the unrolled image whose first and last
rows/columns of windows are partial. Pieces of equal shape are batched into one attention
call. No roll, no mask tensor, fewer logits.
"""

from __future__ import annotations

from functools import lru_cache

from torch import Tensor

from .tracing import is_tracing

# One batch of equally shaped windows: (window height, window width) and the image regions
# ((row start, row stop), (col start, col stop)) that are tiled by windows of that shape.
Region = tuple[tuple[int, int], tuple[int, int]]
WindowGroup = tuple[tuple[int, int], tuple[Region, ...]]


def _strips(size: int, window: int, shift: int) -> list[tuple[int, int, int]]:
    """``(start, stop, window)`` strips along one axis of a grid shifted by ``shift``.

    Unshifted: one strip of whole windows. Shifted: a ``shift``-long piece, the whole windows,
    and a ``window - shift``-long piece (the two pieces of the window the roll would wrap).
    """
    if shift == 0:
        return [(0, size, window)]
    inner_stop = size - window + shift
    strips = [(0, shift, shift), (shift, inner_stop, window), (inner_stop, size, window - shift)]
    return [s for s in strips if s[1] > s[0]]


def window_groups(h: int, w: int, window: tuple[int, int], shift: tuple[int, int]) -> tuple[WindowGroup, ...]:
    """:func:`tile_windows`, remembered per argument in eager runs; a compiled forward traces it
    once per shape into constants (the compiler does not go through an ``lru_cache``)."""
    if is_tracing():
        return tile_windows(h, w, window, shift)
    return _remembered_groups(h, w, window, shift)


def tile_windows(h: int, w: int, window: tuple[int, int], shift: tuple[int, int]) -> tuple[WindowGroup, ...]:
    """Tile an ``h`` x ``w`` grid (multiples of ``window``) with windows shifted by ``shift``.

    Args:
        h, w: grid size in tokens.
        window: ``(height, width)`` of a window.
        shift: ``(rows, cols)`` of the cyclic shift the official code applies (0 = none).
    Returns:
        Groups of regions whose windows share one shape, the biggest windows first.
    """
    groups: dict[tuple[int, int], list[Region]] = {}
    for r0, r1, wh in _strips(h, window[0], shift[0]):
        for c0, c1, ww in _strips(w, window[1], shift[1]):
            groups.setdefault((wh, ww), []).append(((r0, r1), (c0, c1)))
    ordered = sorted(groups.items(), key=lambda kv: -kv[0][0] * kv[0][1])
    return tuple((shape, tuple(regions)) for shape, regions in ordered)


_remembered_groups = lru_cache(maxsize=256)(tile_windows)


def _count(b: int, region: Region, wh: int, ww: int) -> int:
    (r0, r1), (c0, c1) = region
    return b * ((r1 - r0) // wh) * ((c1 - c0) // ww)


def gather_windows(src: Tensor, regions: tuple[Region, ...], wh: int, ww: int, heads: int) -> Tensor:
    """Cut the regions of ``src`` into windows, all in one batch (one copy).

    Args:
        src: ``(B, H, W, parts, heads*d)`` grid, e.g. q/k/v as ``parts``.
        regions: regions of ``src`` tiled by ``wh`` x ``ww`` windows.
        heads: attention heads the channels split into.
    Returns:
        ``(parts, n, heads, wh*ww, d)``: windows region after region, raster order in each.
    """
    b, parts, d = src.shape[0], src.shape[3], src.shape[4] // heads
    counts = [_count(b, r, wh, ww) for r in regions]
    out = src.new_empty(parts, sum(counts), heads, wh * ww, d)
    start = 0
    for ((r0, r1), (c0, c1)), n in zip(regions, counts, strict=True):
        nh, nw = (r1 - r0) // wh, (c1 - c0) // ww
        grid = src[:, r0:r1, c0:c1].unflatten(4, (heads, d)).unflatten(2, (nw, ww)).unflatten(1, (nh, wh))
        # grid: (b, nh, wh, nw, ww, p, heads, d) seen in the windows' order (p, b, nh, nw, heads, wh, ww, d)
        grid = grid.permute(5, 0, 1, 3, 6, 2, 4, 7)
        out[:, start : start + n].view(grid.shape).copy_(grid)
        start += n
    return out


def scatter_windows(windows: Tensor, dst: Tensor, regions: tuple[Region, ...], wh: int, ww: int) -> None:
    """Inverse of :func:`gather_windows` for one part: write ``(n, heads, wh*ww, d)`` into ``dst``.

    ``dst`` is a ``(B, H, W, heads*d)`` view; each region is written through a permuted view of
    it (one copy, no intermediate image).
    """
    b, heads, d = dst.shape[0], windows.shape[1], windows.shape[3]
    start = 0
    for (r0, r1), (c0, c1) in regions:
        n = _count(b, ((r0, r1), (c0, c1)), wh, ww)
        nh, nw = (r1 - r0) // wh, (c1 - c0) // ww
        grid = dst[:, r0:r1, c0:c1].unflatten(3, (heads, d)).unflatten(2, (nw, ww)).unflatten(1, (nh, wh))
        # grid: (b, nh, wh, nw, ww, heads, d) seen in the windows' order (b, nh, nw, heads, wh, ww, d)
        grid.permute(0, 1, 3, 5, 2, 4, 6).copy_(windows[start : start + n].view(b, nh, nw, heads, wh, ww, d))
        start += n
