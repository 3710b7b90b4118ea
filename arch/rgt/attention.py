"""RGT's two attentions: L-SA (rectangle windows, dynamic position bias) and RG-SA.

Tokens are channels-last grids ``(B, H, W, C)`` throughout; convolutions see them through a
``permute`` (a channels-last NCHW view, no copy). Attention runs through
``scaled_dot_product_attention``; the dynamic position bias is the ``attn_mask`` and is built
once per (window shape, device, dtype) per module, then served from the model's cache.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..common.attention import attention
from ..common.model import GeometryLookup
from ..common.position import lookup_position_bias, relative_offsets, relative_position_index
from ..common.stream import float32_forward
from ..common.windows import windowed_attention
from .windows import gather_windows, scatter_windows, window_groups


def image_conv(conv: nn.Module, x: Tensor) -> Tensor:
    """Apply an NCHW conv to ``(B, H, W, C)`` tokens through channels-last views (no copies)."""
    return conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


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
    """One L-SA branch: attention inside ``window``-shaped rectangles of its channel half.

    Args:
        dim: channels of this branch (half of the block's).
        heads: attention heads of this branch.
        window: ``(height, width)`` of its rectangle windows, e.g. (8, 32) or (32, 8).
    """

    def __init__(self, dim: int, heads: int, window: tuple[int, int]) -> None:
        super().__init__()
        self.heads = heads
        self.window = window
        self.scale = (dim // heads) ** -0.5
        self.pos = DynamicPosBias(dim // 4 // 4, heads)

    def position_bias(self, shape: tuple[int, int], ref: Tensor, geometry: GeometryLookup) -> Tensor:
        """``(1, heads, n, n)`` bias for windows of ``shape`` (a window or a border piece of one)."""
        build = lambda: self._build_bias(shape, ref.device, ref.dtype)  # noqa: E731
        return geometry(("rgt.position_bias", id(self)), ref, build, shape)

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
            geometry: the model's :meth:`~..common.model.SRModel.cached_geometry`.
        """
        hp, wp = qkv.shape[1:3]
        shift = (self.window[0] // 2, self.window[1] // 2) if shifted else (0, 0)
        for (wh, ww), regions in window_groups(hp, wp, self.window, shift):
            q, k, v = gather_windows(qkv, regions, wh, ww, self.heads).unbind(0)
            bias = self.position_bias((wh, ww), q, geometry)
            scatter_windows(windowed_attention(q, k, v, bias, self.scale), out, regions, wh, ww)


class LSA(nn.Module):
    """Local self-attention: two branches over rectangle windows of transposed shapes.

    The first channel half attends in ``split_size`` windows (e.g. 8 rows x 32 columns), the
    second in the transposed ones; a depthwise conv on ``v`` adds locality.

    Args:
        dim: token channels.
        heads: attention heads (split evenly over the branches).
        split_size: ``(height, width)`` of the first branch's windows.
        shifted: shift the window grid by half a window (every other L-SA block).
        qkv_bias: whether the qkv projection has a bias.
    """

    def __init__(
        self, dim: int, heads: int, split_size: tuple[int, int], shifted: bool, qkv_bias: bool = True
    ) -> None:
        super().__init__()
        self.shifted = shifted
        self.pad_to = max(split_size)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        windows = (tuple(split_size), tuple(reversed(split_size)))
        self.attns = nn.ModuleList(RectWindowAttention(dim // 2, heads // 2, w) for w in windows)
        self.get_v = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x: Tensor, geometry: GeometryLookup) -> Tensor:
        b, h, w, c = x.shape
        qkv = self.qkv(x)
        # locality term: depthwise conv on v (unpadded)
        local = image_conv(self.get_v, qkv[..., 2 * c :])
        # zero-pad after the projection, as the reference does: padded tokens are exact zeros
        pad_h, pad_w = -h % self.pad_to, -w % self.pad_to
        if pad_h or pad_w:
            qkv = F.pad(qkv, (0, 0, 0, pad_w, 0, pad_h))
        qkv = qkv.unflatten(3, (3, 2, c // 2))  # (B, Hp, Wp, q/k/v, branch, C/2)
        out = qkv.new_empty(b, h + pad_h, w + pad_w, 2, c // 2)
        for i, branch in enumerate(self.attns):
            branch(qkv[..., i, :], out[..., i, :], self.shifted, geometry)
        return self.proj(local.add_(out[:, :h, :w].flatten(3)))


def recursion_steps(h: int, w: int) -> int:
    """How often RG-SA reduces by 4 at inference: ``max(2, floor(log4(side / 16)))``."""
    return max(2, *(((n // 16).bit_length() - 1) // 2 for n in (h, w)))


class RGSA(nn.Module):
    """Recursive-generalization self-attention: every token attends to a recursively pooled summary.

    Args:
        dim: token channels.
        heads: attention heads.
        c_ratio: channel ratio of queries/keys (and of the summary) to ``dim``.
        qkv_bias: whether the q/k/v projections have biases.
    """

    def __init__(self, dim: int, heads: int, c_ratio: float, qkv_bias: bool = True) -> None:
        super().__init__()
        reduced = int(dim * c_ratio)
        self.heads = heads
        self.scale = (dim // heads * c_ratio) ** -0.5
        # recursive generalization module: strided depthwise pooling, then mixing
        self.reduction1 = nn.Conv2d(dim, dim, 4, 4, groups=dim)
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)
        self.conv = nn.Conv2d(dim, reduced, 1)
        self.norm_act = nn.Sequential(nn.LayerNorm(reduced), nn.GELU())
        # cross-attention with scaled channels
        self.q = nn.Linear(dim, reduced, bias=qkv_bias)
        self.k = nn.Linear(reduced, reduced, bias=qkv_bias)
        self.v = nn.Linear(reduced, dim, bias=qkv_bias)
        self.cpe = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, geometry: GeometryLookup | None = None) -> Tensor:
        """``(B, H, W, C)`` -> ``(B, H, W, C)``; ``geometry`` is unused (nothing size-dependent to keep)."""
        h, w = x.shape[1:3]
        # summarise the image: reduce by 4 per step, at least twice (the reference's test-time rule)
        summary = x.permute(0, 3, 1, 2)
        for _ in range(recursion_steps(h, w)):
            summary = self.reduction1(summary)
        summary = self.conv(self.dwconv(summary))
        sh, sw = summary.shape[-2:]
        tokens = self.norm_act(summary.permute(0, 2, 3, 1).flatten(1, 2))  # (B, N', C')
        # values get a conditional position encoding on the summary grid
        v = self.v(tokens)
        v = v + image_conv(self.cpe, v.unflatten(1, (sh, sw))).flatten(1, 2)
        q = rearrange(self.q(x), "b h w (m d) -> b m (h w) d", m=self.heads)
        k = rearrange(self.k(tokens), "b n (m d) -> b m n d", m=self.heads)
        v = rearrange(v, "b n (m d) -> b m n d", m=self.heads)
        out = attention(q, k, v, scale=self.scale)
        return self.proj(rearrange(out, "b m (h w) d -> b h w (m d)", h=h))
