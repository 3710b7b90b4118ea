"""Relative positions inside attention windows: the index into a bias table, and the offset grid.

Both come from Swin: a token pair ``(i, j)`` of a ``wh x ww`` window is at offset
``(dy, dx) = pos(i) - pos(j)``, one of ``(2wh - 1)(2ww - 1)`` offsets. A learned table holds one
bias per offset and head (DRCT, ATD); a dynamic position bias computes the table from the offsets
with a small MLP (RGT, the nhs2828 RGT). Either way it is looked up per token pair.
"""

from __future__ import annotations

import torch
from torch import Tensor


def relative_position_index(wh: int, ww: int, device: torch.device | None = None) -> Tensor:
    """Swin relative-position index ``(N, N)`` into a ``(2wh-1)(2ww-1)`` table, raster order."""
    ys, xs = torch.meshgrid(torch.arange(wh, device=device), torch.arange(ww, device=device), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    dy = ys[:, None] - ys[None, :] + (wh - 1)
    dx = xs[:, None] - xs[None, :] + (ww - 1)
    return dy * (2 * ww - 1) + dx


def relative_offsets(wh: int, ww: int, device: torch.device | None = None) -> Tensor:
    """Every ``(dy, dx)`` offset inside a ``wh x ww`` window in table order: float32 ``((2wh-1)(2ww-1), 2)``."""
    dy = torch.arange(1 - wh, wh, device=device, dtype=torch.float32)
    dx = torch.arange(1 - ww, ww, device=device, dtype=torch.float32)
    return torch.stack(torch.meshgrid(dy, dx, indexing="ij"), dim=-1).flatten(0, 1)


def lookup_position_bias(table: Tensor, index: Tensor) -> Tensor:
    """Per-head bias ``(heads, N, M)`` of a ``(offsets, heads)`` ``table`` for an ``(N, M)`` ``index``.

    A view of the gathered rows (not contiguous): callers convert it to the compute dtype and
    make it contiguous once, when they cache it.
    """
    return table[index].permute(2, 0, 1)
