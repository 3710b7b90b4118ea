"""The network skeleton RGT and DAT share (both by Chen et al.; the key layout is theirs).

Shallow conv (``conv_first``), tokens ``(B, H, W, C)`` through ``before_RG`` (channels-last
rearrange and LayerNorm), residual groups (``layers``, the family's own), ``norm``,
``conv_after_body`` with the shallow features added back, then the reconstruction: pixel-shuffle
(``conv_before_upsample``, ``upsample``, ``conv_last``) or pixel-shuffle-direct (``upsample``).
Each group is built as ``group(config, index, depth, heads)`` and called as
``group(tokens, cached_geometry)``; both families' groups are a :class:`TokenResidualGroup` of
their own blocks, each a :class:`GatedBlock` with its own forward.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import ClassVar

import torch
from einops.layers.torch import Rearrange
from torch import Tensor, nn

from .config import ModelConfig
from .gated_mlp import GatedMLP
from .image import image_mean
from .model import UPSAMPLE_FEATURES, GeometryLookup, SRModel
from .residual import residual_conv, residual_conv_from_stream
from .state import ignore_derived_buffers
from .stream import norm_to, stream_dtype
from .upsample import PixelShuffleDirect, PixelShuffleUpsample


class GatedBlock(nn.Module):
    """The modules of an RGT or DAT block: ``norm1``, the attention ``attn``, ``norm2`` and a
    spatially gated MLP (:class:`~.gated_mlp.GatedMLP`) under the family's key :attr:`mlp_key`.
    Each family's subclass supplies the forward (both are pre-norm).

    Args:
        dim: token channels.
        attn: the block's attention (the family's own).
        hidden: hidden width of the gated MLP.
    """

    mlp_key: ClassVar[str]  # the gated MLP's key: ``"mlp"`` (RGT) or ``"ffn"`` (DAT)

    def __init__(self, dim: int, attn: nn.Module, hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = attn
        self.norm2 = nn.LayerNorm(dim)
        self.add_module(self.mlp_key, GatedMLP(dim, hidden))


class TokenResidualGroup(nn.Module):
    """Blocks on ``(B, H, W, C)`` tokens, the group-closing conv, and the group's residual connection.

    Args:
        blocks: the group's blocks, each called as ``block(tokens, geometry)``.
        dim: token channels.
        resi_connection: ``"1conv"`` or ``"3conv"``.
    """

    def __init__(self, blocks: Iterable[nn.Module], dim: int, resi_connection: str) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.conv = residual_conv(dim, resi_connection)

    def forward(self, x: Tensor, geometry: GeometryLookup) -> Tensor:
        y = x
        for block in self.blocks:
            y = block(y, geometry)
        dtype = next(self.conv.parameters()).dtype
        return x + residual_conv_from_stream(self.conv, y.permute(0, 3, 1, 2), dtype).permute(0, 2, 3, 1)


class GroupedTokenSR(SRModel):
    """Base of the RGT and DAT root modules: subclasses call :meth:`build_trunk` in ``__init__``.

    Args:
        config: the hyperparameters (``depths``: blocks per group; the even blocks of every group
            attend in rectangle windows, common/rect_attention.py).

    Attributes:
        fp32_stream: under bf16/fp16 weights, carry the residual stream (and the norms that read
            it) in float32, as autocast training does; the groups' branches and the convs run in
            the weights' dtype. No effect in float32.
    """

    def __init__(self, config: ModelConfig) -> None:
        # position biases: 2 branches x up to 4 window-piece shapes per rectangle-window block, for
        # two (device, dtype)
        rect_blocks = sum((depth + 1) // 2 for depth in config.depths)
        super().__init__(config, cache_entries=2 * 2 * 4 * rect_blocks + 8)

    def build_trunk(
        self, c: ModelConfig, group: Callable[..., nn.Module], upsampler: str = "pixelshuffle"
    ) -> None:
        """Every module, in the official registration order.

        Args:
            c: the config (``in_chans``, ``embed_dim``, ``img_range``, ``depths``, ``num_heads``,
                ``resi_connection``, ``scale``).
            group: the family's residual group, built as ``group(c, index, depth, heads)``.
            upsampler: ``"pixelshuffle"`` or ``"pixelshuffledirect"``.
        """
        self.img_range = c.img_range
        self.fp32_stream = True
        self.upsampler = upsampler
        self.register_buffer("mean", image_mean(c.in_chans), persistent=False)
        # shallow features, then tokens (B, H, W, C)
        self.conv_first = nn.Conv2d(c.in_chans, c.embed_dim, 3, 1, 1)
        self.before_RG = nn.Sequential(Rearrange("b c h w -> b h w c"), nn.LayerNorm(c.embed_dim))
        # deep features
        self.layers = nn.ModuleList(
            group(c, i, depth, heads)
            for i, (depth, heads) in enumerate(zip(c.depths, c.num_heads, strict=True))
        )
        self.norm = nn.LayerNorm(c.embed_dim)
        self.conv_after_body = residual_conv(c.embed_dim, c.resi_connection)
        # reconstruction (the reference's LeakyReLU keeps torch's default slope here)
        if upsampler == "pixelshuffle":
            self.conv_before_upsample = nn.Sequential(
                nn.Conv2d(c.embed_dim, UPSAMPLE_FEATURES, 3, 1, 1), nn.LeakyReLU()
            )
            self.upsample: nn.Module = PixelShuffleUpsample(c.scale, UPSAMPLE_FEATURES)
            self.conv_last = nn.Conv2d(UPSAMPLE_FEATURES, c.in_chans, 3, 1, 1)
        else:
            self.upsample = PixelShuffleDirect(c.scale, c.embed_dim, c.in_chans)
        ignore_derived_buffers(self)
        self.name_geometry_owners()

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, H, W)`` image -> ``(B, C, scale*H, scale*W)``."""
        mean = self.mean.to(x.dtype)
        # channels-last from the start: token views and convs then need no copies
        x = ((x - mean) * self.img_range).contiguous(memory_format=torch.channels_last)
        shallow = self.conv_first(x)
        # the residual stream runs in float32 under half-precision weights (common/stream.py)
        stream = stream_dtype(x.dtype, self.fp32_stream)
        to_tokens, norm = self.before_RG
        tokens = norm_to(norm, to_tokens(shallow).to(stream), stream)
        for layer in self.layers:
            tokens = layer(tokens, self.cached_geometry)
        deep = self.conv_after_body(norm_to(self.norm, tokens, x.dtype).permute(0, 3, 1, 2)) + shallow
        if self.upsampler == "pixelshuffle":
            out = self.conv_last(self.upsample(self.conv_before_upsample(deep)))
        else:
            out = self.upsample(deep)
        return (out / self.img_range + mean).contiguous()
