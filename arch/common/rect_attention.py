"""Attention in rectangle windows with a dynamic position bias (RGT's L-SA, DAT's spatial attention).

The channels split into two branches: the first attends in ``(h, w)`` windows, the second in the
transposed ``(w, h)`` ones. Inputs are zero-padded *after* the qkv projection to whole windows of
the longer side, as the official code does (padded keys have zero q/k/v but still take part in
the softmax through their position bias). Shifted windows are cut at the image border
(:mod:`.rect_windows`) instead of rolled and masked.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .model import GeometryLookup
from .position import lookup_position_bias, relative_offsets, relative_position_index
from .rect_windows import gather_windows, scatter_windows, window_groups
from .stream import float32_forward
from .windows import windowed_attention


class DynamicPosBias(nn.Module):
    """MLP from a relative offset ``(dy, dx)`` to one attention-logit bias per head.

    Args:
        pos_dim: hidden width of the MLP.
        heads: number of attention heads (outputs).
    """

    def __init__(self, pos_dim: int, heads: int) -> None:
        super().__init__()
        self.pos_proj = nn.Linear(2, pos_dim)
        self.pos1 = self._stage(pos_dim, pos_dim)
        self.pos2 = self._stage(pos_dim, pos_dim)
        self.pos3 = self._stage(pos_dim, heads)

    @staticmethod
    def _stage(dim: int, out: int) -> nn.Sequential:
        return nn.Sequential(nn.LayerNorm(dim), nn.ReLU(), nn.Linear(dim, out))

    def forward(self, offsets: Tensor) -> Tensor:
        """``(T, 2)`` offsets -> ``(T, heads)`` biases, in float32 whatever the weights' dtype."""
        t = offsets
        for layer in (self.pos_proj, self.pos1, self.pos2, self.pos3):
            t = float32_forward(layer, t)
        return t


class RectWindowAttention(nn.Module):
    """One branch: attention inside ``window``-shaped rectangles of its channel half.

    Args:
        dim: channels of this branch (half of the block's).
        heads: attention heads of this branch.
        window: ``(height, width)`` of its rectangle windows, e.g. (8, 32) or (32, 8).
        scale: softmax temperature (default ``head_dim ** -0.5``).
    """

    def __init__(self, dim: int, heads: int, window: tuple[int, int], scale: float | None = None) -> None:
        super().__init__()
        self.heads = heads
        self.window = window
        self.scale = scale or (dim // heads) ** -0.5
        self.pos = DynamicPosBias(dim // 4 // 4, heads)
        # its key in the model's geometry cache: the module's path, set by the model
        # (SRModel.name_geometry_owners), never an object identity the compiler would guard on
        self.geometry_name = "rect"

    def position_bias(self, shape: tuple[int, int], ref: Tensor, geometry: GeometryLookup) -> Tensor:
        """``(1, heads, n, n)`` bias for windows of ``shape`` (a window or a border piece of one)."""
        build = lambda: self._build_bias(shape, ref.device, ref.dtype)  # noqa: E731
        return geometry(("rect.position_bias", self.geometry_name), ref, build, shape)

    def _build_bias(self, shape: tuple[int, int], device: torch.device, dtype: torch.dtype) -> Tensor:
        wh, ww = self.window
        # MLP over every offset a window can hold, then gather it per token pair
        table = self.pos(relative_offsets(wh, ww, device))
        # a piece of a window sees the same offsets as the window's top-left corner of that shape
        rows, cols = shape
        tokens = (
            torch.arange(rows, device=device)[:, None] * ww + torch.arange(cols, device=device)
        ).flatten()
        index = relative_position_index(wh, ww, device)[tokens][:, tokens]
        # 4-D (1, heads, n, n): the form SDPA's fused CPU kernel accepts (a 3-D mask falls back to math)
        return lookup_position_bias(table, index).unsqueeze(0).to(dtype).contiguous()

    def forward(self, qkv: Tensor, out: Tensor, shifted: bool, geometry: GeometryLookup) -> None:
        """Attend and write the result into ``out``.

        Args:
            qkv: ``(B, Hp, Wp, 3, dim)`` view of this branch's q, k and v, padded to whole windows.
            out: ``(B, Hp, Wp, dim)`` view the result is written into.
            shifted: use the half-window shifted grid.
            geometry: the model's :meth:`~.model.SRModel.cached_geometry`.
        """
        hp, wp = qkv.shape[1:3]
        shift = (self.window[0] // 2, self.window[1] // 2) if shifted else (0, 0)
        for (wh, ww), regions in window_groups(hp, wp, self.window, shift):
            q, k, v = gather_windows(qkv, regions, wh, ww, self.heads).unbind(0)
            bias = self.position_bias((wh, ww), q, geometry)
            scatter_windows(windowed_attention(q, k, v, bias, self.scale), out, regions, wh, ww)


def two_branch_attention(
    qkv: Tensor, branches: nn.ModuleList, shifted: bool, geometry: GeometryLookup
) -> Tensor:
    """Both branches over the channel halves of a qkv projection.

    Args:
        qkv: ``(B, H, W, 3C)`` output of the qkv projection (q, k, v; each first half for
            ``branches[0]``, second half for ``branches[1]``).
        branches: two :class:`RectWindowAttention` (windows of transposed shapes).
        shifted: use the half-window shifted grids.
        geometry: the model's :meth:`~.model.SRModel.cached_geometry`.
    Returns:
        ``(B, H, W, C)`` (a view into the padded result, not contiguous when padded).
    """
    b, h, w, c = qkv.shape[0], qkv.shape[1], qkv.shape[2], qkv.shape[3] // 3
    pad_to = max(max(branch.window) for branch in branches)
    # zero-pad after the projection, as the reference does: padded tokens are exact zeros
    pad_h, pad_w = -h % pad_to, -w % pad_to
    if pad_h or pad_w:
        qkv = F.pad(qkv, (0, 0, 0, pad_w, 0, pad_h))
    qkv = qkv.unflatten(3, (3, 2, c // 2))  # (B, Hp, Wp, q/k/v, branch, C/2)
    out = qkv.new_empty(b, h + pad_h, w + pad_w, 2, c // 2)
    for i, branch in enumerate(branches):
        branch(qkv[..., i, :], out[..., i, :], shifted, geometry)
    return out[:, :h, :w].flatten(3)
