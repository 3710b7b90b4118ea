"""ATD's (shifted) window attention and the per-size geometry it needs.

Rolling and window partitioning are one ``index_select`` with a cached order; shift masks are
the four window kinds of :func:`~..common.windows.shift_mask_kinds`, added only to the windows
that need them (the last window row and column): everywhere else the official mask is zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..common.attention import attention
from ..common.position import lookup_position_bias
from ..common.windows import shift_mask_kinds, window_partition, windowed_attention
from .attention import reference_attention, split_heads


@dataclass(frozen=True)
class WindowGeometry:
    """Everything the window attention needs for one token-grid size, device and dtype.

    ``to_windows[shift]`` lists, for each token slot of the (rolled) windows in raster order, the
    image token it reads: rolling and partitioning become one ``index_select``; ``to_image[shift]``
    is the inverse. Shift masks are kept only for the windows that have masked pairs (the last
    window row and column); elsewhere the official mask is zero, so skipping it changes nothing.
    Built from tensor ops on the grid's size alone (no loop over windows), so it also traces with
    symbolic sizes.
    """

    size: tuple[int, int]
    grid: tuple[int, int]  # windows per column, per row
    to_windows: dict[int, Tensor]
    to_image: dict[int, Tensor]
    row_masks: Tensor  # (nw, 1, N, N): last window row
    col_masks: Tensor  # (nh - 1, 1, N, N): last window column above the corner

    def window_mask(self, index: int) -> Tensor | None:
        """The mask of window ``index`` (raster order), or None where the official mask is zero."""
        nh, nw = self.grid
        row, col = divmod(index, nw)
        if row == nh - 1:
            return self.row_masks[col]
        return self.col_masks[row] if col == nw - 1 else None

    def add_masks_(self, attn: Tensor, start: int) -> None:
        """Add shift masks in place to logits ``(k, heads, N, N)`` of windows ``start .. start + k``."""
        nh, nw = self.grid
        if start % (nh * nw) == 0 and attn.shape[0] % (nh * nw) == 0:  # whole images: two adds
            grid = attn.view(-1, nh, nw, *attn.shape[1:])
            grid[:, -1] += self.row_masks
            grid[:, :-1, -1] += self.col_masks
            return
        for j in range(attn.shape[0]):
            mask = self.window_mask((start + j) % (nh * nw))
            if mask is not None:
                attn[j] += mask


def build_window_geometry(
    h: int, w: int, window: int, device: torch.device, dtype: torch.dtype
) -> WindowGeometry:
    """Window orders and shift masks for a ``h x w`` token grid, built on ``device``."""
    nh, nw = h // window, w // window
    shift = window // 2
    tokens = torch.arange(h * w, device=device).view(1, h, w, 1)
    to_windows, to_image = {}, {}
    for s in (0, shift):
        order = window_partition(tokens.roll((-s, -s), dims=(1, 2)), window, window).flatten()
        to_windows[s] = order
        to_image[s] = torch.empty_like(order).scatter_(0, order, torch.arange(h * w, device=device))
    kinds = shift_mask_kinds(window, device, dtype)
    # kinds (window_kind): the last row is kind 2 with the corner (3) at its end, the last column
    # above it kind 1
    rows = torch.cat((kinds[2:3].expand(nw - 1, -1, -1, -1), kinds[3:4]))
    cols = kinds[1:2].expand(nh - 1, -1, -1, -1)
    return WindowGeometry((h, w), (nh, nw), to_windows, to_image, rows, cols)


def _shifted_sdpa(q: Tensor, k: Tensor, v: Tensor, bias: Tensor, geo: WindowGeometry, scale: float) -> Tensor:
    """SDPA over shifted windows: interior windows share the position bias, border windows
    get ``bias + mask`` for just themselves (never a bias for every window)."""
    nh, nw = geo.grid
    out = torch.empty_like(q, memory_format=torch.contiguous_format)
    qg, kg, vg, og = (t.unflatten(0, (-1, nh, nw)) for t in (q, k, v, out))
    batch = og.shape[0]

    def attend(sel: tuple, attn_bias: Tensor) -> None:
        if og[sel].numel():
            parts = [t[sel].flatten(0, -4) for t in (qg, kg, vg)]
            res = attention(*parts, attn_mask=attn_bias, scale=scale)
            og[sel] = res.view(og[sel].shape)

    every = slice(None)
    attend((every, slice(None, -1), slice(None, -1)), bias[None])  # 4-D: CPU SDPA's fused path
    attend((every, -1), (bias + geo.row_masks).repeat(batch, 1, 1, 1))
    attend((every, slice(None, -1), -1), (bias + geo.col_masks).repeat(batch, 1, 1, 1))
    return out.transpose(1, 2)


# ----------------------------------------------------------------------------- modules


class WindowAttention(nn.Module):
    """(Shifted) window self-attention with a learned relative-position bias.

    Args:
        dim: channels.
        window: window side.
        num_heads: attention heads.
    """

    def __init__(self, dim: int, window: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        self.proj = nn.Linear(dim, dim)

    def position_bias(self, index: Tensor) -> Tensor:
        """``(heads, N, N)`` bias from the table and a relative-position index ``(N, N)``."""
        return lookup_position_bias(self.relative_position_bias_table, index)

    def forward(self, qkv: Tensor, bias: Tensor, geo: WindowGeometry | None, exact: bool) -> Tensor:
        """Args:
        qkv: windows ``(B * nW, N, 3C)`` in raster window order.
        bias: position bias ``(heads, N, N)`` in the compute dtype.
        geo: window geometry for a shifted layer (its masks), None for an unshifted one.
        exact: official op order (see module docstring) instead of SDPA.
        """
        q, k, v = split_heads(qkv, self.num_heads)
        if exact:
            out = reference_attention(q, k, v, scale=self.scale, bias=bias, geometry=geo)
        elif geo is None:
            out = windowed_attention(q, k, v, bias[None], self.scale).transpose(1, 2)
        else:
            out = _shifted_sdpa(q, k, v, bias, geo, self.scale)
        return self.proj(out.flatten(-2))
