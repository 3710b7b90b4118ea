"""DAT's two attentions, each with its adaptive interaction module (AIM).

Both compute an attention result and a convolution result (a depthwise conv of ``v``) and let
each gate the other: spatial attention (DSTB) gates its windowed result by a channel map of the
conv result and the conv result by a spatial map of the attention result; channel attention
(DCTB) swaps the roles. Tokens are channels-last grids ``(B, H, W, C)``; the convolutions see
them through channels-last views.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..common.linear import Linear, linear, linear_add
from ..common.model import GeometryLookup
from ..common.rect_attention import RectWindowAttention, two_branch_attention


def _fold_batch_norm(conv: nn.Conv2d, bn: nn.BatchNorm2d, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """``conv`` followed by ``bn`` with its running statistics, as one conv's ``(weight, bias)``
    (computed in float32, returned in ``dtype``). The model is inference-only: a BatchNorm is never
    run in training mode, which would normalise by the batch and overwrite the saved statistics."""
    scale = bn.weight.float() * torch.rsqrt(bn.running_var.float() + bn.eps)
    weight = conv.weight.float() * scale.view(-1, *([1] * (conv.weight.dim() - 1)))
    bias = (conv.bias.float() - bn.running_mean.float()) * scale + bn.bias.float()
    return weight.to(dtype), bias.to(dtype)


def _pointwise(x: Tensor, conv: nn.Conv2d, bn: nn.BatchNorm2d | None = None, gelu: bool = False) -> Tensor:
    """A 1x1 ``conv`` (then ``bn`` and GELU) on channels-last ``x`` as one linear layer."""
    if bn is None:
        weight, bias = conv.weight.to(x.dtype), conv.bias.to(x.dtype)
    else:
        weight, bias = _fold_batch_norm(conv, bn, x.dtype)
    return linear(x, weight.flatten(1), bias, gelu=gelu)


class AdaptiveInteraction(nn.Module):
    """The parts both attentions share: qkv and output projections and the AIM.

    The official BatchNorm layers keep their keys (``dwconv.1``, ``channel_interaction.2``,
    ``spatial_interaction.1``) and are folded into the conv before them at run time.

    Args:
        dim: token channels.
        qkv_bias: whether the qkv projection has a bias.

    Attributes (official keys):
        dwconv: depthwise 3x3 conv of ``v`` (the convolution branch), BatchNorm, GELU.
        channel_interaction: global pooling, bottleneck 1x1 convs -> one logit per channel.
        spatial_interaction: bottleneck 1x1 convs -> one logit per pixel.
    """

    def __init__(self, dim: int, qkv_bias: bool) -> None:
        super().__init__()
        self.qkv = Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = Linear(dim, dim)
        self.dwconv = nn.Sequential(nn.Conv2d(dim, dim, 3, 1, 1, groups=dim), nn.BatchNorm2d(dim), nn.GELU())
        self.channel_interaction = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(dim, dim // 8, 1),
            nn.BatchNorm2d(dim // 8),
            nn.GELU(),
            nn.Conv2d(dim // 8, dim, 1),
        )
        self.spatial_interaction = nn.Sequential(
            nn.Conv2d(dim, dim // 16, 1), nn.BatchNorm2d(dim // 16), nn.GELU(), nn.Conv2d(dim // 16, 1, 1)
        )

    def project(self, mixed: Tensor, residual: Tensor | None) -> Tensor:
        """The output projection, plus ``residual`` when given (fused into the product on the CPU)."""
        if residual is None:
            return self.proj(mixed)
        return linear_add(mixed, self.proj.weight, self.proj.bias, residual)

    def conv_branch(self, v: Tensor) -> Tensor:
        """Depthwise conv, BatchNorm and GELU of ``(B, H, W, C)`` values."""
        conv, bn = self.dwconv[0], self.dwconv[1]
        weight, bias = _fold_batch_norm(conv, bn, v.dtype)
        out = F.conv2d(v.permute(0, 3, 1, 2), weight, bias, padding=1, groups=conv.groups)
        return F.gelu(out).permute(0, 2, 3, 1)

    def channel_gate(self, x: Tensor) -> Tensor:
        """``(B, 1, 1, C)`` sigmoid gate from ``(B, H, W, C)`` tokens (their mean over the image)."""
        _, reduce, bn, _, expand = self.channel_interaction
        pooled = x.mean(dim=(1, 2), keepdim=True)
        return torch.sigmoid(_pointwise(_pointwise(pooled, reduce, bn, gelu=True), expand))

    def spatial_gate(self, x: Tensor) -> Tensor:
        """``(B, H, W, 1)`` sigmoid gate from ``(B, H, W, C)`` tokens."""
        reduce, bn, _, expand = self.spatial_interaction
        return torch.sigmoid(_pointwise(_pointwise(x, reduce, bn, gelu=True), expand))


class SpatialAttention(AdaptiveInteraction):
    """Adaptive spatial self-attention: two rectangle-window branches over the channel halves
    (``split_size`` and its transpose), shifted by half a window in every other spatial block.

    Args:
        dim: token channels.
        heads: attention heads (each branch gets ``heads // 2``).
        split_size: ``(height, width)`` of the first branch's windows.
        shifted: shift the window grids by half a window.
        qkv_bias: whether the qkv projection has a bias.
        qk_scale: softmax temperature (None: ``head_dim ** -0.5``).
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        split_size: tuple[int, int],
        shifted: bool,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
    ) -> None:
        super().__init__(dim, qkv_bias)
        self.shifted = shifted
        windows = (tuple(split_size), tuple(reversed(split_size)))
        self.attns = nn.ModuleList(RectWindowAttention(dim // 2, heads // 2, w, qk_scale) for w in windows)

    def forward(self, x: Tensor, geometry: GeometryLookup, residual: Tensor | None = None) -> Tensor:
        """``(B, H, W, C)`` -> ``(B, H, W, C)``, plus ``residual`` when given."""
        c = x.shape[-1]
        qkv = self.qkv(x)
        conv = self.conv_branch(qkv[..., 2 * c :])
        attn = two_branch_attention(qkv, self.attns, self.shifted, geometry)
        # AIM: the attention result gated per channel by the conv result, the conv per pixel by attention
        mixed = conv.mul(self.spatial_gate(attn)).addcmul_(attn, self.channel_gate(conv))
        return self.project(mixed, residual)


class ChannelAttention(AdaptiveInteraction):
    """Adaptive channel self-attention (XCiT-style): per head, channels attend to channels with the
    image as the feature axis; q and k are L2-normalised over the pixels, logits scaled by a learned
    per-head ``temperature``. Two small matmuls per head (``d x d`` logits from ``N``-long
    vectors): the shape SDPA's kernels are not built for, so it is written out.

    Args:
        dim: token channels.
        heads: attention heads.
        qkv_bias: whether the qkv projection has a bias.
    """

    def __init__(self, dim: int, heads: int, qkv_bias: bool = True) -> None:
        super().__init__(dim, qkv_bias)
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))

    def forward(
        self, x: Tensor, geometry: GeometryLookup | None = None, residual: Tensor | None = None
    ) -> Tensor:
        """``(B, H, W, C)`` -> ``(B, H, W, C)``, plus ``residual`` when given; ``geometry`` is unused
        (nothing size-dependent to keep)."""
        c = x.shape[-1]
        qkv = self.qkv(x)
        conv = self.conv_branch(qkv[..., 2 * c :])
        attn = self._attend(qkv)
        # AIM: the attention result gated per pixel by the conv result, the conv per channel by attention
        mixed = attn.mul(self.spatial_gate(conv)).addcmul_(conv, self.channel_gate(attn))
        return self.project(mixed, residual)

    def _attend(self, qkv: Tensor) -> Tensor:
        """``(B, H, W, 3C)`` -> ``(B, H, W, C)``: ``softmax(cos(q_i, k_j) * t) v`` over channel pairs
        ``i, j`` of a head, the cosine taken over the pixels."""
        h = qkv.shape[1]
        q, k, v = rearrange(qkv, "b h w (p m d) -> p b m (h w) d", p=3, m=self.heads)
        q_t = q.transpose(-2, -1)
        if qkv.dtype == torch.float32:
            # the raw products scaled by the norms, which are the Gram matrices' diagonals
            inv_q, inv_k = (_inverse_norm((t.transpose(-2, -1) @ t).diagonal(0, -2, -1)) for t in (q, k))
            logits = (q_t @ k).mul_(inv_q.unsqueeze(-1)).mul_(inv_k.unsqueeze(-2))
        else:
            # half precision cannot hold raw products over a whole tile: unit vectors first, their
            # norms in float32
            inv_q, inv_k = (_inverse_norm(t.float().square().sum(-2)).to(t.dtype) for t in (q, k))
            logits = (q_t * inv_q.unsqueeze(-1)) @ (k * inv_k.unsqueeze(-2))
        weights = torch.softmax(logits * self.temperature.to(logits.dtype), dim=-1)
        out = v @ weights.transpose(-2, -1)  # (B, heads, N, d)
        return rearrange(out, "b m (h w) d -> b h w (m d)", h=h)


def _inverse_norm(squares: Tensor, eps: float = 1e-12) -> Tensor:
    """``1 / max(|t|, eps)`` (``F.normalize``'s rule) from the sums of squares ``|t|^2``."""
    return squares.clamp_min(eps * eps).rsqrt()
