"""HAT's overlapping cross-attention block (OCAB) and its geometry.

Queries come from the usual non-overlapping ``ws x ws`` windows; keys and values from windows
widened to ``ow x ow`` (``ow = ws + overlap``) around them, so neighbouring windows exchange
information. Keys beyond the image border are zero vectors (the official code zero-pads the
projected keys/values): they take part in the softmax with a logit equal to their position bias
and contribute nothing to the output.

Works on channels-last token grids ``(B, H, W, C)`` whose sides are multiples of ``ws``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..common.linear import Linear
from ..common.position import lookup_position_bias
from ..common.stream import norm_to
from ..common.swin import Mlp
from ..common.windows import window_partition, window_reverse, windowed_attention
from .config import HATConfig


def overlap_position_index(window: int, overlap_window: int, device: torch.device | None = None) -> Tensor:
    """Index ``(ws*ws, ow*ow)`` into an OCAB bias table of ``(ws + ow - 1)^2`` rows.

    The official code counts the offset of a key (coordinates inside the widened window) from a
    query (coordinates inside its window) plus ``ws - ow + 1`` on each axis, so some offsets come
    out negative, and the flattened index then wraps to the end of the table (Python indexing).
    Trained tables are laid out for exactly that index, wrap included, so we reproduce it.
    """
    ws, ow = window, overlap_window
    side = ws + ow - 1
    q = torch.arange(ws, device=device)
    k = torch.arange(ow, device=device)
    d = k[None, :] - q[:, None] + (ws - ow + 1)  # (ws, ow) per-axis offsets
    dy = d[:, None, :, None]  # query row, key row
    dx = d[None, :, None, :]  # query column, key column
    index = (dy * side + dx).reshape(ws * ws, ow * ow)
    return index % (side * side)


def overlapping_windows(x: Tensor, window: int, size: int) -> Tensor:
    """Windows of side ``size`` centred on the ``window`` grid, zero outside the image.

    Args:
        x: ``(B, H, W, C)`` with sides multiples of ``window``.
    Returns:
        ``(B * nW, size * size, C)``, windows in raster order as :func:`window_partition`.
    """
    pad = size - window
    before = pad // 2  # the official unfold pads pad // 2 on each side; an odd pad ends one later
    x = F.pad(x, (0, 0, before, pad - before, before, pad - before))
    windows = x.unfold(1, size, window).unfold(2, size, window)  # (B, nh, nw, C, size, size) view
    return rearrange(windows, "b nh nw c i j -> (b nh nw) (i j) c")


class OCAB(nn.Module):
    """Overlapping cross-attention, then an MLP, both residual (keys of ``overlap_attn``).

    Args:
        c: the hyperparameters (width, query window ``window_size``, key window ``overlap_window``,
            MLP, ``qkv_bias`` and ``qk_scale``).
        heads: attention heads of the block's group.
    """

    def __init__(self, c: HATConfig, heads: int) -> None:
        super().__init__()
        dim = c.embed_dim
        self.heads = heads
        self.window = c.window_size
        self.overlap_window = c.overlap_window
        self.scale = c.qk_scale or (dim // heads) ** -0.5
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = Linear(dim, 3 * dim, bias=c.qkv_bias)
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((self.window + self.overlap_window - 1) ** 2, heads)
        )
        self.proj = Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, c.mlp_hidden)

    def position_bias(self, index: Tensor) -> Tensor:
        """Per-head bias ``(heads, ws*ws, ow*ow)`` for :func:`overlap_position_index`."""
        return lookup_position_bias(self.relative_position_bias_table, index)

    def forward(self, x: Tensor, pos_bias: Tensor) -> Tensor:
        """Args:
        x: ``(B, H, W, C)`` residual stream (float32, or the weights' dtype).
        pos_bias: ``(heads, ws*ws, ow*ow)`` position bias of this block.
        """
        compute = self.qkv.weight.dtype
        _, h, w, c = x.shape
        ws = self.window
        qkv = self.qkv(norm_to(self.norm1, x, compute))
        q = rearrange(window_partition(qkv[..., :c], ws, ws), "b n (h d) -> b h n d", h=self.heads)
        kv = overlapping_windows(qkv[..., c:], ws, self.overlap_window)
        k, v = rearrange(kv, "b m (two h d) -> two b h m d", two=2, h=self.heads)
        out = rearrange(windowed_attention(q, k, v, pos_bias, self.scale), "b h n d -> b n (h d)")
        x = x + self.proj(window_reverse(out, ws, ws, h, w))
        return x + self.mlp(norm_to(self.norm2, x, compute))
