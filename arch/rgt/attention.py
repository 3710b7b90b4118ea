"""RGT's two attentions: L-SA (rectangle windows, dynamic position bias: common/rect_attention.py) and RG-SA.

Tokens are channels-last grids ``(B, H, W, C)`` throughout; convolutions see them through a
``permute`` (a channels-last NCHW view, no copy). Attention runs through
``scaled_dot_product_attention``; the dynamic position bias is the ``attn_mask`` and is built
once per (window shape, device, dtype) per module, then served from the model's cache.
"""

from __future__ import annotations

from einops import rearrange
from torch import Tensor, nn

from ..common.attention import attention
from ..common.model import GeometryLookup
from ..common.rect_attention import RectWindowAttention, two_branch_attention
from ..common.token_conv import image_conv


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
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        windows = (tuple(split_size), tuple(reversed(split_size)))
        self.attns = nn.ModuleList(RectWindowAttention(dim // 2, heads // 2, w) for w in windows)
        self.get_v = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x: Tensor, geometry: GeometryLookup) -> Tensor:
        c = x.shape[-1]
        qkv = self.qkv(x)
        # locality term: depthwise conv on v (unpadded)
        local = image_conv(self.get_v, qkv[..., 2 * c :])
        return self.proj(local.add_(two_branch_attention(qkv, self.attns, self.shifted, geometry)))


def recursion_steps(h: int, w: int) -> int:
    """How often RG-SA reduces by 4 at inference: ``max(2, floor(log4(side / 16)))`` of the longer
    side. Comparisons only, so a symbolic size (an exported graph's) decides it from its range."""
    steps = 2
    while h >= 16 * 4 ** (steps + 1) or w >= 16 * 4 ** (steps + 1):
        steps += 1
    return steps


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

    def forward(self, x: Tensor) -> Tensor:
        """``(B, H, W, C)`` -> ``(B, H, W, C)`` (nothing size-dependent to cache: no geometry)."""
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
