"""HAT building blocks: the channel-attention conv branch, the hybrid attention block (HAB) and the
residual hybrid attention group (RHAG).

A HAB is a Swin layer (``common/swin.py``) whose attention branch is joined by a small conv branch
with RCAN-style channel attention, weighted by ``conv_scale``. A RHAG runs its HABs (odd ones on
shifted windows), one overlapping cross-attention block (``ocab.py``) and a 3x3 conv, with a skip
around all of it.

Everything works on channels-last token grids ``(B, H, W, C)`` whose sides are multiples of the
window; position biases and shift masks come from the model's geometry cache. Precision as in
``common/stream.py``: the residual stream may be float32 under half weights; every branch reads a
layer-normed input and runs in the weights' dtype; the group-closing conv reads the raw stream and
goes through :func:`~..common.residual.residual_conv_from_stream`.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ..common.linear import linear
from ..common.residual import residual_conv_from_stream
from ..common.stream import norm_to
from ..common.swin import ShiftedWindows, SwinLayer
from .config import HATConfig
from .ocab import OCAB


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation: per-channel weights from the image mean (keys ``attention.1/3``)."""

    def __init__(self, dim: int, squeezed: int) -> None:
        super().__init__()
        self.attention = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(dim, squeezed, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(squeezed, dim, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:  # x: (B, C, H, W)
        squeeze, excite = self.attention[1], self.attention[3]
        weights = F.relu(linear(x.mean((2, 3)), squeeze.weight.flatten(1), squeeze.bias))
        weights = linear(weights, excite.weight.flatten(1), excite.bias).sigmoid()
        return x * weights[:, :, None, None]


class ConvBlock(nn.Module):
    """The HAB's conv branch (key ``conv_block.cab``): 3x3 conv to ``hidden`` channels, GELU, 3x3
    conv back, channel attention.

    Args:
        dim: token channels.
        hidden: channels between the two convs (``dim // compress_ratio``).
        squeezed: channel-attention bottleneck (``dim // squeeze_factor``).
    """

    def __init__(self, dim: int, hidden: int, squeezed: int) -> None:
        super().__init__()
        self.cab = nn.Sequential(
            nn.Conv2d(dim, hidden, 3, 1, 1),
            nn.GELU(),
            nn.Conv2d(hidden, dim, 3, 1, 1),
            ChannelAttention(dim, squeezed),
        )

    def forward(self, x: Tensor) -> Tensor:
        """``(B, H, W, C)`` -> ``(B, H, W, C)``; the convs see a channels-last view (no copy)."""
        image = x.permute(0, 3, 1, 2)
        out = self.cab[3](self.cab[2](F.gelu(self.cab[0](image))))
        return out.permute(0, 2, 3, 1)


class HAB(SwinLayer):
    """Hybrid attention block: ``x + attention(norm1(x)) + conv_scale * conv(norm1(x))``, then an MLP.

    Args:
        c: the hyperparameters (width, window, MLP, conv branch, ``qkv_bias`` and ``qk_scale``).
        heads: attention heads of the block's group.
        shifted: whether windows are shifted by half a window.
    """

    def __init__(self, c: HATConfig, heads: int, shifted: bool) -> None:
        super().__init__(c.embed_dim, heads, c.window_size, shifted, c.mlp_hidden, c.qkv_bias)
        if c.qk_scale:
            self.attn.scale = c.qk_scale
        self.conv_scale = c.conv_scale
        self.conv_block = ConvBlock(c.embed_dim, c.conv_channels, c.squeeze_channels)

    def forward(self, x: Tensor, pos_bias: Tensor, shift_masks: Tensor, order: ShiftedWindows) -> Tensor:
        """Args:
        x: ``(B, H, W, C)`` residual stream.
        pos_bias: ``(heads, N, N)`` relative-position bias of this block.
        shift_masks: ``(4, 1, N, N)`` masks of the four shifted-window kinds (unused unshifted).
        order: the shifted windows of this ``H x W`` grid (cached by the model; unused unshifted).
        """
        compute = self.attn.qkv.weight.dtype
        normed = norm_to(self.norm1, x, compute)
        x = x + self._attend(normed, pos_bias, shift_masks, order) + self.conv_block(normed) * self.conv_scale
        return x + self.mlp(norm_to(self.norm2, x, compute))


class AttentionBlocks(nn.Module):
    """The body of a RHAG (key ``residual_group``): ``blocks`` (HABs) then ``overlap_attn`` (OCAB)."""

    def __init__(self, blocks: list[HAB], overlap_attn: OCAB) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.overlap_attn = overlap_attn


class RHAG(nn.Module):
    """Residual hybrid attention group: HABs (odd ones shifted where the model shifts), an OCAB,
    then the closing 3x3 conv (``"1conv"``; none with ``"identity"``), with a skip around all.

    Args:
        c: the hyperparameters.
        heads: attention heads of the group.
        depth: HABs in the group.
    """

    def __init__(self, c: HATConfig, heads: int, depth: int) -> None:
        super().__init__()
        blocks = [HAB(c, heads, shifted=c.shift and i % 2 == 1) for i in range(depth)]
        self.residual_group = AttentionBlocks(blocks, OCAB(c, heads))
        self.conv = nn.Conv2d(c.embed_dim, c.embed_dim, 3, 1, 1) if c.resi_connection == "1conv" else None

    def forward(
        self, x: Tensor, biases: tuple[list[Tensor], Tensor], shift_masks: Tensor, order: ShiftedWindows
    ) -> Tensor:
        """Args:
        x: ``(B, H, W, C)`` residual stream.
        biases: each HAB's ``(heads, N, N)`` position bias, and the OCAB's ``(heads, ws*ws, ow*ow)``.
        shift_masks: ``(4, 1, N, N)`` shifted-window masks.
        order: the shifted windows of this ``H x W`` grid.
        """
        hab_biases, ocab_bias = biases
        y = x
        for block, bias in zip(self.residual_group.blocks, hab_biases, strict=True):
            y = block(y, bias, shift_masks, order)
        y = self.residual_group.overlap_attn(y, ocab_bias)
        if self.conv is None:
            return y + x
        # the conv reads the raw stream: scaled by a power of two under fp16 (common/residual.py)
        out = residual_conv_from_stream(self.conv, y.permute(0, 3, 1, 2), self.conv.weight.dtype)
        return out.permute(0, 2, 3, 1).to(x.dtype) + x
