"""Window partitioning, shift-window masks and attention through SDPA.

Shapes use channels-last token grids ``(B, H, W, C)`` as Swin-style code does.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor

from .attention import attention

# Additive logit for token pairs that must not attend to each other (different regions of a
# shifted window).  The official RGT/DRCT/ATD code uses this value; exp(-100) is 3.7e-44, i.e. an
# exact zero after softmax in every float format, and it stays finite in fp16 and bf16.
MASKED_LOGIT = -100.0


def window_partition(x: Tensor, wh: int, ww: int) -> Tensor:
    """Cut ``(B, H, W, C)`` into windows: ``(B * nW, wh * ww, C)``, windows in raster order."""
    return rearrange(x, "b (nh wh) (nw ww) c -> (b nh nw) (wh ww) c", wh=wh, ww=ww)


def window_reverse(windows: Tensor, wh: int, ww: int, h: int, w: int) -> Tensor:
    """Inverse of :func:`window_partition`: ``(B * nW, wh * ww, C)`` -> ``(B, H, W, C)``."""
    return rearrange(windows, "(b nh nw) (wh ww) c -> b (nh wh) (nw ww) c", nh=h // wh, nw=w // ww, wh=wh)


def _region_ids(size: int, window: int, shift: int, device: torch.device) -> Tensor:
    """Region label along one axis after a cyclic shift: 0 body, 1 last window, 2 wrapped strip."""
    pos = torch.arange(size, device=device)
    return (pos >= size - window).long() + (pos >= size - shift).long()


def shift_window_mask(
    h: int,
    w: int,
    window: tuple[int, int],
    shift: tuple[int, int],
    device: torch.device,
    dtype: torch.dtype,
) -> Tensor:
    """Additive attention mask for shifted windows: ``(nW, N, N)`` with 0 or :data:`MASKED_LOGIT`.

    Tokens that the cyclic shift brought together from different image regions may not attend
    to each other. ``h``/``w`` must be multiples of the window. Built directly on ``device``.
    """
    wh, ww = window
    rows = _region_ids(h, wh, shift[0], device)
    cols = _region_ids(w, ww, shift[1], device)
    labels = (rows[:, None] * 3 + cols[None, :])[None, :, :, None]  # (1, H, W, 1)
    win = window_partition(labels, wh, ww).squeeze(-1)  # (nW, N)
    same = win[:, :, None] == win[:, None, :]
    mask = torch.zeros(same.shape, device=device, dtype=dtype)
    return mask.masked_fill_(~same, MASKED_LOGIT)


def shift_mask_kinds(window: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """The masks of a square shifted-window grid, one per kind of window: ``(4, 1, N, N)``.

    After the cyclic shift only the last window row and column hold tokens from two image
    borders, so every window is one of four kinds whatever the image size: 0 interior (no mask),
    1 last column, 2 last row, 3 corner (:func:`window_kind`). Built once on a two-window grid.
    """
    shift = window // 2
    grid = shift_window_mask(2 * window, 2 * window, (window, window), (shift, shift), device, dtype)
    return grid.unsqueeze(1)


def window_kind(row: int, col: int, rows: int, cols: int) -> int:
    """Kind (index into :func:`shift_mask_kinds`) of window ``(row, col)`` in a ``rows x cols`` grid."""
    return 2 * (row == rows - 1) + (col == cols - 1)


def shifted_regions(h: int, w: int, window: int) -> list[tuple[slice, slice, int]]:
    """Rectangles of a shifted ``h x w`` token grid whose windows are all of one kind, with the kind.

    Empty rectangles (a single window row or column) are left out.
    """
    rows = [(slice(0, h - window), 0), (slice(h - window, h), 1)]
    cols = [(slice(0, w - window), 0), (slice(w - window, w), 1)]
    return [
        (rs, cs, 2 * ri + ci)
        for rs, ri in rows
        for cs, ci in cols
        if rs.stop > rs.start and cs.stop > cs.start
    ]


def windowed_attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None, scale: float) -> Tensor:
    """Attention inside windows through ``scaled_dot_product_attention``.

    Args:
        q, k, v: ``(B * nW, heads, N, d)``; k and v may have M tokens (overlapping windows).
        bias: additive logits ``(heads, N, M)`` or ``(1, heads, N, M)`` every window shares (the
            position bias, with the shift mask folded in where all these windows have the same
            one), or None. Windows with different masks are attended in groups by the caller.
        scale: softmax temperature applied to ``q @ k^T``.
    Returns:
        ``(B * nW, heads, N, d)``.
    """
    if bias is not None:
        bias = bias.to(q.dtype)
        if bias.dim() == 3:  # a 3-D mask sends CPU SDPA down its slow unfused path
            bias = bias.unsqueeze(0)
    return attention(q, k, v, attn_mask=bias, scale=scale)
